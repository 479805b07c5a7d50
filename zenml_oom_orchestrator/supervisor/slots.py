"""Who may start an attempt now, under `max_parallelism`.

A step with an attempt in flight holds a slot. A ready step that finds none waits in one of two
lines: *retries* (steps that already ran an attempt) and *fresh* steps (never started). A freed
slot goes to the first retry, and only when no retry waits to the first fresh step, so started
steps finish before new ones begin (stock ZenML's startup queue serves them in arrival order).

A freed slot is handed to exactly one waiter (enqueued and reserved for it until it is
reconciled), not to every waiter at once: with thousands of steps waiting, waking them all on
each finished attempt made every event cost O(waiters) reconciles.
"""

from __future__ import annotations

from zenml_oom_orchestrator.supervisor.workqueue import WorkQueue
from zenml_oom_orchestrator.supervisor.writes import URGENT


class Slots:
    def __init__(self, limit: int | None, queue: WorkQueue) -> None:
        self.limit = limit
        self.queue = queue
        self.flying: set[str] = set()  # steps with an attempt in flight
        self.granted: set[str] = set()  # waiters handed a freed slot, not reconciled yet
        self.retries: dict[str, None] = {}  # waiting, already ran an attempt (first claim)
        self.fresh: dict[str, None] = {}  # waiting, never started

    def __len__(self) -> int:
        return len(self.flying)

    def _free(self) -> bool:
        return self.limit is None or len(self.flying) + len(self.granted) < self.limit

    def take(self, name: str, retry: bool) -> bool:
        """True: `name` may start its attempt now (call `started`). False: it waits in line
        (a retry ahead of every fresh step) until `hand_out` enqueues it."""
        self.granted.discard(name)
        if self._free():
            self.retries.pop(name, None)
            self.fresh.pop(name, None)
            return True
        (self.retries if retry else self.fresh)[name] = None  # an existing key keeps its place
        return False

    def started(self, name: str) -> None:
        self.flying.add(name)

    def landed(self, name: str) -> None:
        """`name`'s attempt is over. The caller decides what the step does next (a zero-delay
        retry takes the slot back at once), then calls `hand_out`."""
        self.flying.discard(name)

    def drop(self, name: str) -> None:
        """`name` reached a terminal status: it waits for nothing and holds nothing."""
        self.flying.discard(name)
        self.granted.discard(name)
        self.retries.pop(name, None)
        self.fresh.pop(name, None)
        self.hand_out()

    def hand_out(self) -> None:
        """Give every free slot to one waiter each: retries first, then fresh steps."""
        while self._free() and (self.retries or self.fresh):
            line = self.retries or self.fresh
            name = next(iter(line))
            del line[name]
            self.granted.add(name)
            self.queue.add(name, URGENT if line is self.retries else 0)
