"""The single writer that keeps ZenML's store truthful about attempts the supervisor ran.

ZenML 0.98's store rules this module works with (``zen_stores/sql_zen_store.py``):

- A step may have ``M + 1`` step runs, ``M`` being the step's stored ``retry.max_retries`` (the
  orchestrator raises it at submission, see ``retry_budget``). Creating a step run marks every
  earlier one RETRIED. The step runs in slots ``1..M`` are *retriable*: a FAILED report on them
  is turned into RETRYING by the server, and only a later step run can end them. Slot ``M + 1``
  is not retriable: FAILED sticks there.
- A pod killed by SIGKILL (OOM) never reports: its step run stays RUNNING until someone ends it.
- Once the run is FAILED, FAIL_FAST and STOP_ON_FAILURE runs refuse new step runs.

So a step that finally failed is closed in two phases: :meth:`StoreSync.prepare_failure` fills the
unused slots up to a non-retriable RUNNING step run (only creations, the run stays RUNNING, so
other steps can still close theirs), then :meth:`StoreSync.finish_failure` turns that step run
FAILED (an update, allowed in every state). Stopped steps only need an update to STOPPED.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from zenml.client import Client
from zenml.enums import ExecutionStatus, MetadataResourceTypes
from zenml.models import (
    ExceptionInfo,
    PipelineRunResponse,
    PipelineRunUpdate,
    RunMetadataResource,
    StepRunRequest,
    StepRunResponse,
    StepRunUpdate,
)
from zenml.utils.time_utils import utc_now

logger = logging.getLogger(__name__)

# Statuses a step run can still leave; anything else is final.
OPEN_STATUSES = frozenset(
    {
        ExecutionStatus.INITIALIZING,
        ExecutionStatus.PROVISIONING,
        ExecutionStatus.RUNNING,
        ExecutionStatus.RETRYING,
        ExecutionStatus.STOPPING,
        ExecutionStatus.QUEUED,
        ExecutionStatus.CANCELLING,
    }
)
_STOPPING = frozenset({ExecutionStatus.STOPPING, ExecutionStatus.STOPPED})
# Run metadata keys (one namespace so they are easy to find in the dashboard).
ATTEMPT_KEY = "oom_attempt"
HISTORY_KEY = "oom_attempts"
VERDICT_KEY = "oom_verdict"
CLOSING_KEY = "oom_closing_entry"
# What a later run matches this step on when it learns its start memory (run_history.py).
START_KEY = "oom_step"


def _exception_info(message: str) -> ExceptionInfo:
    return ExceptionInfo(traceback=message, message=message)


class StoreSync:
    """Reads and writes the step runs of one pipeline run on behalf of the supervisor."""

    def __init__(self, run_id: UUID, client: Client | None = None) -> None:
        self.run_id = run_id
        self.client = client or Client()

    @property
    def _store(self) -> Any:
        return self.client.zen_store

    # ---- reading ---------------------------------------------------------------------------
    def run(self) -> PipelineRunResponse:
        return self.client.get_pipeline_run(self.run_id, hydrate=False)

    def step_runs(self, step_name: str) -> list[StepRunResponse]:
        """Every step run of ``step_name`` in this run, oldest first (one per slot used)."""
        page = self.client.list_run_steps(
            pipeline_run_id=self.run_id,
            name=step_name,
            sort_by="asc:version",
            size=1000,
            hydrate=False,
        )
        return list(page.items)

    def latest(self, step_name: str) -> StepRunResponse | None:
        runs = self.step_runs(step_name)
        return runs[-1] if runs else None

    def count(self, step_name: str) -> int:
        return len(self.step_runs(step_name))

    def created_since(self, step_name: str, count_before: int) -> StepRunResponse | None:
        """The step run an attempt created, if the store has more than ``count_before`` now.

        Only one attempt of a step runs at a time, so a newer step run belongs to it.
        """
        runs = self.step_runs(step_name)
        return runs[-1] if len(runs) > count_before else None

    def succeeded(self, step_name: str) -> bool:
        latest = self.latest(step_name)
        return bool(latest and latest.status.is_successful)

    # ---- attempts --------------------------------------------------------------------------
    def mark_killed_for_retry(self, step_run: StepRunResponse) -> StepRunResponse:
        """A pod was killed before it could report, and another attempt follows.

        The server turns FAILED into RETRYING on a retriable slot; the next attempt's step run
        then makes it RETRIED. A step run that already reported is left as it is.
        """
        if step_run.status not in OPEN_STATUSES or step_run.status is ExecutionStatus.RETRYING:
            return step_run
        return self._store.update_run_step(
            step_run.id,
            StepRunUpdate(status=ExecutionStatus.FAILED, end_time=utc_now()),
        )

    def stop_step(self, step_name: str, message: str) -> StepRunResponse | None:
        """End the step's open step run as STOPPED (a plain update: the server never retries it)."""
        latest = self.latest(step_name)
        if latest is None or latest.status not in OPEN_STATUSES:
            return latest
        return self._store.update_run_step(
            latest.id,
            StepRunUpdate(
                status=ExecutionStatus.STOPPED,
                end_time=utc_now(),
                exception_info=_exception_info(message),
            ),
        )

    def prepare_failure(self, step_name: str, message: str) -> StepRunResponse | None:
        """Phase 1 of closing a failed step: make its latest step run non-retriable and open.

        Returns the step run :meth:`finish_failure` must end, or ``None`` when the step already
        ended FAILED on its own. Creates one step run per unused slot of the step's budget; each
        is marked as a closing entry, and the server marks every earlier one RETRIED.
        """
        latest = self.latest(step_name)
        if latest is not None and latest.status is ExecutionStatus.FAILED:
            return None
        if latest is not None and latest.status in OPEN_STATUSES:
            # A stopping run refuses creations but also never turns FAILED into RETRYING.
            if not latest.is_retriable or self.run().status in _STOPPING:
                return latest
        elif self.run().status in _STOPPING:
            return None
        if latest is not None and latest.status.is_finished:
            raise RuntimeError(
                f"step `{step_name}` already ended {latest.status.value}; it cannot be failed"
            )
        step_run = latest
        while step_run is None or step_run.is_retriable:
            step_run = self._store.create_run_step(
                StepRunRequest(
                    name=step_name,
                    pipeline_run_id=self.run_id,
                    status=ExecutionStatus.RUNNING,
                    start_time=utc_now(),
                    project=self.client.active_project.id,
                )
            )
            self.add_metadata(
                step_run.id,
                {
                    CLOSING_KEY: "Not an attempt: fills a retry slot that ZenML reserved for "
                    "this step, so that the step can end FAILED. " + message
                },
            )
        return step_run

    def finish_failure(self, step_run: StepRunResponse | None, message: str) -> None:
        """Phase 2: end the step run :meth:`prepare_failure` returned as FAILED."""
        if step_run is None:
            return
        self._store.update_run_step(
            step_run.id,
            StepRunUpdate(
                status=ExecutionStatus.FAILED,
                end_time=utc_now(),
                exception_info=_exception_info(message),
            ),
        )

    # ---- metadata --------------------------------------------------------------------------
    def add_metadata(self, step_run_id: UUID, metadata: Mapping[str, Any]) -> None:
        try:
            self.client.create_run_metadata(
                metadata=dict(metadata),
                resources=[
                    RunMetadataResource(id=step_run_id, type=MetadataResourceTypes.STEP_RUN)
                ],
            )
        except Exception as exc:  # metadata must never decide a run's outcome
            logger.warning("could not store run metadata on step run %s: %s", step_run_id, exc)

    # ---- the end of the run ----------------------------------------------------------------
    def open_step_runs(self) -> list[StepRunResponse]:
        """Step runs of this run that are not in a final status (must be none at the end)."""
        page = self.client.list_run_steps(pipeline_run_id=self.run_id, size=1000, hydrate=False)
        return [s for s in page.items if s.status in OPEN_STATUSES]

    def finish_run(
        self,
        failed: Sequence[str],
        stopped: Sequence[str],
        messages: Mapping[str, str],
        was_stopped: bool,
    ) -> PipelineRunResponse:
        """Close every step the supervisor ended, then make the run's status agree.

        ``failed`` and ``stopped`` are step names. All FAILED closings are prepared before any is
        finished, because the first FAILED step run turns the run FAILED and, in FAIL_FAST and
        STOP_ON_FAILURE mode, the server then refuses the creations the others need.
        """
        for name in stopped:
            self.stop_step(name, messages.get(name, "stopped"))
        prepared = [(name, self.prepare_failure(name, messages[name])) for name in failed]
        for name, step_run in prepared:
            self.finish_failure(step_run, messages[name])
        # Anything still open was not the supervisor's to decide (e.g. a pod outliving its
        # attempt record): it can only have been stopped.
        for step_run in self.open_step_runs():
            self.stop_step(step_run.name, "ended by the orchestrator at the end of the run")
        run = self.client.get_pipeline_run(self.run_id)
        if run.status.is_finished:
            return run
        # The server computes a static run's status from its step runs; a request only decides
        # between them where it says FAILED (wins) or STOPPING (becomes STOPPED when all ended).
        if failed:
            requested = ExecutionStatus.FAILED
        elif was_stopped or stopped:
            requested = ExecutionStatus.STOPPING
        else:
            logger.warning("run %s is still %s after every step ended", self.run_id, run.status)
            return run
        return self._store.update_run(
            run_id=self.run_id, run_update=PipelineRunUpdate(status=requested)
        )
