"""Simulated containers for benchmarks: no process, a scripted outcome after a delay.

Annotate a pod with `zenml-oom.local/simulate` holding JSON such as::

    {"afterMs": 200, "exitCode": 137, "reason": "OOMKilled"}

Every container of the pod then "runs" for `afterMs` and ends with that outcome (reason
OOMKilled is reported in the container's state only: a real kubelet records no Event for a
container's OOM kill). Other keys:
`"runs": [outcome, ...]` scripts successive runs (restarts; the last one repeats), and
`"containers": {"name": outcome}` overrides per container, and `"needsMemory": "300Mi"`
makes a run OOMKilled (exit 137) while the container's memory limit is below that size, as
a step that really needs it would be (so a retry with more memory succeeds). The pod's
status, events, restarts and deletion go through the same kubelet paths as real processes.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..validation import parse_quantity

ANNOTATION = "zenml-oom.local/simulate"


class SimulatedProcess:
    """Quacks like the parts of Popen the kubelet uses: pid, returncode, wait()."""

    pid = 0  # never a real pid: signals go through send_signal, not killpg

    def __init__(self, outcome: Mapping[str, Any], log_path: Path) -> None:
        self.after = float(outcome.get("afterMs", 0)) / 1000
        self.exit_code = int(outcome.get("exitCode", 0))
        self.oom = outcome.get("reason") == "OOMKilled"
        self.message: str | None = outcome.get("message")
        self.returncode: int | None = None
        self.oom_kills = 0
        self._done = threading.Event()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(str(outcome.get("log", "")))

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(self.after):
            code = self.exit_code
            # Exit codes above 128 stand for a signal, as a runtime reports a killed process.
            self.returncode = -(code - 128) if code > 128 else code
            self.oom_kills = int(self.oom)
            self._done.set()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if not self._done.is_set():
            self.returncode = -int(sig)
            self._done.set()

    def poll(self) -> int | None:
        return self.returncode


def outcome_for(pod: Mapping[str, Any], container: str, run: int) -> dict[str, Any] | None:
    """The scripted outcome of run `run` of `container`, or None for a real process."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    if not raw:
        return None
    spec = json.loads(raw)
    spec = {**spec, **((spec.get("containers") or {}).get(container) or {})}
    runs = spec.get("runs")
    if runs:
        spec = {**spec, **runs[min(run, len(runs) - 1)]}
    needs = spec.get("needsMemory")
    if needs is not None and _memory_limit(pod, container) < parse_quantity(str(needs)):
        spec = {**spec, "exitCode": 137, "reason": "OOMKilled"}
    return dict(spec)


def _memory_limit(pod: Mapping[str, Any], container: str) -> float:
    """The container's memory limit in bytes (unlimited: infinity)."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
            return float(parse_quantity(str(limit))) if limit is not None else float("inf")
    return float("inf")


def kill_signal(proc: Any, sig: int) -> bool:
    """Signal a simulated process; False if `proc` is a real one (the caller signals it)."""
    if isinstance(proc, SimulatedProcess):
        proc.send_signal(sig or signal.SIGKILL)
        return True
    return False
