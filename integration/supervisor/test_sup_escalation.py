"""Issue 4 §8 on the local cluster, with real processes and real cgroup OOM kills: OOM
escalation to success, the cap, app errors, image pull failures."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sup_helpers import (
    MI,
    Recorder,
    alloc_code,
    events_by_pod,
    one_step,
    pod_name,
    run,
    run_pods,
    template,
)

from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.policy import AppRetryConfig, OOMPolicy
from zenml_oom_orchestrator.supervisor import RunSpec, RunStatus, StepSpec, StepStatus, naming
from zenml_oom_orchestrator.supervisor.state import AttemptResult

pytestmark = pytest.mark.cluster
# The kill-and-retry path: growing in place (test_sup_grow.py) is off where a test counts
# kills, or a burst that thrashes at its limit for a second could be grown instead of killed.


def test_oom_escalates_256_512_1gi_and_succeeds_on_attempt_3(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    policy = OOMPolicy(initial_memory="256Mi", memory_multiplier=2, grow_in_place=False)
    spec = one_step("esc-ok", cluster_namespace, "train", alloc_code(600), policy)
    rec = Recorder()
    result = run(k8s_api_client, spec, rec)

    assert result.status is RunStatus.SUCCEEDED
    step = result.steps["train"]
    assert step.status is StepStatus.SUCCEEDED
    assert [a.memory_limit // MI for a in step.attempts] == [256, 512, 1024]
    assert [a.memory_request // MI for a in step.attempts] == [256, 512, 1024]
    assert [a.outcome.kind for a in step.attempts if a.outcome] == [
        OutcomeKind.OOM_KILLED,
        OutcomeKind.OOM_KILLED,
        OutcomeKind.SUCCEEDED,
    ]
    assert [a.outcome.exit_code for a in step.attempts if a.outcome] == [137, 137, 0]
    assert [a.budget for a in step.attempts] == [None, "oom", "oom"]
    for a in step.attempts:
        assert a.started_at and a.finished_at and a.finished_at >= a.started_at and a.node

    # What `kubectl describe` shows: one Event per decision, on each attempt's pod; a plain
    # success is no decision: its Event only holds the result, which outlives the pod.
    events = events_by_pod(k8s_api_client, cluster_namespace)
    a1, a2, a3 = (pod_name("esc-ok", "train", n) for n in (1, 2, 3))
    assert [r for r, _ in events[a1]] == ["OOMRetry"]
    assert "retrying with 512Mi" in events[a1][0][1]
    assert [r for r, _ in events[a2]] == ["OOMRetry"]
    assert "retrying with 1Gi" in events[a2][0][1]
    assert events[a3] == [("Succeeded", "attempt 3 succeeded")]

    # The pods keep their facts: memory, previous outcome, and the result + decision.
    pods = {p.metadata.name: p for p in run_pods(k8s_api_client, cluster_namespace, "esc-ok")}
    assert set(pods) == {a1, a2, a3}
    p3 = pods[a3]
    assert p3.spec.restart_policy == "Never"
    assert p3.metadata.labels[naming.LABEL_ATTEMPT] == "3"
    assert p3.metadata.annotations[naming.ANN_MEMORY_LIMIT] == "1Gi"
    assert '"oom_killed"' in p3.metadata.annotations[naming.ANN_PREVIOUS_OUTCOME]
    main = p3.spec.containers[0]
    assert main.resources.limits["memory"] == "1Gi" and main.resources.requests["memory"] == "1Gi"
    assert naming.ANN_RESULT not in p3.metadata.annotations  # the success: no write
    assert p3.status.container_statuses[0].state.terminated.exit_code == 0
    saved = AttemptResult.from_json(pods[a2].metadata.annotations[naming.ANN_RESULT])
    assert saved.record.outcome is not None
    assert saved.record.outcome.kind is OutcomeKind.OOM_KILLED
    assert saved.decision is not None and saved.decision.to_dict()["memory_limit"] == 1024 * MI

    # The observer heard it all, in order, from the single writer.
    assert [c[0] for c in rec.calls] == ["started", "finished"] * 3 + ["step", "run"]


def test_over_the_cap_fails_after_exactly_the_configured_attempts(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    policy = OOMPolicy(
        grow_in_place=False,
        initial_memory="128Mi",
        memory_multiplier=2,
        memory_increment="0",
        max_memory="512Mi",
        max_oom_retries=5,
    )
    spec = one_step("esc-cap", cluster_namespace, "big", alloc_code(700), policy)
    result = run(k8s_api_client, spec)
    step = result.steps["big"]
    assert result.status is RunStatus.FAILED and step.status is StepStatus.FAILED
    assert [a.memory_limit // MI for a in step.attempts] == [128, 256, 512]
    assert all(a.outcome and a.outcome.kind is OutcomeKind.OOM_KILLED for a in step.attempts)
    assert "already max_memory (512Mi)" in step.message
    assert "raise max_memory above 512Mi" in step.message
    events = events_by_pod(k8s_api_client, cluster_namespace)
    assert [r for r, _ in events[pod_name("esc-cap", "big", 3)]] == ["GaveUp"]
    assert len(run_pods(k8s_api_client, cluster_namespace, "esc-cap")) == 3


def test_app_error_is_never_escalated_and_follows_its_retry_config(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    spec = one_step(
        "esc-app",
        cluster_namespace,
        "buggy",
        "import sys; print('bug'); sys.exit(3)",
        OOMPolicy(initial_memory="128Mi"),
        app_retry=AppRetryConfig(max_retries=2, delay=0.3, backoff=2),
    )
    result = run(k8s_api_client, spec)
    step = result.steps["buggy"]
    assert step.status is StepStatus.FAILED
    assert len(step.attempts) == 3  # 1 + max_retries
    assert {a.memory_limit // MI for a in step.attempts} == {128}
    assert [a.outcome.exit_code for a in step.attempts if a.outcome] == [3, 3, 3]
    assert [a.budget for a in step.attempts] == [None, "app", "app"]
    # delay 0.3 s, then 0.6 s (backoff 2): the gaps between attempts honour it.
    gaps = [
        b.started_at - a.finished_at  # type: ignore[operator]
        for a, b in zip(step.attempts, step.attempts[1:], strict=False)
    ]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6
    assert (
        "app_retries_exhausted" not in step.message and "more memory would not help" in step.message
    )
    reasons = events_by_pod(k8s_api_client, cluster_namespace)
    assert [reasons[pod_name("esc-app", "buggy", n)][0][0] for n in (1, 2, 3)] == [
        "RetryAppError",
        "RetryAppError",
        "GaveUp",
    ]


def test_image_pull_failure_fails_fast_with_that_reason(
    k8s_api_client: Any, cluster_namespace: str, unpullable_image: str
) -> None:
    spec = RunSpec(
        run_id="esc-img",
        namespace=cluster_namespace,
        steps=[
            StepSpec(
                name="pull",
                pod_template=template("print(1)", image=unpullable_image),
                policy=OOMPolicy(initial_memory="64Mi"),
            ),
            StepSpec(name="next", pod_template=template("print(2)"), upstream=["pull"]),
        ],
    )
    t0 = time.monotonic()
    result = run(k8s_api_client, spec)
    assert time.monotonic() - t0 < 20
    step = result.steps["pull"]
    assert step.status is StepStatus.FAILED and len(step.attempts) == 1
    outcome = step.attempts[0].outcome
    assert outcome is not None and outcome.kind is OutcomeKind.IMAGE_ERROR
    assert outcome.reason in ("ErrImagePull", "ImagePullBackOff")
    assert "could not pull its image" in step.message
    assert result.steps["next"].status is StepStatus.SKIPPED
    # The attempt never finishes on its own (the pull never heals): it was deleted.
    assert run_pods(k8s_api_client, cluster_namespace, "esc-img") == []
