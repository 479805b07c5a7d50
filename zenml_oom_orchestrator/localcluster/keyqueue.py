"""The job controller's queue of Job keys, after kube-controller-manager's use of client-go's
workqueue: a key waits at most once however many events name it, a key being synced is not
handed out again until `done` (an add meanwhile re-queues it then), delayed adds keep the
earliest due time per key, and a failed sync is retried with a per-key exponential delay.

The local cluster's own copy on purpose: the emulator imports nothing from the product (the
supervisor has its own queue), so one bug cannot hide in both.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable


class KeyQueue:
    """De-duplicating FIFO of keys with delayed and backed-off re-adds; `get` blocks."""

    def __init__(self, backoff_base: float = 0.005, backoff_cap: float = 1000.0) -> None:
        self._backoff_base, self._backoff_cap = backoff_base, backoff_cap
        self._cond = threading.Condition()
        self._fifo: deque[Hashable] = deque()
        self._waiting: set[Hashable] = set()
        self._syncing: set[Hashable] = set()
        self._readd_when_done: set[Hashable] = set()
        self._due: dict[Hashable, float] = {}  # key -> monotonic time of its delayed add
        self._failures: dict[Hashable, int] = {}
        self._closed = False

    def add(self, key: Hashable) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: Hashable) -> None:
        if self._closed or key in self._waiting:
            return
        if key in self._syncing:
            self._readd_when_done.add(key)
            return
        self._waiting.add(key)
        self._fifo.append(key)
        self._cond.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            due = time.monotonic() + delay
            if due < self._due.get(key, float("inf")):
                self._due[key] = due
                self._cond.notify()

    def add_rate_limited(self, key: Hashable) -> None:
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        self.add_after(key, min(self._backoff_cap, self._backoff_base * 2**failures))

    def forget(self, key: Hashable) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self) -> Hashable | None:
        """The next key to sync, or None once the queue is shut down."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                for key in [k for k, due in self._due.items() if due <= now]:
                    del self._due[key]
                    self._add_locked(key)
                if self._fifo:
                    key = self._fifo.popleft()
                    self._waiting.discard(key)
                    self._syncing.add(key)
                    return key
                self._cond.wait(min(self._due.values(), default=now + 60.0) - now)

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._syncing.discard(key)
            if key in self._readd_when_done:
                self._readd_when_done.discard(key)
                self._add_locked(key)

    def shut_down(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
