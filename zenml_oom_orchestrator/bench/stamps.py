"""Server-side stamps: when each attempt object was created and when its OOMKilled status was
written, taken inside the local cluster's Store as the write happens (a `Store.write_hooks`
hook, under the store lock), so neither client's view of time is trusted."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

LABEL_RUN, LABEL_STEP, LABEL_ATTEMPT = "run_id", "step_name", "attempt"
Key = tuple[str, str, int]  # (run_id, step, attempt)


def _key(obj: dict[str, Any]) -> Key | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    run, step = labels.get(LABEL_RUN), labels.get(LABEL_STEP)
    attempt = str(labels.get(LABEL_ATTEMPT))
    if run is None or step is None or not attempt.isdigit():
        return None
    return str(run), str(step), int(attempt)


def _oom_killed(pod: dict[str, Any] | None) -> bool:
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if ((cs.get("state") or {}).get("terminated") or {}).get("reason") == "OOMKilled":
            return True
    return False


def _finished(pod: dict[str, Any] | None) -> bool:
    return ((pod or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed")


@dataclass
class Stamps:
    """Times (time.monotonic) per attempt key. `attempt_resource` is what counts as "the next
    attempt was created": `pods` for the supervisor, `jobs` for the Job-based baseline."""

    created: dict[tuple[str, Key], float] = field(default_factory=dict)  # (resource, key)
    oom: dict[Key, float] = field(default_factory=dict)
    finished: dict[Key, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, resource: str, type_: str, obj: dict[str, Any], old: Any) -> None:
        """Store write hook; cheap, because it runs under the store lock."""
        if resource not in ("pods", "jobs"):
            return
        key = _key(obj)
        if key is None:
            return
        now = time.monotonic()
        if type_ == "ADDED":
            self.created.setdefault((resource, key), now)
        elif resource == "pods" and type_ == "MODIFIED":
            if _oom_killed(obj) and not _oom_killed(old):
                self.oom.setdefault(key, now)
            if _finished(obj) and not _finished(old):
                self.finished.setdefault(key, now)

    def oom_to_next(self, run_id: str, attempt_resource: str) -> list[float]:
        """Seconds from each OOMKilled write to the creation of that step's next attempt."""
        out = []
        for (run, step, n), t_oom in list(self.oom.items()):
            if run != run_id:
                continue
            t_next = self.created.get((attempt_resource, (run, step, n + 1)))
            if t_next is not None:
                out.append(t_next - t_oom)
        return out

    def step_minutes(self, run_id: str) -> float:
        """Sum over steps of (first attempt object created → last attempt pod finished), in
        minutes: the denominator of "requests per minute per in-flight step". The first
        object is the baseline's first Job, the supervisor's first pod."""
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        for (_resource, (run, step, _n)), t in list(self.created.items()):
            if run == run_id:
                first[step] = min(t, first.get(step, t))
        for (run, step, _n), t in list(self.finished.items()):
            if run == run_id:
                last[step] = max(t, last.get(step, t))
        return sum(last[s] - first[s] for s in first if s in last) / 60.0

    def attempts_finished(self, run_id: str) -> int:
        return sum(1 for (run, _s, _n) in list(self.finished) if run == run_id)

    def attempts_created(self, run_id: str, resource: str = "pods") -> int:
        return sum(
            1 for (r, (run, _s, _n)) in list(self.created) if r == resource and run == run_id
        )


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100), nearest-rank; None for no values."""
    data = sorted(values)
    if not data:
        return None
    rank = max(1, min(len(data), math.ceil(q / 100 * len(data))))
    return data[rank - 1]
