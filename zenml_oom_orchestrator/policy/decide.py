"""The one decision: after a failed attempt, retry (with what memory, when, on which budget)
or give up (with a message that names the step, the attempt, the memory and what to change).

Per outcome kind:

- ``oom_killed`` → OOM budget (``max_oom_retries``); memory grows from the last attempt's
  limit. Already at the ceiling → give up.
- ``evicted`` with memory pressure → OOM budget; the *request* grows (at least to what the
  container was using). Other evictions (disk) → infrastructure budget, same memory.
- ``disrupted``, ``node_lost`` → infrastructure budget (``max_infrastructure_retries``), same
  memory.
- ``killed`` (SIGKILL/SIGTERM without a reason) → per ``sigkill_without_reason``: the
  infrastructure (default), OOM or app budget.
- ``app_error`` → app budget (the step's own ZenML retry config), same memory, never grown.
- ``deadline_exceeded`` → app budget too: the user set the deadline, more memory would not
  make the step faster, and the user's retries are the user's call.
- ``image_error``, ``config_error`` → give up at once; retrying cannot heal them.
- ``unschedulable`` → give up, asking for less memory or a bigger node.

Each budget counts only the retries it paid for, and the delay is the step's own backoff
(:meth:`AppRetryConfig.wait`) at that budget's retry number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..outcome import Outcome, OutcomeKind
from ..quantity import format_memory
from .attempts import AttemptRecord, Budget, retries_used
from .memory import Memory, ceiling, escalate_after_eviction, escalate_after_oom
from .settings import OOMPolicy
from .wait import wait_base, wait_exponential, wait_fixed, wait_none

__all__ = ["AppRetryConfig", "Decision", "GiveUp", "Retry", "decide"]


class AppRetryConfig(BaseModel):
    """The step's own retries for its own errors, as ZenML's ``StepRetryConfig`` has them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_retries: int = Field(default=0, ge=0, description="Retries after an app error.")
    delay: float = Field(default=0, ge=0, description="Seconds before the first retry.")
    backoff: float = Field(
        default=1,
        ge=0,
        description="Each further retry waits this many times longer. 0 and 1 both mean a "
        "constant delay (ZenML's default 0 would otherwise drop the delay to nothing).",
    )

    @classmethod
    def from_zenml(cls, obj: Any) -> AppRetryConfig:
        """From a ZenML ``StepRetryConfig`` (or a dict, or ``None``), without importing zenml."""
        if obj is None:
            return cls()
        read = obj.get if isinstance(obj, Mapping) else lambda k: getattr(obj, k, None)
        fields = {k: read(k) for k in ("max_retries", "delay", "backoff")}
        return cls(**{k: v for k, v in fields.items() if v is not None})

    def wait(self) -> wait_base:
        """``delay x backoff^(n-1)`` before retry n, as ZenML's local retry loop waits."""
        if self.delay == 0:
            return wait_none()
        if self.backoff <= 1:
            return wait_fixed(self.delay)
        return wait_exponential(multiplier=self.delay, exp_base=self.backoff)


@dataclass(frozen=True)
class Retry:
    """Run the step again with this memory after this delay, paid by this budget."""

    memory_request: int
    memory_limit: int
    delay_seconds: float
    budget: Budget
    reason: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"decision": "retry", **asdict(self)}


@dataclass(frozen=True)
class GiveUp:
    """Stop: the step has failed, and the message says why and what to change."""

    reason: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"decision": "give_up", **asdict(self)}


Decision = Retry | GiveUp

_NOT_FAILURES = {OutcomeKind.SUCCEEDED, OutcomeKind.RUNNING, OutcomeKind.PENDING}
_ROUTE: dict[OutcomeKind, Literal["oom", "infrastructure", "app", "stop"]] = {
    OutcomeKind.OOM_KILLED: "oom",
    OutcomeKind.DISRUPTED: "infrastructure",
    OutcomeKind.NODE_LOST: "infrastructure",
    OutcomeKind.APP_ERROR: "app",
    OutcomeKind.DEADLINE_EXCEEDED: "app",
    OutcomeKind.IMAGE_ERROR: "stop",
    OutcomeKind.CONFIG_ERROR: "stop",
    OutcomeKind.UNSCHEDULABLE: "stop",
}
_SIGKILL_ROUTE: dict[str, Literal["oom", "infrastructure", "app"]] = {
    "infrastructure": "infrastructure",
    "oom": "oom",
    "app_error": "app",
}


@dataclass(frozen=True)
class _Case:
    """What every message needs: the step, the attempt and what happened to it."""

    step: str
    attempts: Sequence[AttemptRecord]
    outcome: Outcome
    policy: OOMPolicy
    app: AppRetryConfig

    @property
    def last(self) -> AttemptRecord:
        return self.attempts[-1]

    @property
    def head(self) -> str:
        what = _WHAT.get(self.outcome.kind, self.outcome.kind.value)
        head = f"step '{self.step}' {what} on attempt {self.last.number} with {self.last.memory}"
        return head + self.cause()

    def cause(self) -> str:
        """`` (init container x, exit 1, Error: message)``: the evidence, briefly."""
        out = self.outcome
        parts = [f"init container {out.container}"] if out.init_container else []
        parts += [f"exit {out.exit_code}"] if out.exit_code is not None else []
        parts += [out.reason] if out.reason else []
        text = ", ".join(parts)
        message = _quotable(out)
        if message:
            if len(message) > 240:  # shortened at a word, marked: never cut mid-word
                message = message[:237].rsplit(" ", 1)[0] + " ..."
            text = f"{text}: {message}" if text else message
        return f" ({text})" if text else ""

    def tried(self) -> str:
        seen = dict.fromkeys(format_memory(a.memory_limit) for a in self.attempts)
        return ", ".join(seen)

    def retry(self, memory: Memory, budget: Budget, note: str) -> Retry:
        number = retries_used(self.attempts, budget) + 1
        return Retry(
            memory_request=memory.request,
            memory_limit=memory.limit,
            delay_seconds=self.app.wait()(number),
            budget=budget,
            reason=self.outcome.kind.value,
            message=f"{self.head}; {note}",
        )


def _quotable(outcome: Outcome) -> str:
    """What of the outcome's message a cause quotes: its last line. A failed step's message is
    the tail of its log (its container has terminationMessagePolicy FallbackToLogsOnError), whose
    last line says what failed, e.g. a traceback's exception. Nothing for an OOM kill: the
    kernel's kill is the cause, not whatever the step printed last."""
    if outcome.kind is OutcomeKind.OOM_KILLED:
        return ""
    lines = [line.strip() for line in outcome.message.splitlines() if line.strip()]
    return lines[-1] if lines else ""


_WHAT = {
    OutcomeKind.OOM_KILLED: "was OOM-killed",
    OutcomeKind.EVICTED: "was evicted",
    OutcomeKind.DISRUPTED: "was disrupted",
    OutcomeKind.NODE_LOST: "lost its node",
    OutcomeKind.APP_ERROR: "failed",
    OutcomeKind.DEADLINE_EXCEEDED: "ran past its activeDeadlineSeconds",
    OutcomeKind.KILLED: "was killed without a reason",
    OutcomeKind.IMAGE_ERROR: "could not pull its image",
    OutcomeKind.CONFIG_ERROR: "could not start its container",
    OutcomeKind.UNSCHEDULABLE: "could not be scheduled",
}


def decide(
    step_name: str,
    attempts: Sequence[AttemptRecord],
    outcome: Outcome,
    policy: OOMPolicy,
    app_retry: AppRetryConfig | None = None,
    largest_node_memory: int | None = None,
) -> Decision:
    """Decide what follows a failed attempt.

    Args:
        step_name: for messages.
        attempts: every attempt so far, oldest first; the last one is the attempt that just
            ended with ``outcome``. Its memory is where escalation starts.
        outcome: how it ended (from :func:`classify`); must be a failure.
        policy: the step's OOM policy.
        app_retry: the step's own retry config (``AppRetryConfig.from_zenml(step.config.retry)``);
            ``None`` means no app retries and no delay.
        largest_node_memory: the largest node's allocatable memory in bytes, if known.

    Raises:
        ValueError: ``attempts`` is empty, or ``outcome`` is not a failure.
    """
    if not attempts:
        raise ValueError(
            f"decide(step {step_name!r}): attempts is empty; pass the attempt that ended"
        )
    if outcome.kind in _NOT_FAILURES:
        raise ValueError(
            f"decide(step {step_name!r}): attempt {attempts[-1].number} is {outcome.kind.value}, "
            "not a failure; only failed attempts need a decision"
        )
    case = _Case(step_name, attempts, outcome, policy, app_retry or AppRetryConfig())
    if outcome.kind is OutcomeKind.EVICTED:
        route = "oom" if outcome.memory_pressure else "infrastructure"
    elif outcome.kind is OutcomeKind.KILLED:
        route = _SIGKILL_ROUTE[policy.sigkill_without_reason]
    else:
        route = _ROUTE[outcome.kind]
    if route == "oom":
        return _oom(case, largest_node_memory)
    if route == "infrastructure":
        return _infrastructure(case)
    if route == "app":
        return _app(case)
    return _stop(case, largest_node_memory)


def _oom(case: _Case, largest_node_memory: int | None) -> Decision:
    policy, last = case.policy, case.last.memory
    used, allowed = retries_used(case.attempts, "oom"), policy.max_oom_retries
    if used >= allowed:
        spent = "OOM retries are off" if allowed == 0 else f"all {allowed} OOM retries are used"
        return GiveUp(
            "oom_retries_exhausted",
            f"{case.head}; {spent} (memory tried: {case.tried()}). Raise max_oom_retries or "
            "memory_multiplier, or reduce the step's memory use.",
        )
    cap = policy.max_memory_bytes
    top = ceiling(cap, largest_node_memory)
    eviction = case.outcome.kind is OutcomeKind.EVICTED
    base = last.request if eviction else last.limit
    if top is not None and base >= top:
        at_cap = cap is not None and top == cap
        if at_cap:
            change = f"raise max_memory above {format_memory(top)}"
            where = f"max_memory ({format_memory(top)})"
        else:
            change = f"add a node with more than {format_memory(top)} allocatable memory"
            where = f"the largest node's allocatable memory ({format_memory(top)})"
        return GiveUp(
            "memory_cap_reached" if at_cap else "node_memory_reached",
            f"{case.head}, which is already {where} (memory tried: {case.tried()}); {change} "
            "or reduce the step's memory use.",
        )
    if eviction:
        nxt = escalate_after_eviction(last, policy, top, case.outcome.memory_used)
    else:
        nxt = escalate_after_oom(last, policy, top)
    return case.retry(nxt, "oom", f"retrying with {nxt} (OOM retry {used + 1} of {allowed}).")


def _infrastructure(case: _Case) -> Decision:
    used = retries_used(case.attempts, "infrastructure")
    allowed = case.policy.max_infrastructure_retries
    if used >= allowed:
        spent = "retries are off" if allowed == 0 else f"all {allowed} retries are used"
        return GiveUp(
            "infrastructure_retries_exhausted",
            f"{case.head}; this is not the step's fault, but {spent}. Raise "
            "max_infrastructure_retries, or check the cluster's nodes (preemption, drains, "
            "shutdowns).",
        )
    note = f"retrying at the same memory (infrastructure retry {used + 1} of {allowed})."
    return case.retry(case.last.memory, "infrastructure", note)


def _app(case: _Case) -> Decision:
    used, allowed = retries_used(case.attempts, "app"), case.app.max_retries
    if used < allowed:
        note = f"retrying at the same memory (retry {used + 1} of {allowed})."
        return case.retry(case.last.memory, "app", note)
    spent = "the step has no retries" if allowed == 0 else f"all {allowed} retries are used"
    if case.outcome.kind is OutcomeKind.DEADLINE_EXCEEDED:
        reason = "deadline_retries_exhausted"
        change = "raise the pod's active_deadline_seconds or the step's retry max_retries"
    else:
        reason = "app_retries_exhausted"
        change = "fix the step, or raise its retry max_retries (@step(retry=...))"
    return GiveUp(
        reason, f"{case.head}; more memory would not help and {spent}. To change this, {change}."
    )


def _stop(case: _Case, largest_node_memory: int | None) -> GiveUp:
    kind = case.outcome.kind
    if kind is OutcomeKind.IMAGE_ERROR:
        change = (
            "fix the image name or the registry access (imagePullSecrets); retrying cannot help"
        )
    elif kind is OutcomeKind.CONFIG_ERROR:
        change = "fix the pod configuration (a missing Secret or ConfigMap, the command); retrying cannot help"
    else:
        node = (
            f" (largest node: {format_memory(largest_node_memory)})" if largest_node_memory else ""
        )
        change = (
            f"no node can fit {format_memory(case.last.memory_request)}{node}: lower max_memory "
            "or the step's memory, or add a node with more allocatable memory"
        )
    return GiveUp(kind.value, f"{case.head}; {change}.")
