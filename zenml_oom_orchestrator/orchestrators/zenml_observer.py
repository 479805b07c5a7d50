"""The supervisor's observer inside the orchestrator pod: it tells ZenML's store what happened.

Called from the supervisor's single writer thread, so this is the one writer of step and run
outcomes for the run. Step pods still write their own step runs (create, COMPLETED, their own
FAILED); this observer finishes what a killed pod could not, and records the attempt history.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from zenml.enums import ExecutionStatus
from zenml.models import PipelineRunResponse, StepRunResponse
from zenml.orchestrators.step_run_utils import StepRunRequestFactory, publish_cached_step_run

from zenml_oom_orchestrator.orchestrators.attempt_table import format_attempt_table, growth_row
from zenml_oom_orchestrator.orchestrators.run_history import step_code_hash
from zenml_oom_orchestrator.orchestrators.store_sync import (
    ATTEMPT_KEY,
    HISTORY_KEY,
    START_KEY,
    VERDICT_KEY,
    StoreSync,
)
from zenml_oom_orchestrator.policy import AttemptRecord, Decision, Retry
from zenml_oom_orchestrator.quantity import format_memory
from zenml_oom_orchestrator.supervisor.observer import BaseObserver
from zenml_oom_orchestrator.supervisor.spec import (
    FailureMode,
    RunResult,
    StepResult,
    StepSpec,
    StepStatus,
)

logger = logging.getLogger(__name__)


def attempt_row(record: AttemptRecord, decision: Decision | None) -> dict[str, Any]:
    """One attempt as stored in run metadata (plain JSON, readable in the dashboard)."""
    outcome = record.outcome
    duration = None
    if record.started_at is not None and record.finished_at is not None:
        duration = round(record.finished_at - record.started_at, 1)
    row = _attempt_facts(record, decision, outcome, duration)
    if record.growths:  # grown in place while it ran (issue 12); the limit above is the last
        row["growths"] = [growth_row(g) for g in record.growths]
    return row


def _attempt_facts(
    record: AttemptRecord, decision: Decision | None, outcome: Any, duration: float | None
) -> dict[str, Any]:
    return {
        "attempt": record.number,
        "memory_request": format_memory(record.memory_request),
        "memory_limit": format_memory(record.memory_limit),
        "outcome": outcome.kind.value if outcome else "running",
        "exit_code": outcome.exit_code if outcome else None,
        "duration_s": duration,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "budget": record.budget,
        "node": record.node,
        "decision": None if decision is None else type(decision).__name__.lower(),
        "message": decision.message if decision is not None else record.message,
        # Where the memory came from, on the first attempt ("learned: succeeded at 2Gi in run X").
        "memory_source": record.memory_source or None,
    }


class ZenMLObserver(BaseObserver):
    """Keeps the store truthful while the supervisor runs the steps of one pipeline run."""

    def __init__(
        self,
        sync: StoreSync,
        factory: StepRunRequestFactory,
        pipeline_run: PipelineRunResponse,
        failure_mode: FailureMode,
        use_cache: bool = True,
    ) -> None:
        self.sync = sync
        self.factory = factory
        self.pipeline_run = pipeline_run
        self.failure_mode = failure_mode
        self.use_cache = use_cache
        self._count_before: dict[str, int] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.final: dict[str, str] = {}
        # Failed steps whose FAILED step run waits for the end of the run (see on_step_finished).
        self._deferred: dict[str, tuple[StepRunResponse | None, str]] = {}

    # ---- caching ---------------------------------------------------------------------------
    def should_skip(self, step: StepSpec) -> bool:
        """A cache hit is published as a CACHED step run, like the stock orchestrator pod does."""
        if not self.use_cache or not self.factory.has_caching_enabled(step.name):
            return False
        request = self.factory.create_request(step.name)
        try:
            self.factory.populate_request(request)
        except Exception as exc:  # the step pod will compute it again and report errors
            logger.warning("could not check the cache for step `%s`: %s", step.name, exc)
            return False
        if request.status is not ExecutionStatus.CACHED:
            return False
        self.factory.record_step_run(publish_cached_step_run(request, self.pipeline_run))
        logger.info("Using cached version of step `%s`.", step.name)
        return True

    # ---- attempts --------------------------------------------------------------------------
    def on_attempt_started(self, step: str, attempt: AttemptRecord) -> None:
        self._count_before[step] = self.sync.count(step)

    def on_attempt_finished(
        self, step: str, attempt: AttemptRecord, decision: Decision | None
    ) -> None:
        row = attempt_row(attempt, decision)
        self.histories.setdefault(step, []).append(row)
        step_run = self.sync.created_since(step, self._count_before.pop(step, 0))
        if step_run is None:
            return  # the pod died before it reached ZenML: no step run to finish
        self.sync.add_metadata(step_run.id, {ATTEMPT_KEY: row})
        if isinstance(decision, Retry):
            self.sync.mark_killed_for_retry(step_run)

    def on_attempt_restored(
        self, step: str, attempt: AttemptRecord, decision: Decision | None
    ) -> None:
        """An attempt an earlier orchestrator pod reported: only its row, for the history."""
        rows = self.histories.setdefault(step, [])
        if all(r["attempt"] != attempt.number for r in rows):
            rows.append(attempt_row(attempt, decision))
            rows.sort(key=lambda r: int(r["attempt"]))

    def reported_success(self, step: str) -> bool:
        """The step run of this run is COMPLETED: ZenML would refuse another (409)."""
        return self.sync.succeeded(step)

    # ---- steps -----------------------------------------------------------------------------
    def on_step_finished(self, step: str, result: StepResult) -> None:
        self.final[step] = result.status.value
        if result.status is StepStatus.FAILED:
            self._fail(step, result.message)
        elif result.status in (StepStatus.STOPPED, StepStatus.SKIPPED):
            # SKIPPED steps never started, unless a fail-fast halt caught them between attempts.
            self.sync.stop_step(step, result.message or result.status.value)
        history = self.histories.get(step)
        latest = self.sync.latest(step)
        if history and latest is not None:
            self.sync.add_metadata(
                latest.id,
                {
                    HISTORY_KEY: history,
                    VERDICT_KEY: self._verdict(result),
                    START_KEY: {"code_hash": step_code_hash(self.factory.snapshot, step)},
                },
            )

    def _fail(self, step: str, message: str) -> None:
        if self.sync.succeeded(step):
            # The pod reported success and died afterwards (e.g. OOM in teardown).
            logger.warning("step `%s` failed in the cluster but completed in ZenML", step)
            return
        # Filling the retry slots only creates step runs, which every run state allows before
        # it is FAILED. Turning the last one FAILED fails the run, and then a STOP_ON_FAILURE
        # run refuses the new step runs its in-flight steps still need (their retries, their
        # closings): there it waits for the end of the run. FAIL_FAST needs none (in-flight
        # steps are stopped, an update), and must fail first: a STOPPED sibling next to an
        # open step would turn the run STOPPING.
        step_run = self.sync.prepare_failure(step, message)
        if self.failure_mode is FailureMode.STOP_ON_FAILURE:
            self._deferred[step] = (step_run, message)
        else:
            self.sync.finish_failure(step_run, message)

    @staticmethod
    def _verdict(result: StepResult) -> str:
        if result.cached:
            return "cached"
        if result.status is StepStatus.SUCCEEDED and result.attempts:
            return f"succeeded on attempt {result.attempts[-1].number}"
        return result.status.value

    # ---- the run ---------------------------------------------------------------------------
    def on_run_finished(self, result: RunResult) -> None:
        for step_run, message in self._deferred.values():
            self.sync.finish_failure(step_run, message)
        failed = [n for n, s in result.steps.items() if s.status is StepStatus.FAILED]
        stopped = [n for n, s in result.steps.items() if s.status is StepStatus.STOPPED]
        messages: Mapping[str, str] = {n: s.message for n, s in result.steps.items()}
        run = self.sync.finish_run(
            failed=[n for n in failed if n not in self._deferred and not self.sync.succeeded(n)],
            stopped=stopped,
            messages=messages,
            was_stopped=result.status.value == "stopped",
        )
        logger.info(
            "Run `%s` ended %s.\n%s",
            run.name,
            run.status.value,
            format_attempt_table(self.histories, self.final),
        )
