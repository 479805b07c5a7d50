"""No overhead without OOM: the same 10-step pipeline (9 parallel steps, then one after them)
with no OOM, through ZenML, on ZenML's stock ``kubernetes`` flavor and on ``oom_kubernetes``,
alternating, N times each; wall time from the call to the run's COMPLETED in the store.

    python integration/bench/no_overhead.py [--cluster local|real] [--runs 5] [--width 9]
                                            [--json out.json]

`--cluster real` runs on the real tier (integration/realcluster: kubelet and containerd 1.35 on
this machine, the step image built from this checkout; started if it is not up, left up if it
was), the local ZenML server on the node's bridge, both stacks as the real-tier ZenML tests
register them (integration/zenml/real_stacks.py). `--cluster local` (default) runs on the local
cluster (real step processes in memory cgroups). Both flavors get the same memory (512Mi, far
above what the steps use) and run asynchronously (`synchronous=False`), so the time is measured
the same way for both: the store polled every 0.25 s. This flavor runs with its defaults (growing
in place on: every attempt has its near-limit readiness probe). Each run also says where the
CPU went, from the kernel (cpu_meter.py): the machine, the ZenML server, and on the real tier
the orchestrator pod and the step pods (their cgroups). A benchmark that prints figures, not a
test (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zenml.client import Client
from zenml.enums import ExecutionStatus

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorSettings
from zenml_oom_orchestrator.localcluster.cluster import LocalCluster
from zenml_oom_orchestrator.testing import stack
from zenml_oom_orchestrator.testing.pipelines import fan_out
from zenml_oom_orchestrator.testing.zenml_server import local_zen_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_meter import CpuMeter  # noqa: E402

MEMORY = "512Mi"
DEADLINE = 600.0
INTEGRATION = Path(__file__).resolve().parents[1]


NO_GROWTH = "oom_kubernetes/no-growth"  # this flavor without the near-limit probe


@dataclass
class Timing:
    """One run: its end in the store, and where its wall time went (from the step runs)."""

    status: str
    seconds: float  # the call to a finished status in the store
    to_first_step: float  # the call to the first step's start
    step_seconds: float  # median of the steps' own start-to-end times
    # CPU seconds during the run, from the kernel: machine, ZenML server, pods by role
    cpu: dict[str, float] = field(default_factory=dict)


def submit(variant: str, width: int) -> Any:
    """Start the pipeline on `variant` without waiting; the run."""
    docker = stack.no_build_docker_settings()
    if variant == "kubernetes":
        Client().activate_stack("stock-stack")
        resources = {"requests": {"memory": MEMORY}, "limits": {"memory": MEMORY}}
        orchestrator: Any = {"synchronous": False, "pod_settings": {"resources": resources}}
    else:
        Client().activate_stack("oom-stack")
        orchestrator = OOMKubernetesOrchestratorSettings(
            synchronous=False,
            initial_memory=MEMORY,
            max_memory=MEMORY,
            grow_in_place=variant != NO_GROWTH,
        )
    settings = {"docker": docker, "orchestrator": orchestrator}
    run = fan_out.with_options(settings=settings)(mib=1, width=width, seconds=1.0)
    assert run is not None
    return run


def run_once(variant: str, width: int, meter: CpuMeter) -> Timing:
    called = datetime.now(timezone.utc)
    started = time.monotonic()
    meter.start()
    run = submit(variant, width)
    status = "timeout"
    while time.monotonic() - started < DEADLINE:
        meter.sample()
        status = Client().get_pipeline_run(run.id, hydrate=False).status.value
        if ExecutionStatus(status).is_finished:
            break
        time.sleep(0.25)
    seconds = time.monotonic() - started
    meter.sample()
    cpu = {"machine": meter.machine, "zenml server": meter.server, **meter.by_role()}
    steps = Client().list_run_steps(pipeline_run_id=run.id, size=100).items
    starts = [as_utc(s.start_time) for s in steps if s.start_time]
    spans = [
        (as_utc(s.end_time) - as_utc(s.start_time)) for s in steps if s.start_time and s.end_time
    ]
    return Timing(
        status,
        seconds,
        (min(starts) - called).total_seconds() if starts else float("nan"),
        statistics.median(d.total_seconds() for d in spans) if spans else float("nan"),
        {k: round(v, 2) for k, v in cpu.items()},
    )


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def register_local_stacks(server: Any, cluster: LocalCluster) -> None:
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


def pod_roles_in(api: Any, namespace: str) -> Callable[[], dict[str, str]]:
    """{uid: "step pods" | "orchestrator pod"} of the namespace's pods (both flavors label
    their step pods `step_name`, and their orchestrator pods not)."""
    from kubernetes import client as k8s

    def roles() -> dict[str, str]:
        pods = k8s.CoreV1Api(api).list_namespaced_pod(namespace).items
        return {
            p.metadata.uid: "step pods"
            if "step_name" in (p.metadata.labels or {})
            else "orchestrator pod"
            for p in pods
        }

    return roles


@contextmanager
def stacks_on(cluster_kind: str, tmp: Path) -> Iterator[tuple[str, CpuMeter]]:
    """A ZenML server active in this process with `oom-stack` and `stock-stack` on the cluster;
    yields what the figures ran on and the meter of the run's CPU (pods only on the real tier,
    whose pods have kubepods cgroups)."""
    if cluster_kind == "local":
        with local_zen_server(tmp / "zenml") as server:
            server.activate_in_process()
            with LocalCluster(memory="16Gi", cpus=2) as cluster:
                register_local_stacks(server, cluster)
                meter = CpuMeter(server.daemon_pids()[0], dict)
                yield "local cluster (16Gi, 2 CPUs)", meter
        return
    sys.path[:0] = [str(INTEGRATION / "realcluster"), str(INTEGRATION / "zenml")]
    import real_stacks
    from tier import RealTier

    tier = RealTier(tmp / "realtier-up.log").start()
    try:
        with local_zen_server(tmp / "zenml", host=real_stacks.REAL_TIER_BRIDGE) as server:
            server.activate_in_process()
            with real_stacks.real_namespace(tier) as namespace, tier.api_client() as api:
                server.cli("orchestrator", "flavor", "register", stack.FLAVOR_SOURCE)
                real_stacks.register_real_oom_stack("oom-stack", namespace)
                real_stacks.register_real_stock_stack("stock-stack", namespace)
                meter = CpuMeter(server.daemon_pids()[0], pod_roles_in(api, namespace))
                yield f"real tier, namespace {namespace}", meter
    finally:
        tier.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="integration/bench/no_overhead.py")
    parser.add_argument("--cluster", choices=("local", "real"), default="local")
    parser.add_argument("--runs", type=int, default=5, help="runs per flavor")
    parser.add_argument("--width", type=int, default=9, help="parallel steps (+1 after them)")
    parser.add_argument(
        "--no-growth-too",
        action="store_true",
        help=f"also run this flavor with grow_in_place=False ({NO_GROWTH}): the probe's cost",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("kubernetes", "oom_kubernetes", NO_GROWTH),
        help="run these variants only (default: stock and this flavor, and --no-growth-too)",
    )
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    variants = ["kubernetes", "oom_kubernetes"] + ([NO_GROWTH] if args.no_growth_too else [])
    variants = args.only or variants
    timings: dict[str, list[Timing]] = {v: [] for v in variants}
    loads: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="no-overhead-") as tmp,
        stacks_on(args.cluster, Path(tmp)) as (where, meter),
    ):
        print(f"== on the {where} ==", flush=True)
        for i in range(args.runs):
            # rotate who goes first, so a load trend hurts each alike
            for variant in variants[i % len(variants) :] + variants[: i % len(variants)]:
                timing = run_once(variant, args.width, meter)
                timings[variant].append(timing)
                loads.append(os.getloadavg()[0])
                print(
                    f"{variant:<24} run {i + 1}: {timing.status:<10} {timing.seconds:6.1f}s  "
                    f"(first step after {timing.to_first_step:5.1f}s, steps "
                    f"{timing.step_seconds:4.1f}s each; load {loads[-1]:.1f}); CPU s "
                    + ", ".join(f"{k} {v:.1f}" for k, v in timing.cpu.items()),
                    flush=True,
                )
    print(
        f"== {args.width + 1}-step pipeline, no OOM, wall time to a finished run "
        f"(load {min(loads):.1f}-{max(loads):.1f}) =="
    )
    for variant, runs in timings.items():
        values = [t.seconds for t in runs]
        done = sum(t.status == ExecutionStatus.COMPLETED.value for t in runs)
        print(
            f"  {variant:<24} median {statistics.median(values):6.1f}s  "
            f"min {min(values):6.1f}s  max {max(values):6.1f}s  "
            f"first step {statistics.median(t.to_first_step for t in runs):5.1f}s  "
            f"step {statistics.median(t.step_seconds for t in runs):4.1f}s  "
            f"completed {done}/{len(runs)}"
        )
        roles = sorted({k for t in runs for k in t.cpu})
        print(
            f"  {'':<24} CPU seconds, median: "
            + ", ".join(
                f"{k} {statistics.median(t.cpu.get(k, 0.0) for t in runs):.1f}" for k in roles
            )
        )
    if args.json:
        runs_json = {v: [asdict(t) for t in runs] for v, runs in timings.items()}
        Path(args.json).write_text(json.dumps({"runs": runs_json, "loads": loads, "on": where}))
    completed = all(
        t.status == ExecutionStatus.COMPLETED.value for r in timings.values() for t in r
    )
    return 0 if completed else 1


if __name__ == "__main__":
    raise SystemExit(main())
