"""Issue 11 §5: the scenario that started the project, as the user met it (ZenML issue #3440:
ten parallel 4 GB steps on a 14 GB minikube node, no memory limits), scaled down on the real
tier's small node (8Gi allocatable: systemReserved + enforceNodeAllocatable [pods], so the
kubepods cgroup itself is the limit and an exhausted node kills inside it, never the host).

The same pipeline, WIDTH parallel steps each touching MIB MiB for HOLD seconds (more than the
node holds together), once on ZenML's stock flavor with its defaults (as the user ran it) and
once on oom_kubernetes with its defaults. What each did and what the store shows is printed;
README "The problem, before and after" quotes it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from zenml.enums import ExecutionStatus
from zenml_runs import Outcome, run_oom, run_stock

from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY
from zenml_oom_orchestrator.testing.pipelines import parallel_on_a_full_node

pytestmark = [
    pytest.mark.zenml,
    pytest.mark.cluster,
    pytest.mark.real_only(
        "needs a node whose memory is a kernel limit on all its pods together (the real "
        "tier's kubepods cgroup); the local cluster's node memory is bookkeeping"
    ),
]

WIDTH = 8
MIB = 1100  # + ZenML's ~135 MB each: ~9.7 GiB together on an 8 GiB node
HOLD = 60.0  # long enough for the parallel steps to overlap on 2 busy cores
STOCK_DEADLINE = 480.0  # seconds the stock run gets before it counts as left open
# A kill because the node's pod cgroup was full (not a container's own limit).
NODE_KILL = "oom_memcg=/kubepods,"


@contextmanager
def node_kills(workdir: Path) -> Iterator[Callable[[], int]]:
    """Follows the kernel log while the block runs (the ring buffer of a busy machine turns
    over in minutes); the callable counts the node-level OOM kills seen so far."""
    path = workdir / f"kernel-{time.monotonic_ns()}.log"
    with path.open("w") as out:
        follower = subprocess.Popen(["dmesg", "--follow-new"], stdout=out)
    try:
        yield lambda: path.read_text().count(NODE_KILL)
    finally:
        follower.terminate()
        follower.wait()


def _step_pods(api: Any, namespace: str, since: float) -> list[tuple[str, str, str]]:
    """(pod, phase, how each container ended) of the step pods created since `since`."""
    rows = []
    for pod in k8s.CoreV1Api(api).list_namespaced_pod(namespace).items:
        if pod.metadata.creation_timestamp.timestamp() < since - 1:
            continue
        ends = [
            f"{s.state.terminated.reason} {s.state.terminated.exit_code}"
            for s in pod.status.container_statuses or []
            if s.state.terminated
        ]
        rows.append((pod.metadata.name, pod.status.phase, ", ".join(ends) or "-"))
    return sorted(rows)


def _record(title: str, outcome: Outcome, pods: list[tuple[str, str, str]], kills: int) -> None:
    print(f"\n{title}: node-level OOM kills (oom_memcg=/kubepods): {kills}")
    print(outcome.row())
    for name, phase, ends in pods:
        print(f"    {name:<60} {phase:<10} {ends}")


@pytest.fixture(scope="module")
def namespace_api(real_namespace: str, cluster: Any) -> Iterator[tuple[str, Any]]:
    api = cluster.api_client()
    yield real_namespace, api
    api.close()


@pytest.mark.timeout(2400)  # two runs of 8 ZenML step pods on 2 cores: ~4 + ~8 min measured
def test_parallel_steps_exhausting_the_node_stock_flavor_then_ours(
    stock_stack: str, oom_stack: str, namespace_api: tuple[str, Any], tmp_path: Path
) -> None:
    namespace, api = namespace_api
    params = {"mib": MIB, "width": WIDTH, "seconds": HOLD}

    started = time.time()
    with node_kills(tmp_path) as kills:
        stock = run_stock(parallel_on_a_full_node, {}, STOCK_DEADLINE, **params)
        time.sleep(1)  # the kernel's lines of the last kill
        stock_kills = kills()
    _record(
        "Stock kubernetes flavor, defaults", stock, _step_pods(api, namespace, started), stock_kills
    )

    started = time.time()
    with node_kills(tmp_path) as kills:
        ours = run_oom(parallel_on_a_full_node, {}, **params)
        time.sleep(1)
        ours_kills = kills()
    _record("oom_kubernetes, defaults", ours, _step_pods(api, namespace, started), ours_kills)
    for i in range(WIDTH):
        history = ours.run.steps[f"load_{i}"].run_metadata[HISTORY_KEY]
        print(f"    load_{i}: " + ", ".join(f"{h['memory_limit']} {h['outcome']}" for h in history))

    # Before: the node ran out (the kernel killed inside kubepods) and the run did not complete.
    assert stock_kills > 0, "the stock run did not exhaust the node: the scenario did not happen"
    assert stock.run.status is not ExecutionStatus.COMPLETED
    # After: every step at a memory that fits it, no step run left open, the run COMPLETED.
    assert ours.run.status is ExecutionStatus.COMPLETED
    assert ours.open_step_runs == 0
    for i in range(WIDTH):
        history = ours.run.steps[f"load_{i}"].run_metadata[HISTORY_KEY]
        assert history[-1]["outcome"] == "succeeded"
        assert {h["outcome"] for h in history[:-1]} <= {"oom_killed"}, history
