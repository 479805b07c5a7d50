"""Stamps from the real API server's audit log: the server's own time of each attempt create
and of each pod status patch that wrote the containers' end (OOMKilled or not) (`stageTimestamp` of the
ResponseComplete event, i.e. after the write was stored), so no client's clock or watch lag is
trusted, as with the local cluster's store hook.

Names carry the keys (the audit log has no labels at Metadata level): namespace
``bench-<run_id>``; the supervisor's pods ``step-NNNNN-<hash>-aN``, the baseline's Jobs
``bl-<run_id>-step-NNNNN-aN`` and their pods the Job's name plus ``-xxxxx``.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from zenml_oom_orchestrator.bench.stamps import Key, Stamps

NAMESPACE_PREFIX = "bench-"
_NAME = re.compile(r"(step-\d{5})(?:-[0-9a-f]{8})?-a(\d+)(?:-[a-z0-9]{5})?$")


def key_of(namespace: str, name: str) -> Key | None:
    if not namespace.startswith(NAMESPACE_PREFIX):
        return None
    match = _NAME.search(name)
    if match is None:
        return None
    return namespace[len(NAMESPACE_PREFIX) :], match.group(1), int(match.group(2))


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _terminated(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        (cs.get("state") or {}).get("terminated") or {}
        for cs in status.get("containerStatuses") or []
    ]


class AuditStamps:
    """Feeds `stamps` from the audit log as it grows; call `poll()` to catch up."""

    def __init__(self, path: Path, stamps: Stamps) -> None:
        self.path = path
        self.stamps = stamps
        self._offset = 0
        self._partial = b""

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self._offset:
                    raise RuntimeError(f"{self.path} was rotated: stamps would be lost")
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        with self.stamps.lock:
            for line in lines:
                self._line(line)

    def _line(self, line: bytes) -> None:
        # Cheap filters first: most lines are status patches that are neither OOM nor phase.
        create = b'"verb":"create"' in line
        if not create and b'"terminated"' not in line:
            return
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        code = (event.get("responseStatus") or {}).get("code", 0)
        key = key_of(ref.get("namespace", ""), ref.get("name", ""))
        if key is None or not 200 <= code < 300:
            return
        t = _seconds(event["stageTimestamp"])
        if create:
            self.stamps.created.setdefault((ref.get("resource", ""), key), t)
            return
        status = (event.get("requestObject") or {}).get("status") or {}
        ended = _terminated(status)
        if any(term.get("reason") == "OOMKilled" for term in ended):
            self.stamps.oom.setdefault(key, t)
        # The attempt ends with its containers (the kubelet reports them before the phase,
        # and the clients act on them): "in flight" stops there.
        if ended and all(ended):
            self.stamps.finished.setdefault(key, t)
