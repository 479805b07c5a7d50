"""Helpers for the reliability tests: steps whose attempts the kubelet simulates (no process,
so dozens of attempts cost nothing), the supervisor as a killable subprocess, and checks that
the cluster holds exactly the attempts a run should have made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from zenml_oom_orchestrator.localcluster.kubelet.simulated import ANNOTATION
from zenml_oom_orchestrator.supervisor import naming

MI = 2**20
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


POLICY = {"initial_memory": "256Mi", "memory_multiplier": 2, "max_oom_retries": 2}


def step(name: str, template: dict[str, Any], *upstream: str, **policy: Any) -> dict[str, Any]:
    return {
        "name": name,
        "pod_template": template,
        "upstream": list(upstream),
        "policy": {**POLICY, **policy},
    }


def pods_of(store: Any, namespace: str, run_id: str) -> list[dict[str, Any]]:
    """The run's attempt pods, read from the store (no API request, so no injected fault)."""
    pods, _ = store.list("pods", namespace, label_selector=naming.run_selector(run_id))
    return pods


def attempts_on_cluster(store: Any, namespace: str, run_id: str) -> dict[str, list[int]]:
    """step -> sorted attempt numbers of the pods that exist."""
    out: dict[str, list[int]] = {}
    for pod in pods_of(store, namespace, run_id):
        ann = pod["metadata"]["annotations"]
        out.setdefault(ann[naming.ANN_STEP], []).append(int(ann[naming.ANN_ATTEMPT]))
    return {k: sorted(v) for k, v in out.items()}


def supervisor_events(store: Any, namespace: str) -> dict[str, list[str]]:
    """pod name -> reasons of the Events the supervisor wrote on it."""
    events, _ = store.list("events", namespace)
    out: dict[str, list[str]] = {}
    for ev in events:
        if (ev.get("source") or {}).get("component") == naming.MANAGED_BY:
            out.setdefault(ev["involvedObject"]["name"], []).append(ev["reason"])
    return out


def start_supervisor(tmp: Path, kubeconfig: Path, spec: Path) -> subprocess.Popen[bytes]:
    """`python -m zenml_oom_orchestrator.supervisor` for `spec`, result in tmp/result.json."""
    return subprocess.Popen(
        [
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
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
    )
