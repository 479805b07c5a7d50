"""Issue 12 §6 on both clusters: a step that grows steadily is grown in place (pods/resize)
and finishes in its first attempt; one that allocates everything at once still takes the OOM
path. Real processes, real cgroup limits, real resizes by the kubelet."""

from __future__ import annotations

from typing import Any

import pytest
from sup_helpers import MI, Recorder, alloc_code, events_by_pod, one_step, pod_name, run, run_pods

from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.supervisor import RunStatus, StepStatus
from zenml_oom_orchestrator.supervisor.grow import ANN_GROWTHS, growths_of

pytestmark = pytest.mark.cluster


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
    policy = OOMPolicy(initial_memory="512Mi")
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
    policy = OOMPolicy(initial_memory="512Mi", memory_multiplier=3)
    spec = one_step("grow-burst", cluster_namespace, "train", alloc_code(1230), policy)
    result = run(k8s_api_client, spec)

    assert result.status is RunStatus.SUCCEEDED, result.to_dict()
    attempts = result.steps["train"].attempts
    assert [a.outcome.kind for a in attempts if a.outcome] == [
        OutcomeKind.OOM_KILLED,
        OutcomeKind.SUCCEEDED,
    ]
    assert [a.memory_limit // MI for a in attempts] == [512, 1536]
    assert [a.budget for a in attempts] == [None, "oom"]
