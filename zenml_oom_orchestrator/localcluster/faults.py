"""API fault injection for tests: throttling, server errors, dropped connections and forced
watch expiry, at given rates, changeable while the server runs (`server.faults.update(...)`)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Any

THROTTLE, ERROR, DROP, EXPIRE, FORBID = "429", "500", "drop", "410", "403"


@dataclass(frozen=True)
class FaultConfig:
    """Rates are probabilities per request (0..1). `verbs`/`resources` limit which requests
    can fail (empty: all API requests; discovery never fails)."""

    throttle_rate: float = 0.0  # 429 TooManyRequests with Retry-After
    retry_after_seconds: int = 1
    error_rate: float = 0.0  # 500 InternalError
    drop_rate: float = 0.0  # the connection closes without a response
    watch_expire_rate: float = 0.0  # a watch starts with an ERROR event carrying 410 Expired
    forbid_rate: float = 0.0  # 403 Forbidden as RBAC's authorizer words it (a missing rule)
    verbs: frozenset[str] = field(default_factory=frozenset)
    resources: frozenset[str] = field(default_factory=frozenset)
    seed: int | None = None


class Faults:
    """Thread-safe holder of the current `FaultConfig`, with counts of what was injected."""

    def __init__(self, config: FaultConfig | None = None, **rates: Any) -> None:
        self._lock = threading.Lock()
        self._config = replace(config or FaultConfig(), **_normalise(rates))
        self._rng = random.Random(self._config.seed)
        self.injected: Counter[str] = Counter()

    @property
    def config(self) -> FaultConfig:
        return self._config

    def update(self, **changes: Any) -> FaultConfig:
        """Change some settings, e.g. `update(throttle_rate=0.2, verbs={"list"})`."""
        with self._lock:
            self._config = replace(self._config, **_normalise(changes))
            if "seed" in changes:
                self._rng = random.Random(self._config.seed)
            return self._config

    def clear(self) -> None:
        """No more faults (counts are kept)."""
        with self._lock:
            self._config = FaultConfig(seed=self._config.seed)

    def decide(self, verb: str, resource: str) -> str | None:
        """Which fault (if any) this request gets: THROTTLE, ERROR, DROP or EXPIRE."""
        c = self._config
        if not (
            c.throttle_rate or c.error_rate or c.drop_rate or c.watch_expire_rate or c.forbid_rate
        ):
            return None  # the common case: no lock, no random draw
        if (c.verbs and verb not in c.verbs) or (c.resources and resource not in c.resources):
            return None
        with self._lock:
            roll = self._rng.random()
        fault = None
        for name, rate in (
            (EXPIRE, c.watch_expire_rate if verb == "watch" else 0.0),
            (THROTTLE, c.throttle_rate),
            (ERROR, c.error_rate),
            (DROP, c.drop_rate),
            (FORBID, c.forbid_rate),
        ):
            if roll < rate:
                fault = name
                break
            roll -= rate
        if fault is not None:
            with self._lock:
                self.injected[fault] += 1
        return fault


def _normalise(changes: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(FaultConfig)}
    unknown = set(changes) - known
    if unknown:
        raise TypeError(f"unknown fault settings: {sorted(unknown)}")
    out = dict(changes)
    for key in ("verbs", "resources"):
        if key in out:
            out[key] = frozenset(out[key] or ())
    for key, value in out.items():
        if key.endswith("_rate") and not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{key} must be between 0 and 1, got {value}")
    return out
