"""Issue 4 §8: disruptions and lost nodes are retried at the same memory, on the
infrastructure budget, never the OOM budget."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from sup_helpers import MI, events_by_pod, pod_name, run_in_thread, template

from zenml_oom_orchestrator.localcluster.testing import healthy_peer_node, wait_for
from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.supervisor import RunSpec, RunStatus, StepSpec, StepStatus

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.local_only(
        "evicts and loses pods and turns the node NotReady through the local kubelet"
    ),
]

# Attempts 1 and 2 sleep (to be disrupted); attempt 3 finishes at once.
SLEEPS_TWICE = "import os, time; os.environ['OOM_ATTEMPT'] in ('1', '2') and time.sleep(60)"


def _running(local_cluster: Any, namespace: str, name: str) -> bool:
    try:
        pod = local_cluster.store.get("pods", namespace, name)
    except Exception:  # noqa: BLE001 - not created yet
        return False
    status = pod.get("status") or {}
    # Ready too: a pod lost before its container was ever ready reads as a failing readiness
    # probe, not as a silent node (ContainersReady False as well).
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
    )
    return status.get("phase") == "Running" and ready


def _one_step(
    api_client: Any,
    namespace: str,
    run_id: str,
    name: str,
    code: str,
    memory: str,
    pod_template: dict[str, Any] | None = None,
    **run: Any,
) -> Any:
    """Run one step in a thread. max_oom_retries=0: if a disruption touched the OOM budget,
    the step would fail."""
    spec = RunSpec(
        run_id=run_id,
        namespace=namespace,
        **run,
        steps=[
            StepSpec(
                name=name,
                pod_template=pod_template or template(code),
                policy=OOMPolicy(initial_memory=memory, max_oom_retries=0),
            )
        ],
    )
    return run_in_thread(api_client, spec)


def test_eviction_and_node_loss_retry_at_same_memory_on_infrastructure_budget(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    run_id = "infra"
    sup, box, thread = _one_step(
        k8s_api_client, cluster_namespace, run_id, "fragile", SLEEPS_TWICE, "192Mi"
    )
    kubelet = local_cluster.kubelet

    a1 = pod_name(run_id, "fragile", 1)
    wait_for(lambda: _running(local_cluster, cluster_namespace, a1), timeout=20, what="attempt 1")
    kubelet.evict_pod(
        cluster_namespace,
        a1,
        message="The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi. ",
    )
    a2 = pod_name(run_id, "fragile", 2)
    wait_for(lambda: _running(local_cluster, cluster_namespace, a2), timeout=20, what="attempt 2")
    kubelet.lose_pod(cluster_namespace, a2)

    thread.join(60)
    result = box["result"]
    step = result.steps["fragile"]
    assert result.status is RunStatus.SUCCEEDED and step.status is StepStatus.SUCCEEDED
    kinds = [a.outcome.kind for a in step.attempts if a.outcome]
    assert kinds[0] in (OutcomeKind.EVICTED, OutcomeKind.DISRUPTED)
    assert kinds[1:] == [OutcomeKind.NODE_LOST, OutcomeKind.SUCCEEDED]
    assert [a.memory_limit // MI for a in step.attempts] == [192, 192, 192]
    assert [a.memory_request // MI for a in step.attempts] == [192, 192, 192]
    assert [a.budget for a in step.attempts] == [None, "infrastructure", "infrastructure"]
    events = events_by_pod(k8s_api_client, cluster_namespace)
    assert [r for r, _ in events[a1]] == ["RetryInfrastructure"]
    # The lost pod is gone from the API; its Event still names it.
    assert [r for r, _ in events[a2]] == ["RetryInfrastructure"]
    assert "same memory" in events[a2][0][1]


def _tolerant_template(code: str, seconds: int) -> dict[str, Any]:
    """What a user sets through pod_settings.tolerations: evict after `seconds` on a node that
    stopped reporting (the API server's default is 300 s)."""
    body = template(code)
    body["spec"]["tolerations"] = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
    ]
    return body


SLEEPS_ONCE = "import os, time; os.environ['OOM_ATTEMPT'] == '1' and time.sleep(60)"


def _lose_the_node_under_one_step(
    local_cluster: Any,
    api_client: Any,
    namespace: str,
    run_id: str,
    peer: bool,
    pod_template: dict[str, Any] | None = None,
    **run: Any,
) -> Any:
    """Attempt 1 of step `s` runs; its node goes silent (beside a Ready peer node or alone)
    until attempt 1 has ended, then comes back. Returns the step's result."""
    sup, box, thread = _one_step(
        api_client, namespace, run_id, "s", SLEEPS_ONCE, "128Mi", pod_template, **run
    )
    kubelet = local_cluster.kubelet
    a1 = pod_name(run_id, "s", 1)
    wait_for(lambda: _running(local_cluster, namespace, a1), timeout=20, what="attempt 1")
    with healthy_peer_node(local_cluster.store) if peer else contextlib.nullcontext():
        try:
            kubelet.set_node_ready(False)
            # The retry cannot be scheduled on a NotReady node: it waits, it is not lost.
            wait_for(
                lambda: (
                    sup.status()["s"][0] is StepStatus.PENDING
                    and len(sup.engine.states["s"].attempts) == 1
                ),
                timeout=20,
                what="attempt 1 ended and attempt 2 pending",
            )
        finally:
            kubelet.set_node_ready(True)
    thread.join(30)
    step = box["result"].steps["s"]
    assert step.status is StepStatus.SUCCEEDED
    assert [a.outcome.kind for a in step.attempts[1:] if a.outcome] == [OutcomeKind.SUCCEEDED]
    assert [a.budget for a in step.attempts] == [None, "infrastructure"]
    assert {a.memory_limit // MI for a in step.attempts} == {128}
    return step


def test_node_going_not_ready_evicts_the_attempt_and_retries_it_when_the_node_is_back(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    """As on the real tier (test_real_faults, beside a Ready peer node): the node stops
    reporting, the pod stays Running with Ready False; after its tolerationSeconds the taint
    manager deletes it and it stays Terminating (no kubelet). The supervisor ends the attempt
    on that (disrupted, DeletionByTaintManager), not after its own 300 s node_lost_timeout,
    and retries it at the same memory on the infrastructure budget; attempt 2 runs once the
    node is back. (The emulator's side: tests/localcluster/test_kubelet_faults.py.)"""
    step = _lose_the_node_under_one_step(
        local_cluster,
        k8s_api_client,
        cluster_namespace,
        "notready",
        peer=True,
        pod_template=_tolerant_template(SLEEPS_ONCE, 1),
    )
    first = step.attempts[0].outcome
    assert first is not None and first.kind is OutcomeKind.DISRUPTED, first
    assert first.reason == "DeletionByTaintManager"


def test_attempt_on_the_only_node_gone_silent_is_node_lost_after_the_timeout(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    """The only node NotReady: the control plane evicts nothing (full disruption), the pod
    stays Running with Ready False for good. node_lost_timeout_seconds ends the attempt
    (`node_lost`, NodeNotReady) and it is retried at the same memory once the node is back."""
    step = _lose_the_node_under_one_step(
        local_cluster,
        k8s_api_client,
        cluster_namespace,
        "silent",
        peer=False,
        node_lost_timeout_seconds=2,
    )
    first = step.attempts[0].outcome
    assert first is not None and first.kind is OutcomeKind.NODE_LOST, first
    assert first.reason == "NodeNotReady"
