"""Shared by the supervisor's and the reliability tests: steps whose attempts the local
cluster's kubelet simulates (no process, so dozens of attempts cost nothing), and the
supervisor as a killable subprocess, the way the flavor's orchestrator pod runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from zenml_oom_orchestrator.localcluster.kubelet.simulated import ANNOTATION

NEEDS = "300Mi"  # an OOM step's need: attempt 1 (256Mi) is OOMKilled, attempt 2 (512Mi) is not


def sim(seconds: float, needs: str | None = None, exit_code: int = 0) -> dict[str, Any]:
    """A pod template whose `main` container "runs" `seconds`, then exits with `exit_code`,
    or is OOMKilled while its memory limit is below `needs`."""
    script: dict[str, Any] = {"afterMs": int(seconds * 1000), "exitCode": exit_code}
    if needs:
        script["needsMemory"] = needs
    return {
        "metadata": {"annotations": {ANNOTATION: json.dumps(script)}},
        "spec": {"containers": [{"name": "main", "image": "rel/sim", "command": ["true"]}]},
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
