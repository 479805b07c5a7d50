"""One attempt of a step, as recorded (in pod annotations and the store) and fed to decide()."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from ..outcome import Outcome
from .growth import Growth
from .memory import Memory

__all__ = ["AttemptRecord", "Budget", "retries_used"]

# Which retry budget paid for an attempt. The first attempt is paid by none.
Budget = Literal["oom", "infrastructure", "app"]
BUDGETS: tuple[Budget, ...] = ("oom", "infrastructure", "app")


@dataclass(frozen=True)
class AttemptRecord:
    """The facts of one attempt: the memory it really had and how it ended."""

    number: int  # 1-based
    memory_request: int  # bytes
    memory_limit: int  # bytes
    outcome: Outcome | None = None  # None while it runs
    budget: Budget | None = None  # the budget that paid for this attempt; None for the first
    started_at: float | None = None  # epoch seconds
    finished_at: float | None = None
    node: str | None = None
    message: str = ""
    memory_source: str = ""  # where the first attempt's memory came from (policy or learned)
    # In-place growths while it ran; memory_request/limit are what was in force at the end.
    growths: tuple[Growth, ...] = ()

    def __post_init__(self) -> None:
        if self.number < 1:
            raise ValueError(f"AttemptRecord.number={self.number!r}: attempts count from 1")
        if self.budget is not None and self.budget not in BUDGETS:
            raise ValueError(f"AttemptRecord.budget={self.budget!r}: expected one of {BUDGETS}")

    @property
    def memory(self) -> Memory:
        return Memory(request=self.memory_request, limit=self.memory_limit)

    def finished(self, outcome: Outcome, finished_at: float | None = None) -> AttemptRecord:
        """This record with its outcome filled in."""
        return replace(self, outcome=outcome, finished_at=finished_at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["outcome"] = self.outcome.to_dict() if self.outcome else None
        data["growths"] = [g.to_dict() for g in self.growths]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttemptRecord:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so old readers survive."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("outcome") is not None:
            known["outcome"] = Outcome.from_dict(known["outcome"])
        known["growths"] = tuple(Growth.from_dict(g) for g in known.get("growths") or ())
        return cls(**known)


def retries_used(attempts: Iterable[AttemptRecord], budget: Budget) -> int:
    """How many retries this budget has paid for so far."""
    return sum(1 for a in attempts if a.budget == budget)
