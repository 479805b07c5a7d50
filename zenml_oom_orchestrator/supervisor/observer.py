"""How the outside world (the ZenML flavor, a CLI, tests) hears what the supervisor does.

Every hook is called from the supervisor's single writer thread, in the order things happen,
so an observer needs no locking and sees a consistent story. A hook that raises is logged and
ignored: reporting must not stop the run (the cluster annotations stay the source of truth).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from zenml_oom_orchestrator.policy import AttemptRecord, Decision, Growth
    from zenml_oom_orchestrator.supervisor.spec import RunResult, StepResult, StepSpec


@runtime_checkable
class Observer(Protocol):
    def should_skip(self, step: StepSpec) -> bool:
        """True if the step is already done (e.g. a cache hit): it succeeds with no pod.
        Asked once, when its upstream steps have succeeded."""
        ...

    def on_attempt_started(self, step: str, attempt: AttemptRecord) -> None:
        """An attempt's pod was created (or adopted after a restart); `attempt` has no end."""
        ...

    def on_attempt_waiting(self, step: str, attempt: AttemptRecord, message: str) -> None:
        """The attempt's pod is Pending (e.g. waiting for memory other pods hold)."""
        ...

    def on_attempt_finished(
        self, step: str, attempt: AttemptRecord, decision: Decision | None
    ) -> None:
        """An attempt ended; `decision` is the policy's Retry/GiveUp (None on success)."""
        ...

    def on_step_finished(self, step: str, result: StepResult) -> None:
        """The step reached a terminal status (succeeded/failed/skipped/stopped)."""
        ...

    def on_run_finished(self, result: RunResult) -> None:
        """Every step is terminal; called once, last."""
        ...


class BaseObserver:
    """Does nothing; subclass and override the hooks you need."""

    def should_skip(self, step: StepSpec) -> bool:
        return step.cached

    def on_attempt_started(self, step: str, attempt: AttemptRecord) -> None:
        pass

    def on_attempt_waiting(self, step: str, attempt: AttemptRecord, message: str) -> None:
        pass

    def on_attempt_finished(
        self, step: str, attempt: AttemptRecord, decision: Decision | None
    ) -> None:
        pass

    def on_attempt_restored(
        self, step: str, attempt: AttemptRecord, decision: Decision | None
    ) -> None:
        """After a restart: an attempt that ended (and was reported) before it. Optional."""

    def on_attempt_grown(self, step: str, attempt: AttemptRecord, growth: Growth) -> None:
        """A running attempt's memory was grown in place, or a growth did not come into
        force (`growth.outcome`); `attempt` holds every growth so far. Optional."""

    def reported_success(self, step: str) -> bool:
        """True if the step's own code has reported success where this observer sees it
        (ZenML's store). Asked when an attempt ends badly; then it is not run again.
        Optional."""
        return False

    def on_step_finished(self, step: str, result: StepResult) -> None:
        pass

    def on_run_finished(self, result: RunResult) -> None:
        pass


class MultiObserver(BaseObserver):
    """Tells several observers, in order; a step is skipped if any of them says so."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def should_skip(self, step: StepSpec) -> bool:
        return any(o.should_skip(step) for o in self.observers)

    def on_attempt_started(self, step: str, attempt: AttemptRecord) -> None:
        for o in self.observers:
            o.on_attempt_started(step, attempt)

    def on_attempt_waiting(self, step: str, attempt: AttemptRecord, message: str) -> None:
        for o in self.observers:
            o.on_attempt_waiting(step, attempt, message)

    def on_attempt_finished(
        self, step: str, attempt: AttemptRecord, decision: Decision | None
    ) -> None:
        for o in self.observers:
            o.on_attempt_finished(step, attempt, decision)

    def on_attempt_restored(
        self, step: str, attempt: AttemptRecord, decision: Decision | None
    ) -> None:
        for o in self.observers:
            if hasattr(o, "on_attempt_restored"):
                o.on_attempt_restored(step, attempt, decision)

    def on_attempt_grown(self, step: str, attempt: AttemptRecord, growth: Growth) -> None:
        for o in self.observers:
            if hasattr(o, "on_attempt_grown"):
                o.on_attempt_grown(step, attempt, growth)

    def reported_success(self, step: str) -> bool:
        return any(
            o.reported_success(step) for o in self.observers if hasattr(o, "reported_success")
        )

    def on_step_finished(self, step: str, result: StepResult) -> None:
        for o in self.observers:
            o.on_step_finished(step, result)

    def on_run_finished(self, result: RunResult) -> None:
        for o in self.observers:
            o.on_run_finished(result)
