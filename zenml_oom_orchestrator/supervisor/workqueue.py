"""A bounded, rate-limited, de-duplicating work queue, after client-go's `workqueue`.

Guarantees the engine relies on:
- a key is queued at most once, however many events name it (dirty set);
- a key being processed is never handed to a second worker; an add during processing re-queues
  it once `done` is called (processing set);
- delayed adds keep only the earliest due time per key, so timers cannot pile up;
- failure requeues back off per key (exponential) and overall (token bucket), and stop after
  `max_requeues`, so one broken key cannot spin (the Volcano controller leak);
- the number of distinct keys held is bounded (`max_keys`): memory stays flat under churn;
- priorities, after controller-runtime's priority queue: a key added with a higher `priority`
  is handed out before every lower one (FIFO within a priority), and adding a waiting key again
  with a higher priority moves it up (never down). The supervisor puts steps with an attempt
  in flight (pod events, retries) above never-started ones, so an OOM kill is acted on at once
  however many first attempts are still to be created.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Hashable
from typing import Protocol


class QueueFull(RuntimeError):
    """More distinct keys than `max_keys` were waiting at once."""


class RateLimiter(Protocol):
    def when(self, key: Hashable) -> float: ...
    def forget(self, key: Hashable) -> None: ...
    def num_requeues(self, key: Hashable) -> int: ...


class ExponentialRateLimiter:
    """Per-key delay `base * 2**failures`, capped at `cap` (client-go's ItemExponentialFailure)."""

    def __init__(self, base: float = 0.05, cap: float = 30.0) -> None:
        self.base, self.cap = base, cap
        self._failures: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def when(self, key: Hashable) -> float:
        with self._lock:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        return min(self.cap, self.base * (2**n))

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        with self._lock:
            return self._failures.get(key, 0)


class BucketRateLimiter:
    """Overall token bucket: `qps` sustained, `burst` at once (client-go's BucketRateLimiter)."""

    def __init__(
        self, qps: float = 10.0, burst: int = 100, clock: Callable[[], float] | None = None
    ):
        self.qps, self.burst = qps, burst
        self._clock = clock or time.monotonic
        self._tokens = float(burst)
        self._last = self._clock()
        self._lock = threading.Lock()

    def when(self, key: Hashable) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1  # reserve now, even if the token is only there later
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: Hashable) -> None:
        pass

    def num_requeues(self, key: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay any of `limiters` asks for (client-go's default controller limiter)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, key: Hashable) -> float:
        return max(lim.when(key) for lim in self.limiters)

    def forget(self, key: Hashable) -> None:
        for lim in self.limiters:
            lim.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return max(lim.num_requeues(key) for lim in self.limiters)


def default_rate_limiter() -> RateLimiter:
    return MaxOfRateLimiter(ExponentialRateLimiter(), BucketRateLimiter())


class WorkQueue:
    """Dedup FIFO with delayed and rate-limited adds; `get()` blocks until a key is due."""

    def __init__(
        self,
        max_keys: int = 10_000,
        max_requeues: int = 10,
        rate_limiter: RateLimiter | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.max_keys = max_keys
        self.max_requeues = max_requeues
        self.rate_limiter = rate_limiter or default_rate_limiter()
        self._clock = clock or time.monotonic
        self._cond = threading.Condition()
        # One FIFO lane per priority; dicts keep insertion order and allow O(1) moves.
        self._lanes: dict[int, dict[Hashable, None]] = {}
        self._dirty: dict[Hashable, int] = {}  # waiting (or re-added in process): priority
        self._processing: set[Hashable] = set()
        self._due: dict[Hashable, float] = {}  # earliest due time per delayed key
        self._due_priority: dict[Hashable, int] = {}
        self._heap: list[tuple[float, int, Hashable]] = []  # may hold stale entries
        self._seq = itertools.count()  # tie-breaker: keys need not be orderable
        self._shut_down = False

    # -- adding ---------------------------------------------------------------------------
    def add(self, key: Hashable, priority: int = 0) -> None:
        """Queue `key` unless it is already waiting (then raise its priority if this one is
        higher); a key in process is re-queued after `done`."""
        with self._cond:
            self._add_locked(key, priority)

    def _add_locked(self, key: Hashable, priority: int) -> None:
        if self._shut_down:
            return
        old = self._dirty.get(key)
        if old is not None:
            if priority > old:
                self._dirty[key] = priority
                if key not in self._processing:
                    del self._lanes[old][key]
                    self._lanes.setdefault(priority, {})[key] = None
            return
        if len(self._dirty) + len(self._due) >= self.max_keys and key not in self._due:
            raise QueueFull(f"work queue holds {self.max_keys} keys already")
        self._dirty[key] = priority
        if key not in self._processing:
            self._lanes.setdefault(priority, {})[key] = None
            self._cond.notify()

    def add_after(self, key: Hashable, delay: float, priority: int = 0) -> None:
        """Queue `key` once `delay` seconds have passed (the earliest of several wins)."""
        if delay <= 0:
            self.add(key, priority)
            return
        with self._cond:
            if self._shut_down:
                return
            due = self._clock() + delay
            if key in self._due:
                self._due_priority[key] = max(priority, self._due_priority.get(key, priority))
                if self._due[key] <= due:
                    return
            if key not in self._due and len(self._dirty) + len(self._due) >= self.max_keys:
                raise QueueFull(f"work queue holds {self.max_keys} keys already")
            self._due[key] = due
            self._due_priority.setdefault(key, priority)
            heapq.heappush(self._heap, (due, next(self._seq), key))
            if len(self._heap) > 2 * len(self._due) + 16:  # drop superseded timers
                self._heap = [(d, s, k) for d, s, k in self._heap if self._due.get(k) == d]
                heapq.heapify(self._heap)
            self._cond.notify()

    def add_rate_limited(self, key: Hashable) -> bool:
        """Requeue `key` after a failure with backoff; False once it used `max_requeues`."""
        if self.rate_limiter.num_requeues(key) >= self.max_requeues:
            return False
        self.add_after(key, self.rate_limiter.when(key))
        return True

    def forget(self, key: Hashable) -> None:
        """`key` was processed successfully: reset its failure backoff."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.rate_limiter.num_requeues(key)

    # -- taking ---------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next due key (call `done` after), or None on timeout or once shut down."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._shut_down:
                    return None
                now = self._clock()
                self._promote_due_locked(now)
                key = self._pop_locked()
                if key is not None:
                    return key
                if deadline is not None and now >= deadline:
                    return None
                wakes = [
                    t for t in (deadline, self._heap[0][0] if self._heap else None) if t is not None
                ]
                self._cond.wait(max(0.0, min(wakes) - now) if wakes else None)

    def _pop_locked(self) -> Hashable | None:
        for priority in sorted(self._lanes, reverse=True):
            lane = self._lanes[priority]
            if lane:
                key = next(iter(lane))
                del lane[key]
                del self._dirty[key]
                self._processing.add(key)
                return key
        return None

    def _promote_due_locked(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) != due:
                continue  # superseded by an earlier timer
            del self._due[key]
            self._add_locked(key, self._due_priority.pop(key, 0))

    def done(self, key: Hashable) -> None:
        """Finish processing `key`; if it was added meanwhile, it goes back in the queue."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._lanes.setdefault(self._dirty[key], {})[key] = None
                self._cond.notify()

    def shut_down(self) -> None:
        """Wake every waiting `get()` with None and refuse new keys."""
        with self._cond:
            self._shut_down = True
            self._cond.notify_all()

    def __len__(self) -> int:
        """Keys ready now (not counting delayed ones or ones in process)."""
        with self._cond:
            return sum(len(lane) for lane in self._lanes.values())

    def pending_timers(self) -> int:
        with self._cond:
            return len(self._due)
