"""StoreSync against a real local ZenML server: the store ends truthful in every shape of run.

Attempts are simulated the way step pods talk to the store (create a RUNNING step run, report
FAILED, or report nothing because SIGKILL came first); the server's own rules do the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest
from zenml import pipeline, step
from zenml.client import Client
from zenml.config.retry_config import StepRetryConfig
from zenml.enums import ExecutionMode, ExecutionStatus
from zenml.models import PipelineRunUpdate, StepRunRequest, StepRunResponse, StepRunUpdate
from zenml.pipelines.run_utils import create_placeholder_run
from zenml.utils.time_utils import utc_now

from zenml_oom_orchestrator.orchestrators.store_sync import CLOSING_KEY, OPEN_STATUSES, StoreSync

pytestmark = [
    pytest.mark.zenml,
    pytest.mark.usefixtures("default_stack"),
    pytest.mark.local_only("uses no cluster (a ZenML server and simulated attempts): run once"),
]

BUDGET = 3  # the step's stored retry.max_retries: 4 step runs, the 4th not retriable


@step
def source() -> int:
    return 1


@step(retry=StepRetryConfig(max_retries=BUDGET))
def left(x: int) -> int:
    return x


@step(retry=StepRetryConfig(max_retries=BUDGET))
def right(x: int) -> int:
    return x


@pipeline(enable_cache=False)
def fork() -> None:
    x = source()
    left(x)
    right(x)


@pytest.fixture(scope="module")
def default_stack(zenml_server: object) -> Iterator[None]:
    """Snapshots built here must carry the step's own budget. On this flavor's stack the
    orchestrator raises it at submission (retry_budget), and earlier tests in the session
    leave that stack active, so these tests pin the default stack themselves."""
    client = Client()
    before = client.active_stack_model.name
    client.activate_stack("default")
    yield
    client.activate_stack(before)


def _new_run(mode: ExecutionMode = ExecutionMode.CONTINUE_ON_FAILURE) -> UUID:
    configured = fork.with_options(execution_mode=mode)
    configured.prepare()
    snapshot = configured._create_snapshot(**configured._run_args)
    return create_placeholder_run(snapshot=snapshot).id


def _pod_starts(run_id: UUID, name: str) -> StepRunResponse:
    """What a step pod does first: create its step run as RUNNING."""
    client = Client()
    return client.zen_store.create_run_step(
        StepRunRequest(
            name=name,
            pipeline_run_id=run_id,
            status=ExecutionStatus.RUNNING,
            start_time=utc_now(),
            project=client.active_project.id,
        )
    )


def _pod_reports(step_run: StepRunResponse, status: ExecutionStatus) -> None:
    Client().zen_store.update_run_step(
        step_run.id, StepRunUpdate(status=status, end_time=utc_now())
    )


def _statuses(sync: StoreSync, name: str) -> list[str]:
    return [s.status.value for s in sync.step_runs(name)]


def test_killed_attempt_is_retrying_then_retried_when_the_next_attempt_starts(
    zenml_server: object,
) -> None:
    run_id = _new_run()
    sync = StoreSync(run_id)
    _pod_reports(_pod_starts(run_id, "source"), ExecutionStatus.COMPLETED)

    killed = _pod_starts(run_id, "left")  # then SIGKILL: it never reports
    sync.mark_killed_for_retry(killed)
    assert _statuses(sync, "left") == ["retrying"]
    _pod_reports(_pod_starts(run_id, "left"), ExecutionStatus.COMPLETED)
    _pod_reports(_pod_starts(run_id, "right"), ExecutionStatus.COMPLETED)

    assert _statuses(sync, "left") == ["retried", "completed"]
    run = sync.finish_run(failed=[], stopped=[], messages={}, was_stopped=False)
    assert run.status is ExecutionStatus.COMPLETED
    assert sync.open_step_runs() == []


def test_killed_final_attempt_ends_failed_with_budget_left(zenml_server: object) -> None:
    run_id = _new_run()
    sync = StoreSync(run_id)
    _pod_reports(_pod_starts(run_id, "source"), ExecutionStatus.COMPLETED)
    _pod_reports(_pod_starts(run_id, "right"), ExecutionStatus.COMPLETED)
    _pod_starts(run_id, "left")  # killed at the cap: no next attempt

    message = "step `left` needs more than its cap max_memory=1Gi"
    run = sync.finish_run(
        failed=["left"], stopped=[], messages={"left": message}, was_stopped=False
    )

    runs = sync.step_runs("left")
    stored = Client().get_pipeline_run(run_id).snapshot
    assert stored is not None
    left_retry = stored.step_configurations["left"].config.retry
    assert left_retry is not None and left_retry.max_retries == BUDGET, "stack changed the budget"
    assert [s.status.value for s in runs] == ["retried"] * BUDGET + ["failed"]
    final = Client().zen_store.get_run_step(runs[-1].id)
    assert final.exception_info is not None and message in final.exception_info.message
    assert CLOSING_KEY in final.run_metadata
    assert run.status is ExecutionStatus.FAILED
    assert sync.open_step_runs() == []


@pytest.mark.parametrize(
    "mode", [ExecutionMode.STOP_ON_FAILURE, ExecutionMode.FAIL_FAST], ids=lambda m: m.value
)
def test_two_failed_steps_both_close_in_modes_that_refuse_creations_after_failure(
    zenml_server: object, mode: ExecutionMode
) -> None:
    run_id = _new_run(mode)
    sync = StoreSync(run_id)
    _pod_reports(_pod_starts(run_id, "source"), ExecutionStatus.COMPLETED)
    # `left` reported its own app error on a retriable slot: the server made it RETRYING.
    _pod_reports(_pod_starts(run_id, "left"), ExecutionStatus.FAILED)
    _pod_starts(run_id, "right")  # OOM-killed
    assert _statuses(sync, "left") == ["retrying"]

    messages = {"left": "app error, no retries left", "right": "OOM at the cap"}
    run = sync.finish_run(
        failed=["left", "right"], stopped=[], messages=messages, was_stopped=False
    )
    assert _statuses(sync, "left")[-1] == "failed"
    assert _statuses(sync, "right")[-1] == "failed"
    assert run.status is ExecutionStatus.FAILED
    assert sync.open_step_runs() == []


def test_stopped_run_ends_stopped_and_stops_retrying_steps(zenml_server: object) -> None:
    run_id = _new_run()
    sync = StoreSync(run_id)
    _pod_reports(_pod_starts(run_id, "source"), ExecutionStatus.COMPLETED)
    sync.mark_killed_for_retry(_pod_starts(run_id, "left"))  # between two attempts
    _pod_starts(run_id, "right")  # its pod is being deleted by the stop
    # What `zenml pipeline runs stop` does to the store before the orchestrator reacts.
    Client().zen_store.update_run(run_id, PipelineRunUpdate(status=ExecutionStatus.STOPPING))

    run = sync.finish_run(failed=[], stopped=["left", "right"], messages={}, was_stopped=True)
    assert _statuses(sync, "left") == ["stopped"]
    assert _statuses(sync, "right") == ["stopped"]
    assert run.status is ExecutionStatus.STOPPED
    assert not any(s.status in OPEN_STATUSES for s in sync.step_runs("left"))
