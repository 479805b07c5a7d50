"""Learned start memory: a step starts at the memory its last runs needed. Pure functions.

The history of a pipeline comes in as records (:class:`PastRun`, newest first, one
:class:`PastStep` per step that ran); :func:`learn` finds what the step needed last time,
:func:`learned_start` combines that with the policy's own start. Reading the store is the
caller's job (``orchestrators/run_history.py``).

A step of a past run is the same step when it has the same name (its invocation id) in the
same pipeline and the same code hash (ZenML's hash of the step function's source): a changed
step may need different memory, so it starts fresh. Cached step runs ran nothing and say
nothing about memory.

What a past run says, newest first within the window:

- the step succeeded with memory M: it needs M (the newest success ends the search);
- it failed after an OOM kill at M (e.g. at its cap then): it needs more than M, so it starts
  one escalation step above M;
- anything else (an app error, no attempt recorded): nothing; look further back.

The start is the largest of the policy's start and what was learned, clamped to ``max_memory``
and the largest node: a step that last needed more than its cap starts at the cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..quantity import QuantityError, format_memory, memory_bytes
from .memory import Memory, ceiling, escalate_after_oom
from .settings import OOMPolicy

__all__ = ["LearnedMemory", "PastRun", "PastStep", "learn", "learned_start"]

_MEMORY_KILLS = ("oom_killed", "evicted")
LEARNED = "learned"  # every learned source starts with this word


@dataclass(frozen=True)
class PastStep:
    """What one finished run of the pipeline recorded about one step."""

    name: str
    code_hash: str | None
    cached: bool = False
    succeeded_with: Memory | None = None  # the attempt that succeeded
    oom_killed_at: int | None = None  # the largest limit an OOM kill ended, if it never succeeded

    @classmethod
    def from_rows(
        cls,
        name: str,
        code_hash: str | None,
        rows: Sequence[Mapping[str, Any]],
        cached: bool = False,
    ) -> PastStep:
        """From the ``oom_attempts`` rows the orchestrator stored (oldest first)."""
        succeeded, killed = None, None
        for row in rows:
            try:
                limit = memory_bytes(str(row["memory_limit"]))
                request = memory_bytes(str(row.get("memory_request") or row["memory_limit"]))
            except (KeyError, QuantityError):
                continue  # a row this version cannot read says nothing
            outcome = row.get("outcome")
            if outcome == "succeeded":
                succeeded = Memory(min(request, limit), limit)
            elif outcome in _MEMORY_KILLS:
                killed = max(killed or 0, limit)
        return cls(name, code_hash, cached, succeeded, None if succeeded else killed)


@dataclass(frozen=True)
class PastRun:
    """One finished run of the pipeline: its name and the steps it recorded."""

    name: str
    steps: Mapping[str, PastStep] = field(default_factory=dict)


class LearnedMemory(BaseModel):
    """What the history says a step needs, and which run said so."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: int
    limit: int
    run: str
    how: Literal["succeeded", "oom_killed"]
    seen_at: int  # the limit it succeeded with, or was OOM-killed at

    def describe(self) -> str:
        """``learned: succeeded at 2Gi in run X``: where the start memory came from."""
        if self.how == "succeeded":
            return f"{LEARNED}: succeeded at {format_memory(self.seen_at)} in run {self.run}"
        return (
            f"{LEARNED}: OOM-killed at {format_memory(self.seen_at)} in run {self.run}, so one "
            "escalation step above it"
        )


def learn(
    step_name: str,
    code_hash: str | None,
    history: Sequence[PastRun],
    policy: OOMPolicy,
) -> LearnedMemory | None:
    """What the newest runs within ``policy.learning_window`` say ``step_name`` needs.

    ``history`` is newest first. ``None`` when learning is off, the step has no code hash to
    match on, or no run in the window says anything about it.
    """
    if not policy.learn_start_memory or code_hash is None:
        return None
    found: list[LearnedMemory] = []
    how: Literal["succeeded", "oom_killed"]
    for run in history[: policy.learning_window]:
        past = run.steps.get(step_name)
        if past is None or past.cached or past.code_hash != code_hash:
            continue
        if past.succeeded_with is not None:
            used, how, seen = past.succeeded_with, "succeeded", past.succeeded_with.limit
        elif past.oom_killed_at is not None:
            seen, how = past.oom_killed_at, "oom_killed"
            used = escalate_after_oom(Memory(seen, seen), policy, None)  # it needed more
        else:
            continue
        found.append(
            LearnedMemory(
                request=used.request, limit=used.limit, run=run.name, how=how, seen_at=seen
            )
        )
        if how == "succeeded":
            break  # the newest success is what it needs; older runs are staler
    # A newer OOM kill above an older success means the step grew since: take the largest
    # (on a tie, the success: it is the stronger evidence).
    return max(found, key=lambda m: (m.limit, m.how == "succeeded"), default=None)


def learned_start(
    policy_start: Memory,
    learned: LearnedMemory | None,
    policy: OOMPolicy,
    largest_node_memory: int | None = None,
) -> Memory:
    """The first attempt's memory: the larger of the policy's start and ``learned``, clamped
    to ``max_memory`` and the largest node. Its ``source`` says which, and why."""
    if learned is None or learned.limit <= policy_start.limit:
        return policy_start
    cap = policy.max_memory_bytes
    top = ceiling(cap, largest_node_memory)
    source = learned.describe()
    limit = learned.limit
    if top is not None and limit > top:
        limit = max(top, policy_start.limit)
        where = "max_memory" if cap is not None and top == cap else "the largest node's memory"
        source += f", capped at {where} {format_memory(limit)}"
    request = min(limit, max(policy_start.request, learned.request))
    return Memory(request=request, limit=limit, source=source)


def is_learned(source: str) -> bool:
    """Whether a start memory's source is a learned one."""
    return source.startswith(LEARNED)
