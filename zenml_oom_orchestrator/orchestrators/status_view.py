"""Read-only views of a run: the latest attempt of each step, and the stored attempt history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zenml.enums import ExecutionStatus
from zenml.models import PipelineRunResponse

from zenml_oom_orchestrator.orchestrators.attempt_table import format_attempt_table
from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY, VERDICT_KEY
from zenml_oom_orchestrator.supervisor import naming


def _attempt_number(pod: Any) -> int:
    try:
        return int((pod.metadata.labels or {}).get(naming.LABEL_ATTEMPT, 0))
    except ValueError:
        return 0


def latest_attempt_statuses(
    pods: Iterable[Any], orchestrator_done: bool
) -> dict[str, ExecutionStatus]:
    """Each step's status from its highest-numbered attempt pod (``V1Pod`` objects).

    While the orchestrator pod lives, its supervisor is the only writer of step statuses, so
    nothing is reported. Once it is gone, whatever it left open is settled from the last
    attempt: succeeded is COMPLETED, anything else FAILED.
    """
    if not orchestrator_done:
        return {}
    latest: dict[str, Any] = {}
    for pod in pods:
        annotations = pod.metadata.annotations or {}
        step = annotations.get(naming.ANN_ZENML_STEP)
        if step is None or naming.LABEL_ATTEMPT not in (pod.metadata.labels or {}):
            continue  # the orchestrator pod, or a pod this flavor did not start
        if step not in latest or _attempt_number(pod) > _attempt_number(latest[step]):
            latest[step] = pod
    return {
        step: ExecutionStatus.COMPLETED
        if pod.status is not None and pod.status.phase == "Succeeded"
        else ExecutionStatus.FAILED
        for step, pod in latest.items()
    }


def _error(step_run: Any) -> str | None:
    info = step_run.exception_info
    return str(info.message) if info is not None and info.message else None


def attempt_table_for_run(run: PipelineRunResponse) -> str:
    """The attempt table of a finished run, read back from the step runs' metadata.

    A step that has no attempt (refused before its first pod, e.g. a request no node can
    hold) shows its step run's error as the message.
    """
    histories: dict[str, list[dict[str, Any]]] = {}
    final: dict[str, str] = {}
    notes: dict[str, str] = {}
    step_names = list(run.snapshot.step_configurations) if run.snapshot else list(run.steps)
    steps = run.steps
    for name in step_names:
        step_run = steps.get(name)
        if step_run is None:
            final[name] = "skipped"  # never started: the word the orchestrator pod prints too
            continue
        metadata = step_run.run_metadata
        history = metadata.get(HISTORY_KEY)
        histories[name] = list(history) if isinstance(history, list) else []
        verdict = metadata.get(VERDICT_KEY)
        final[name] = str(verdict or step_run.status.value)
        if not histories[name] and (error := _error(step_run)):
            notes[name] = error
    header = f"Attempts of run `{run.name}` ({run.status.value}):"
    return header + "\n" + format_attempt_table(histories, final, notes)


def failed_step_reasons(run: PipelineRunResponse) -> dict[str, str]:
    """Each FAILED step of ``run`` and why, in full: its step run's error, else the last
    attempt's message."""
    reasons = {}
    for name, step_run in run.steps.items():
        if step_run.status is not ExecutionStatus.FAILED:
            continue
        history = step_run.run_metadata.get(HISTORY_KEY)
        last = history[-1].get("message") if isinstance(history, list) and history else None
        reasons[name] = _error(step_run) or str(last or "no reason was stored")
    return reasons
