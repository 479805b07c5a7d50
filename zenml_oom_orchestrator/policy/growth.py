"""Growing a running attempt's memory in place: the target, and the record of each growth.

A growth uses the OOM escalation's arithmetic (multiplier, increment, ``max_memory``, the
largest node), from the memory the attempt has *now*, so growing in place and retrying after
an OOM kill never disagree about what comes next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..quantity import format_memory
from .memory import Memory, ceiling, escalate_after_oom
from .settings import OOMPolicy

__all__ = ["Growth", "GrowthOutcome", "growth_target", "may_grow", "missed_growth_hint"]

# in_force: the kubelet applied it (the container's status shows the new limit);
# infeasible / deferred: the node cannot hold it (ever / now); timed_out: not in force in time;
# refused: the API said no; overtaken: the attempt ended first; at_ceiling: nothing to grow to.
GrowthOutcome = Literal[
    "in_force", "infeasible", "deferred", "timed_out", "refused", "overtaken", "at_ceiling"
]


@dataclass(frozen=True)
class Growth:
    """One in-place growth of an attempt: when, from what, to what, and how it ended."""

    at: float  # epoch seconds the supervisor saw the step cross the threshold
    from_request: int
    from_limit: int
    to_request: int
    to_limit: int
    outcome: GrowthOutcome
    seconds: float | None = None  # from the crossing seen to the outcome
    message: str = ""

    @property
    def grew(self) -> bool:
        return self.outcome == "in_force"

    def describe(self) -> str:
        """One line for tables, Events and `zenml-oom explain`."""
        span = f"{format_memory(self.from_limit)} -> {format_memory(self.to_limit)}"
        took = f" in {self.seconds:.1f} s" if self.seconds is not None else ""
        why = f" ({self.message})" if self.message and not self.grew else ""
        return f"{span}: {self.outcome.replace('_', ' ')}{took}{why}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Growth:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def may_grow(policy: OOMPolicy, growths: tuple[Growth, ...]) -> bool:
    """Whether an attempt with these growths may grow again: growth is on, the per-attempt
    count is not used up, and every earlier growth came into force (after one that did not,
    the attempt runs at its limit and an OOM kill takes the retry path)."""
    return (
        policy.grow_in_place
        and len(growths) < policy.max_growths_per_attempt
        and all(g.grew for g in growths)
    )


def growth_target(
    current: Memory, policy: OOMPolicy, largest_node_memory: int | None
) -> Memory | None:
    """The memory to grow to from `current`; None when the ceiling (``max_memory``, the
    largest node) leaves nothing to grow."""
    top = ceiling(policy.max_memory_bytes, largest_node_memory)
    target = escalate_after_oom(current, policy, top)
    if target.limit <= current.limit:
        return None
    return Memory(max(target.request, current.request), target.limit, "in-place growth")


def missed_growth_hint(policy: OOMPolicy, limit: int, growths: tuple[Growth, ...]) -> str:
    """For an OOM kill of an attempt that carried the near-limit check and could still grow:
    it reached its limit before a check saw it pass the threshold. Said only when a shorter
    period could have caught it ("" otherwise: with checks every second it was a burst)."""
    if not may_grow(policy, growths) or policy.grow_check_seconds <= 1:
        return ""
    return (
        f"not grown in place first: the near-limit check, every {policy.grow_check_seconds} s, "
        f"did not see it pass {policy.grow_at_fraction:.0%} of {format_memory(limit)} in time "
        "(grow_check_seconds=1 checks every second)"
    )
