"""Where a no-OOM run's time goes, stock against ours, on the real tier: for each run, when the
call returned, when the orchestrator pod and the first step pods were created, started and
ended (the API's timestamps), the orchestrator pod's first log lines with the kubelet's
timestamps, and the first step run's start in the store; all in seconds after the call.

    python integration/bench/startup_timeline.py [--rounds 2]

The pipeline, stacks and settings of no_overhead.py (`--cluster real`). A measurement that
prints figures, not a test (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zenml.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
import no_overhead  # noqa: E402

KUBECONFIG = "/var/cache/zenml-oom/realtier/state/kubeconfig"


def _at(stamp: str, called: datetime) -> float:
    return (datetime.fromisoformat(stamp.replace("Z", "+00:00")) - called).total_seconds()


def _kubectl(namespace: str, *args: str) -> str:
    argv = ["kubectl", "--kubeconfig", KUBECONFIG, "-n", namespace, *args]
    return subprocess.run(argv, capture_output=True, text=True).stdout


def one_run(variant: str, namespace: str) -> None:
    called = datetime.now(timezone.utc)
    run = no_overhead.submit(variant, width=9)
    returned = (datetime.now(timezone.utc) - called).total_seconds()
    while not Client().get_pipeline_run(run.id, hydrate=False).status.is_finished:
        time.sleep(0.25)
    ended = (datetime.now(timezone.utc) - called).total_seconds()
    steps = Client().list_run_steps(pipeline_run_id=run.id, size=100).items
    first = min(no_overhead.as_utc(s.start_time) for s in steps if s.start_time)
    print(
        f"=== {variant}: the call returned after {returned:.1f} s, first step run started "
        f"{(first - called).total_seconds():.1f} s, run finished {ended:.1f} s"
    )
    pods: list[dict[str, Any]] = json.loads(_kubectl(namespace, "get", "pods", "-o", "json"))[
        "items"
    ]
    mine = sorted(
        (p for p in pods if _at(p["metadata"]["creationTimestamp"], called) > -2),
        key=lambda p: p["metadata"]["creationTimestamp"],
    )
    for pod in mine[:4]:
        state = ((pod["status"].get("containerStatuses") or [{}])[0].get("state")) or {}
        ended_state = state.get("terminated") or {}
        times = [
            f"{name} {_at(ended_state[key], called):5.1f}"
            for name, key in (("started", "startedAt"), ("ended", "finishedAt"))
            if ended_state.get(key)
        ]
        created = _at(pod["metadata"]["creationTimestamp"], called)
        print(f"    pod created {created:5.1f}  {'  '.join(times):<28} {pod['metadata']['name']}")
    if mine:
        logs = _kubectl(namespace, "logs", "--timestamps", mine[0]["metadata"]["name"])
        for line in logs.splitlines()[:6]:
            stamp, _, text = line.partition(" ")
            print(f"    log {_at(stamp[:26] + 'Z', called):5.1f}  {text[:110]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="integration/bench/startup_timeline.py")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="startup-") as tmp,
        no_overhead.stacks_on("real", Path(tmp)) as where,
    ):
        namespace = where.rsplit(" ", 1)[-1]
        for _ in range(args.rounds):
            for variant in ("kubernetes", "oom_kubernetes"):
                one_run(variant, namespace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
