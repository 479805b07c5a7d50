"""The benchmark's workload: N independent steps whose attempts the kubelet simulates (no
process), a fraction of them needing more memory than the first attempt gets."""

from __future__ import annotations

import argparse
import json
from typing import Any

from zenml_oom_orchestrator.localcluster.kubelet.simulated import ANNOTATION

START_MEMORY = "256Mi"  # attempt 1; the OOM steps need NEEDS, so attempt 2 (512Mi) succeeds
NEEDS = "300Mi"
IMAGE = "bench/simulated:latest"


def is_oom_step(index: int, oom_fraction: float) -> bool:
    """Spread the OOM steps evenly (every 5th for 20 %), so any prefix has the same mix."""
    if oom_fraction <= 0:
        return False
    every = max(1, round(1 / oom_fraction))
    return index % every == every - 1


def step_name(index: int) -> str:
    return f"step-{index:05d}"


def attempt_length(index: int, seconds: float, jitter: float) -> float:
    """`seconds` spread by +-`jitter` (a fraction) per step, deterministically (golden-ratio
    sequence), so steps do not all finish in the same instant unless jitter is 0."""
    spread = ((index * 0.6180339887) % 1.0) * 2 - 1
    return seconds * (1 + jitter * spread)


def simulate(attempt_seconds: float, oom: bool) -> str:
    script: dict[str, Any] = {"afterMs": int(attempt_seconds * 1000)}
    if oom:
        script["needsMemory"] = NEEDS
    return json.dumps(script, sort_keys=True)


def kwok_annotations(attempt_seconds: float, oom: bool) -> dict[str, str]:
    """The sim.oom contract of the KWOK Stages (bench/kwok/): run this long, then OOMKilled
    while the memory limit is below the need, else Completed."""
    out = {"sim.oom/run-seconds": f"{attempt_seconds:g}"}
    if oom:
        out["sim.oom/need-bytes"] = NEEDS
    return out


def pod_template(attempt_seconds: float, oom: bool, sim: str = "local") -> dict[str, Any]:
    """A minimal step pod: one `main` container the kubelet (`sim="local"`) or KWOK
    (`sim="kwok"`) simulates."""
    if sim == "kwok":
        annotations = kwok_annotations(attempt_seconds, oom)
    else:
        annotations = {ANNOTATION: simulate(attempt_seconds, oom)}
    return {
        "metadata": {"annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": IMAGE, "command": ["true"]}]},
    }


def run_spec(
    run_id: str,
    namespace: str,
    steps: int,
    attempt_seconds: float,
    oom_fraction: float,
    max_parallelism: int | None = None,
    jitter: float = 0.0,
    sim: str = "local",
) -> dict[str, Any]:
    """A supervisor RunSpec (as JSON-able dict) for the workload."""
    return {
        "run_id": run_id,
        "namespace": namespace,
        "max_parallelism": max_parallelism,
        "steps": [
            {
                "name": step_name(i),
                "pod_template": pod_template(
                    attempt_length(i, attempt_seconds, jitter), is_oom_step(i, oom_fraction), sim
                ),
                "policy": {"initial_memory": START_MEMORY, "memory_multiplier": 2},
            }
            for i in range(steps)
        ],
    }


def add_client_args(parser: argparse.ArgumentParser) -> None:
    """The arguments every client process of the benchmark takes: where, which run, what."""
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--attempt-seconds", type=float, required=True)
    parser.add_argument("--oom-fraction", type=float, default=0.2)
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument("--sim", choices=["local", "kwok"], default="local", help="who plays pods")
