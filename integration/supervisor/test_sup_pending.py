"""Issue 4 §4/§8: nothing waits forever. Too big for every node: refused before any pod;
waiting for memory others hold: queued and reported; Pending past pending_timeout: failed."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s
from sup_helpers import Recorder, one_step, run, run_pods, template

from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.supervisor import RunSpec, RunStatus, StepSpec, StepStatus

pytestmark = pytest.mark.cluster  # the session cluster's node has 8Gi allocatable


def hold_memory(
    api_client: Any, namespace: str, request: str, seconds: float, name: str = "holder"
) -> None:
    """Another workload (not ours) holding `request` of the node for `seconds`."""
    pod = template(f"import time; time.sleep({seconds})")
    pod["metadata"]["name"] = name
    pod["spec"]["restartPolicy"] = "Never"
    pod["spec"]["containers"][0]["resources"] = {
        "requests": {"memory": request},
        "limits": {"memory": request},
    }
    k8s.CoreV1Api(api_client).create_namespaced_pod(namespace, pod)


def test_request_above_every_node_is_refused_before_the_pod_exists(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    spec = RunSpec(
        run_id="huge",
        namespace=cluster_namespace,
        steps=[
            StepSpec(
                name="huge",
                pod_template=template("print(1)"),
                policy=OOMPolicy(initial_memory="64Gi"),
            ),
            StepSpec(name="after", pod_template=template("print(2)"), upstream=["huge"]),
        ],
    )
    result = run(k8s_api_client, spec)
    step = result.steps["huge"]
    assert step.status is StepStatus.FAILED and step.attempts == []
    assert "largest node has 8Gi allocatable" in step.message
    assert "64Gi" in step.message
    assert result.steps["after"].status is StepStatus.SKIPPED
    assert run_pods(k8s_api_client, cluster_namespace, "huge") == []


def test_waiting_for_memory_others_hold_queues_then_runs(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    # 5Gi held by someone else on an 8Gi node: our 5Gi step waits for it, and says so.
    hold_memory(k8s_api_client, cluster_namespace, "5Gi", 2)
    policy = OOMPolicy(initial_memory="5Gi", pending_timeout_seconds=60)
    spec = one_step("wait", cluster_namespace, "second", "print(1)", policy)
    rec = Recorder()
    result = run(k8s_api_client, spec, rec)
    assert result.status is RunStatus.SUCCEEDED
    waiting = rec.names("waiting")
    assert len(waiting) == 1
    assert "waiting for memory other pods hold" in waiting[0][2]
    assert "Insufficient memory" in waiting[0][2]
    assert all(len(s.attempts) == 1 for s in result.steps.values())


def test_pending_longer_than_pending_timeout_fails_with_the_reason(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    hold_memory(k8s_api_client, cluster_namespace, "5Gi", 30)
    policy = OOMPolicy(initial_memory="5Gi", pending_timeout_seconds=1.5)
    spec = one_step("late", cluster_namespace, "starved", "print(1)", policy)
    result = run(k8s_api_client, spec)
    step = result.steps["starved"]
    assert step.status is StepStatus.FAILED and len(step.attempts) == 1
    outcome = step.attempts[0].outcome
    assert outcome is not None and outcome.kind is OutcomeKind.UNSCHEDULABLE
    assert "longer than pending_timeout (1.5s)" in step.message
    assert "Insufficient memory" in step.message
    names = [p.metadata.name for p in run_pods(k8s_api_client, cluster_namespace, "late")]
    assert names == []  # deleted, not left Pending


def test_a_request_that_cannot_fit_beside_the_orchestrator_pod_fails_at_once(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    # The run's own orchestrator pod holds 5Gi of the 8Gi node for the whole run: a 5Gi
    # attempt would wait pending_timeout (600s) for memory that never frees up.
    hold_memory(k8s_api_client, cluster_namespace, "5Gi", 120, name="orchestrator")
    policy = OOMPolicy(initial_memory="5Gi", pending_timeout_seconds=600)
    spec = one_step("beside", cluster_namespace, "second", "print(1)", policy)
    spec = spec.model_copy(update={"orchestrator_pod": "orchestrator"})
    result = run(k8s_api_client, spec)
    step = result.steps["second"]
    assert step.status is StepStatus.FAILED
    assert result.finished_at - result.started_at < 60  # not pending_timeout
    (attempt,) = step.attempts
    assert attempt.outcome is not None and attempt.outcome.kind is OutcomeKind.UNSCHEDULABLE
    assert "this run's orchestrator pod holds 5Gi of it" in step.message
    assert "Insufficient memory" in step.message
