"""Small helpers for JSON-like API objects."""

from __future__ import annotations

import time
from typing import Any


def clone(o: Any) -> Any:
    """Deep copy of JSON-like data; several times faster than copy.deepcopy."""
    t = type(o)
    if t is dict:
        return {k: clone(v) for k, v in o.items()}
    if t is list:
        return [clone(v) for v in o]
    return o


def timestamp(t: float) -> str:
    """RFC 3339 in UTC at whole seconds, as the API server writes metav1.Time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
