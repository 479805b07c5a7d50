"""Per-step state the engine owns, and how a finished attempt is written to its pod.

The result annotation is what lets a restarted supervisor continue: it holds the attempt's
record and the decision taken on it. It is written before anything acts on the decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.policy import AttemptRecord, Decision, GiveUp, Retry
from zenml_oom_orchestrator.supervisor.spec import StepResult, StepSpec, StepStatus

# Event reasons, one per kind of decision, so `kubectl describe pod` tells the story.
REASON_OOM = "OOMRetry"
REASON_INFRA = "RetryInfrastructure"
REASON_APP = "RetryAppError"
REASON_GAVE_UP = "GaveUp"
REASON_SUCCEEDED = "Succeeded"
REASON_STOPPED = "Stopped"
_BUDGET_REASON = {"oom": REASON_OOM, "infrastructure": REASON_INFRA, "app": REASON_APP}


def event_reason(decision: Decision | None) -> str:
    if decision is None:
        return REASON_SUCCEEDED
    if isinstance(decision, GiveUp):
        return REASON_GAVE_UP
    return _BUDGET_REASON[decision.budget]


def success_caveat(record: AttemptRecord) -> str:
    """ " (why)" for a step that succeeded on an attempt whose pod then ended badly (its code
    had reported success, see finish_attempt); "" for a plain success."""
    outcome = record.outcome
    return f" ({record.message})" if outcome and outcome.kind is not OutcomeKind.SUCCEEDED else ""


def decision_to_dict(decision: Decision | None) -> dict[str, Any] | None:
    return None if decision is None else decision.to_dict()


def decision_from_dict(data: dict[str, Any] | None) -> Decision | None:
    if not data:
        return None
    fields = {k: v for k, v in data.items() if k != "decision"}
    return Retry(**fields) if data.get("decision") == "retry" else GiveUp(**fields)


@dataclass(frozen=True)
class AttemptResult:
    """What the result annotation holds: the finished attempt and what was decided."""

    record: AttemptRecord
    decision: Decision | None
    retry_at: float | None = None  # epoch seconds the next attempt may start
    stopped: bool = False  # ended by a stop, not by itself

    def to_json(self) -> str:
        return json.dumps(
            {
                "record": self.record.to_dict(),
                "decision": decision_to_dict(self.decision),
                "retry_at": self.retry_at,
                "stopped": self.stopped,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> AttemptResult:
        data = json.loads(text)
        return cls(
            record=AttemptRecord.from_dict(data["record"]),
            decision=decision_from_dict(data.get("decision")),
            retry_at=data.get("retry_at"),
            stopped=bool(data.get("stopped")),
        )


@dataclass
class StepState:
    """Everything the engine knows about one step. Only the engine's thread touches it."""

    spec: StepSpec
    status: StepStatus = StepStatus.WAITING
    attempts: list[AttemptRecord] = field(default_factory=list)  # finished, oldest first
    current: AttemptRecord | None = None  # the attempt in flight
    current_pod: str | None = None
    next_number: int = 1
    next_request: int = 0
    next_limit: int = 0
    next_source: str = ""  # where the start memory came from (policy or learned); attempt 1
    next_budget: str | None = None  # the budget paying for the next attempt
    not_before: float = 0.0  # epoch seconds; the policy's retry delay
    message: str = ""
    cached: bool = False
    skip_checked: bool = False
    waiting_reported: bool = False
    unpersisted: str | None = None  # result JSON of a vanished attempt, for the next pod

    @property
    def name(self) -> str:
        return self.spec.name

    def result(self) -> StepResult:
        return StepResult(self.name, self.status, list(self.attempts), self.message, self.cached)
