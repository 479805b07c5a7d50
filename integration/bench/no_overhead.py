"""No overhead without OOM: the same 10-step pipeline (9 parallel steps, then one after them)
with no OOM, through ZenML, on ZenML's stock ``kubernetes`` flavor and on ``oom_kubernetes``,
alternating, N times each; wall time from the call to the run's COMPLETED in the store.

    python integration/bench/no_overhead.py [--runs 5] [--width 9] [--json out.json]

Runs on the local cluster (real step processes in memory cgroups, a local ZenML server), both
flavors with the same memory (512Mi, far above what the steps use) and asynchronous
(`synchronous=False`), so the time is measured the same way for both: the store polled every
0.25 s. A benchmark that prints figures, not a test (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from zenml.client import Client
from zenml.enums import ExecutionStatus

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorSettings
from zenml_oom_orchestrator.localcluster.cluster import LocalCluster
from zenml_oom_orchestrator.testing import stack
from zenml_oom_orchestrator.testing.pipelines import fan_out
from zenml_oom_orchestrator.testing.zenml_server import local_zen_server

MEMORY = "512Mi"
DEADLINE = 600.0


def run_once(flavor: str, width: int) -> tuple[float, str]:
    """(seconds from the call to a finished status, that status)."""
    docker = stack.no_build_docker_settings()
    if flavor == "kubernetes":
        Client().activate_stack("stock-stack")
        resources = {"requests": {"memory": MEMORY}, "limits": {"memory": MEMORY}}
        orchestrator: Any = {"synchronous": False, "pod_settings": {"resources": resources}}
    else:
        Client().activate_stack("oom-stack")
        orchestrator = OOMKubernetesOrchestratorSettings(
            synchronous=False, initial_memory=MEMORY, max_memory=MEMORY
        )
    settings = {"docker": docker, "orchestrator": orchestrator}
    started = time.monotonic()
    run = fan_out.with_options(settings=settings)(mib=1, width=width, seconds=1.0)
    assert run is not None
    while time.monotonic() - started < DEADLINE:
        status = Client().get_pipeline_run(run.id, hydrate=False).status
        if status.is_finished:
            return time.monotonic() - started, status.value
        time.sleep(0.25)
    return time.monotonic() - started, "timeout"


def register_stacks(server: Any, cluster: LocalCluster) -> None:
    assert cluster.store is not None and cluster.kubeconfig_path is not None
    cluster.store.create("namespaces", {"metadata": {"name": stack.NAMESPACE}})
    stack.use_kubeconfig(cluster.kubeconfig_path)
    server.cli("orchestrator", "flavor", "register", stack.FLAVOR_SOURCE)
    stack.register_stack("oom-stack", "oom", "oom_kubernetes")
    stack.register_stack(
        "stock-stack",
        "stock-k8s",
        "kubernetes",
        orchestrator_pod_settings=stack.stock_orchestrator_pod_settings(cluster.kubeconfig_path),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="integration/bench/no_overhead.py")
    parser.add_argument("--runs", type=int, default=5, help="runs per flavor")
    parser.add_argument("--width", type=int, default=9, help="parallel steps (+1 after them)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"kubernetes": [], "oom_kubernetes": []}
    statuses: dict[str, list[str]] = {"kubernetes": [], "oom_kubernetes": []}
    with (
        tempfile.TemporaryDirectory(prefix="no-overhead-") as tmp,
        local_zen_server(Path(tmp) / "zenml") as server,
    ):
        server.activate_in_process()
        with LocalCluster(memory="16Gi", cpus=2) as cluster:
            register_stacks(server, cluster)
            for i in range(args.runs):
                # alternate who goes first, so a load trend hurts both alike
                order = ["kubernetes", "oom_kubernetes"]
                for flavor in order if i % 2 == 0 else order[::-1]:
                    seconds, status = run_once(flavor, args.width)
                    times[flavor].append(seconds)
                    statuses[flavor].append(status)
                    print(f"{flavor:<15} run {i + 1}: {status:<10} {seconds:6.1f}s", flush=True)
    print(f"== {args.width + 1}-step pipeline, no OOM, wall time to a finished run ==")
    for flavor, values in times.items():
        print(
            f"  {flavor:<15} median {statistics.median(values):6.1f}s  "
            f"min {min(values):6.1f}s  max {max(values):6.1f}s  "
            f"completed {statuses[flavor].count(ExecutionStatus.COMPLETED.value)}/{len(values)}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": times, "statuses": statuses}))
    completed = all(s == ExecutionStatus.COMPLETED.value for v in statuses.values() for s in v)
    return 0 if completed else 1


if __name__ == "__main__":
    raise SystemExit(main())
