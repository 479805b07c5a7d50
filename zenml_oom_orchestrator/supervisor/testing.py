"""Shared by the supervisor's and the reliability tests: steps whose attempts the local
cluster's kubelet simulates (no process, so dozens of attempts cost nothing) and a real
kubelet runs (the same template carries the command that does what the simulation says),
and the supervisor as a killable subprocess, the way the flavor's orchestrator pod runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from zenml_oom_orchestrator.quantity import memory_bytes

# The local kubelet's simulation contract (localcluster/kubelet/simulated.py), spelt out here:
# the product side imports nothing from the emulator.
ANNOTATION = "zenml-oom.local/simulate"
NEEDS = "300Mi"  # an OOM step's need: attempt 1 (256Mi) is OOMKilled, attempt 2 (512Mi) is not


SIM_IMAGE = "python:3.11"  # the real tier imports its python image under this name too


def sim(seconds: float, needs: str | None = None, exit_code: int = 0) -> dict[str, Any]:
    """A pod template whose `main` container "runs" `seconds`, then exits with `exit_code`,
    or is OOMKilled while its memory limit is below `needs`. The local kubelet simulates it;
    on a real kubelet the command does it (sleeps, touches `needs` of memory, exits; SIGTERM
    ends it at once, as it ends a simulation: Python as PID 1 would ignore it)."""
    script: dict[str, Any] = {"afterMs": int(seconds * 1000), "exitCode": exit_code}
    code = (
        "import signal, sys, time; "
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)); "
        f"time.sleep({seconds}); "
    )
    if needs:
        script["needsMemory"] = needs
        n = memory_bytes(needs)
        code += f"b = bytearray({n}); b[::4096] = b'\\x01' * len(range(0, {n}, 4096)); "
    code += f"sys.exit({exit_code})"
    return {
        "metadata": {"annotations": {ANNOTATION: json.dumps(script)}},
        "spec": {
            "containers": [{"name": "main", "image": SIM_IMAGE, "command": ["python", "-c", code]}]
        },
    }


def start_supervisor(
    tmp: Path, kubeconfig: Path, spec: Path, *, events: bool = False, capture_stderr: bool = True
) -> subprocess.Popen[bytes]:
    """The supervisor for `spec`, writing its result to tmp/result.json (and, with `events`,
    every observer hook to tmp/events.jsonl). stderr is piped unless `capture_stderr` is
    False: then read it with `communicate()`, or the pipe fills."""
    args = [
        sys.executable,
        "-m",
        "zenml_oom_orchestrator.supervisor",
        "--spec",
        str(spec),
        "--kubeconfig",
        str(kubeconfig),
        "--result",
        str(tmp / "result.json"),
        "--log-level",
        "WARNING",
    ]
    if events:
        args += ["--events", str(tmp / "events.jsonl")]
    return subprocess.Popen(
        args,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE if capture_stderr else None,
    )
