"""What stock users rely on keeps working with several attempts per step: the user's own retry
limit for app errors, caching, max_parallelism, the execution modes and `runs stop`."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from kubernetes import client as k8s
from zenml.client import Client
from zenml.enums import ExecutionMode, ExecutionStatus
from zenml.utils.run_utils import stop_run
from zenml_runs import read_outcome, run_oom, wait_until

from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY
from zenml_oom_orchestrator.testing.pipelines import (
    buggy,
    cacheable,
    failing_beside_a_long_step,
    long_running,
)
from zenml_oom_orchestrator.testing.stack import no_build_docker_settings

pytestmark = [pytest.mark.zenml, pytest.mark.cluster]

MEMORY = {"initial_memory": "400Mi", "max_memory": "800Mi"}


def _history(run: Any, step: str) -> list[dict[str, Any]]:
    return list(Client().zen_store.get_run_step(run.steps[step].id).run_metadata[HISTORY_KEY])


def test_app_error_follows_the_users_retry_limit_not_the_oom_budget(oom_stack: str) -> None:
    # The server accepts 1 + 3 + 3 retries (the user's, OOM, infrastructure); only 1 is used.
    outcome = run_oom(buggy, MEMORY, retries=1)
    print("\n" + outcome.row())
    history = _history(outcome.run, "fail")
    assert [(h["outcome"], h["memory_limit"]) for h in history] == [
        ("app_error", "400Mi"),
        ("app_error", "400Mi"),  # same memory: never escalated
    ]
    assert history[-1]["decision"] == "giveup"
    # The step's exception, from its log's tail (FallbackToLogsOnError), in the message.
    assert "RuntimeError: the step's own bug)" in history[-1]["message"]
    assert outcome.run.status is ExecutionStatus.FAILED
    assert outcome.step_runs["fail"][-1] == "failed"
    assert outcome.open_step_runs == 0


def test_cached_steps_start_no_pod_and_max_parallelism_holds(
    oom_stack: str, run_cluster: tuple[Any, str]
) -> None:
    settings = {**MEMORY, "max_parallelism": 1}
    # A tag of its own: no earlier run in the session (or on this server) can be a cache hit,
    # so the first run really runs all three steps and the second is served from it.
    tag = uuid4().hex
    first = run_oom(cacheable, settings, mib=10, tag=tag)
    second = run_oom(cacheable, settings, mib=10, tag=tag)
    print("\n" + first.row() + "\n" + second.row())
    assert first.run.status is ExecutionStatus.COMPLETED
    assert first.step_runs == {
        "first": ["completed"],
        "second": ["completed"],
        "report": ["completed"],
    }
    spans = sorted(
        (h["started_at"], h["finished_at"])
        for step in ("first", "second", "report")
        for h in _history(first.run, step)
    )
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 0.5, "max_parallelism=1 but two attempts overlapped"
    assert second.run.status is ExecutionStatus.COMPLETED
    assert second.step_runs == {
        "first": ["cached"],
        "second": ["cached"],
        "report": ["cached"],
    }
    # Cached steps start no pod: the second run has only its orchestrator pod, and no attempts.
    api, namespace = run_cluster
    core = k8s.CoreV1Api(api)

    def attempt_pods(run_id: Any) -> list[str]:
        selector = f"run_id={run_id},step_name"
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return sorted(p.metadata.labels["step_name"] for p in pods)

    assert attempt_pods(first.run.id) == ["first", "report", "second"]
    assert attempt_pods(second.run.id) == []
    for step in ("first", "second", "report"):
        metadata = Client().zen_store.get_run_step(second.run.steps[step].id).run_metadata
        assert HISTORY_KEY not in metadata, f"{step} of the cached run has attempts"


@pytest.mark.parametrize(
    ("mode", "sibling", "after_sibling"),
    [
        (ExecutionMode.FAIL_FAST, ["stopped"], []),
        (ExecutionMode.STOP_ON_FAILURE, ["completed"], []),
        (ExecutionMode.CONTINUE_ON_FAILURE, ["completed"], ["completed"]),
    ],
    ids=["fail_fast", "stop_on_failure", "continue_on_failure"],
)
def test_execution_modes_decide_what_a_failure_does_to_the_other_steps(
    oom_stack: str, mode: ExecutionMode, sibling: list[str], after_sibling: list[str]
) -> None:
    configured = failing_beside_a_long_step.with_options(execution_mode=mode)
    outcome = run_oom(configured, MEMORY, sleep_seconds=15)
    print("\n" + outcome.row())
    assert outcome.run.status is ExecutionStatus.FAILED
    assert outcome.step_runs["fail"][-1] == "failed"
    assert outcome.step_runs["sleep"] == sibling
    assert outcome.step_runs["report"] == after_sibling
    assert outcome.open_step_runs == 0


def test_zenml_pipeline_runs_stop_ends_the_run_stopped(oom_stack: str) -> None:
    Client().activate_stack(oom_stack)
    settings = {
        "docker": no_build_docker_settings(),
        "orchestrator": {**MEMORY, "synchronous": False},
    }
    run = long_running.with_options(settings=settings)(sleep_seconds=300)
    assert run is not None

    def step_running() -> bool:
        steps = Client().get_pipeline_run(run.id).steps
        return "sleep" in steps and steps["sleep"].status is ExecutionStatus.RUNNING

    wait_until(step_running, 90, "the step to run")
    stop_run(Client().get_pipeline_run(run.id), graceful=False)
    wait_until(
        lambda: Client().get_pipeline_run(run.id, hydrate=False).status.is_finished,
        90,
        "the run to end",
    )
    outcome = read_outcome("oom_kubernetes", run.id, 0)
    print("\n" + outcome.row())
    assert outcome.run.status is ExecutionStatus.STOPPED
    assert outcome.step_runs["sleep"] == ["stopped"]
    assert outcome.open_step_runs == 0
