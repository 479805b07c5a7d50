"""Issue 12 §6 on both clusters: a step that grows steadily is grown in place (pods/resize)
and finishes in its first attempt; one that allocates everything at once still takes the OOM
path. Real processes, real cgroup limits, real resizes by the kubelet."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from sup_helpers import (
    MI,
    Recorder,
    alloc_code,
    events_by_pod,
    one_step,
    pod_name,
    run,
    run_in_thread,
    run_pods,
)

from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.quantity import memory_bytes
from zenml_oom_orchestrator.supervisor import RunStatus, StepStatus
from zenml_oom_orchestrator.supervisor.grow import ANN_GROWTHS, growths_of
from zenml_oom_orchestrator.supervisor.testing import start_supervisor

pytestmark = pytest.mark.cluster


def fast_check_policy(**more: Any) -> OOMPolicy:
    """These steps grow at 40-50 MiB/s, from 80 % of 512Mi to the limit in about 2 s: the
    probe runs every second (the default 5 s catches only slower growth)."""
    return OOMPolicy(initial_memory="512Mi", grow_check_seconds=1, **more)


def steady_code(mib_per_second: int, total_mib: int, chunk_mib: int = 5) -> str:
    """Python that allocates and touches `total_mib` MiB at `mib_per_second`, kept alive."""
    return (
        "import time\n"
        f"rate, total, chunk = {mib_per_second}, {total_mib}, {chunk_mib}\n"
        "kept, n, t0 = [], 0, time.monotonic()\n"
        "while n < total:\n"
        "    b = bytearray(chunk << 20); b[::4096] = b'\\x01' * len(range(0, len(b), 4096))\n"
        "    kept.append(b); n += chunk\n"
        "    time.sleep(max(0.0, t0 + n / rate - time.monotonic()))\n"
        "print('allocated', n, 'MiB', flush=True)\n"
    )


def test_a_steadily_growing_step_is_grown_in_place_and_finishes_in_one_attempt(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    policy = fast_check_policy()
    spec = one_step("grow-ok", cluster_namespace, "train", steady_code(50, 1230), policy)
    rec = Recorder()
    result = run(k8s_api_client, spec, rec)

    assert result.status is RunStatus.SUCCEEDED, result.to_dict()
    step = result.steps["train"]
    assert step.status is StepStatus.SUCCEEDED
    (attempt,) = step.attempts  # one attempt: no OOM kill, no retry
    assert attempt.outcome is not None and attempt.outcome.kind is OutcomeKind.SUCCEEDED
    assert [(g.from_limit // MI, g.to_limit // MI, g.outcome) for g in attempt.growths] == [
        (512, 1024, "in_force"),
        (1024, 2048, "in_force"),
    ]
    assert attempt.memory_limit == attempt.memory_request == 2048 * MI
    for g in attempt.growths:
        assert g.seconds is not None and 0 <= g.seconds < 10 and g.at >= (attempt.started_at or 0)

    name = pod_name("grow-ok", "train", 1)
    (pod,) = run_pods(k8s_api_client, cluster_namespace, "grow-ok")
    status = pod.status.container_statuses[0]
    assert status.restart_count == 0 and status.state.terminated.exit_code == 0
    assert status.state.terminated.reason != "OOMKilled"
    assert pod.spec.containers[0].resources.limits["memory"] == "2Gi"
    on_pod = growths_of({"metadata": {"name": name, "annotations": pod.metadata.annotations}})
    assert on_pod == attempt.growths and ANN_GROWTHS in pod.metadata.annotations
    reasons = [r for r, _ in events_by_pod(k8s_api_client, cluster_namespace)[name]]
    assert reasons.count("MemoryGrown") == 2 and "OOMRetry" not in reasons
    # The observer heard each growth as it happened, with the attempt's memory after it.
    grown = rec.names("grown")
    assert [(g.outcome, a.memory_limit // MI) for _, a, g in grown] == [
        ("in_force", 1024),
        ("in_force", 2048),
    ]


def test_a_step_allocating_everything_at_once_still_takes_the_oom_path(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    policy = fast_check_policy(memory_multiplier=3)
    spec = one_step("grow-burst", cluster_namespace, "train", alloc_code(1230), policy)
    result = run(k8s_api_client, spec)

    assert result.status is RunStatus.SUCCEEDED, result.to_dict()
    attempts = result.steps["train"].attempts
    assert [a.outcome.kind for a in attempts if a.outcome] == [
        OutcomeKind.OOM_KILLED,
        OutcomeKind.SUCCEEDED,
    ]
    assert [a.budget for a in attempts] == [None, "oom"]
    first, retry = attempts
    # Faster than the probe's second: no growth, or one the kill overtook. Rarely (a loaded
    # machine, the local cluster's instant resize) a growth lands just as the kernel kills:
    # then the attempt had that memory, and the retry escalates from it.
    landed = [g for g in first.growths if g.grew]
    assert first.memory_limit == (landed[-1].to_limit if landed else 512 * MI)
    assert retry.memory_limit == first.memory_limit * 3


def test_a_supervisor_killed_between_growths_keeps_them_on_restart(
    cluster: Any, k8s_api_client: Any, cluster_namespace: str, tmp_path: Path
) -> None:
    run_id = "grow-restart"
    spec = one_step(run_id, cluster_namespace, "train", steady_code(40, 1230), fast_check_policy())
    spec_file = tmp_path / "run.json"
    spec_file.write_text(spec.model_dump_json())
    core = k8s.CoreV1Api(k8s_api_client)
    name = pod_name(run_id, "train", 1)

    def grown_once() -> bool:
        pods = core.list_namespaced_pod(cluster_namespace, field_selector=f"metadata.name={name}")
        return bool(pods.items) and ANN_GROWTHS in (pods.items[0].metadata.annotations or {})

    first = start_supervisor(tmp_path, cluster.kubeconfig_path, spec_file, capture_stderr=False)
    wait_for(grown_once, timeout=60, interval=0.1, what="the first growth")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = start_supervisor(tmp_path, cluster.kubeconfig_path, spec_file, capture_stderr=False)
    assert second.wait(120) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "succeeded"
    (attempt,) = result["steps"]["train"]["attempts"]
    assert attempt["outcome"]["kind"] == "succeeded"
    assert [
        (g["from_limit"] // MI, g["to_limit"] // MI, g["outcome"]) for g in attempt["growths"]
    ] == [
        (512, 1024, "in_force"),
        (1024, 2048, "in_force"),
    ]
    assert attempt["memory_limit"] == 2048 * MI


@pytest.mark.local_only(
    "fills the node's memory with a placeholder pod: the real tier's one node is shared with "
    "other test runs, whose pods it would hold up"
)
def test_a_growth_the_node_cannot_hold_falls_back_to_a_retry(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    core = k8s.CoreV1Api(k8s_api_client)
    (node,) = core.list_node().items
    held = sum(
        memory_bytes(c.resources.requests["memory"])
        for p in core.list_pod_for_all_namespaces().items
        if p.spec.node_name == node.metadata.name and p.status.phase in ("Pending", "Running")
        for c in p.spec.containers
        if c.resources and c.resources.requests and "memory" in c.resources.requests
    )
    # Room for the step's 512Mi, not for its growth to 1Gi.
    room = memory_bytes(node.status.allocatable["memory"]) - held - 768 * MI
    placeholder = {
        "metadata": {"name": "placeholder"},
        "spec": {
            "containers": [
                {
                    "name": "hold",
                    "image": "python:3.11",
                    "command": ["sleep", "600"],
                    "resources": {"requests": {"memory": str(room)}},
                }
            ],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
        },
    }
    core.create_namespaced_pod(cluster_namespace, placeholder)
    policy = fast_check_policy()
    spec = one_step("grow-full", cluster_namespace, "train", steady_code(50, 700), policy)
    sup, box, thread = run_in_thread(k8s_api_client, spec)
    second = pod_name("grow-full", "train", 2)

    def retry_created() -> bool:
        names = [p.metadata.name for p in run_pods(k8s_api_client, cluster_namespace, "grow-full")]
        return second in names

    wait_for(retry_created, timeout=120, interval=0.2, what="the retry after the OOM kill")
    core.delete_namespaced_pod("placeholder", cluster_namespace, grace_period_seconds=0)
    thread.join(180)
    result = box["result"]
    assert result.status is RunStatus.SUCCEEDED, result.to_dict()
    first, last = result.steps["train"].attempts
    assert first.outcome is not None and first.outcome.kind is OutcomeKind.OOM_KILLED
    assert first.memory_limit == 512 * MI  # the growth never came into force
    assert [(g.to_limit // MI, g.grew) for g in first.growths] == [(1024, False)]
    assert first.growths[0].outcome in ("deferred", "timed_out", "overtaken")
    assert last.outcome is not None and last.outcome.kind is OutcomeKind.SUCCEEDED
    assert last.memory_limit == 1024 * MI and last.budget == "oom"
