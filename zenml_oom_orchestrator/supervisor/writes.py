"""A small bounded pool of API writers, so no step's writes wait behind another's round trip.

The engine stays the single writer of every step's state: it hands a step's blocking API calls
(the calls only) to the pool with `submit(step, work, then, priority)` and moves on; when
`work` has run, the step's key goes back in the work queue (high lane) and the engine's own
thread runs `then(result)` on its next reconcile (`settle`). A step has at most one
submission in flight, and its reconcile does nothing else until it is settled, so the order of
a step's writes (result, Event, then the next attempt) is the same as when they ran inline.

Priorities: a lower number runs first, so a retry's writes never wait behind never-started
steps' creates (the pool's own lane, as the work queue's). `threads=0` (or `inline`) runs
`work` and `then` at once in the caller: resume, stop and the fast tests use that.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from zenml_oom_orchestrator.supervisor.workqueue import WorkQueue

log = logging.getLogger(__name__)

# Pool priorities (lower runs first) and the work-queue priority a settled step comes back with.
RETRY = 0  # a failed attempt's result and its step's next attempt
FINISH = 1  # a succeeded attempt's Event
FIRST = 2  # a never-started step's first attempt
URGENT = 1  # work-queue priority of steps with an attempt in flight (WorkQueue: higher first)

Then = Callable[[Future[Any]], None]


class Writes:
    def __init__(self, work_queue: WorkQueue, threads: int = 0) -> None:
        self.queue = work_queue
        self.threads = threads
        self.inline = threads == 0
        self._tasks: queue.PriorityQueue[tuple[int, int, str, Callable[[], Any], Future[Any]]]
        self._tasks = queue.PriorityQueue()
        self._seq = itertools.count()
        self._waiting: dict[str, tuple[Future[Any], Then]] = {}  # engine thread only
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        """Start the writer threads; from now on `submit` runs work in them."""
        if self.threads == 0 or self._workers:
            return
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"api-writer-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        self.inline = False

    def stop(self, timeout: float = 30.0) -> None:
        """Let the threads end once the writes queued before are done; wait `timeout` seconds
        at most in all (they are daemon threads: a hung write does not keep the process)."""
        self.inline = True
        for _ in self._workers:
            self._tasks.put((99, next(self._seq), "", _noop, Future()))
        deadline = time.monotonic() + timeout
        for t in self._workers:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        self._workers.clear()

    def submit(self, step: str, work: Callable[[], Any], then: Then, priority: int) -> None:
        """Run `work` in a writer thread, then `then(future)` on the engine's thread when the
        step is reconciled next (inline: both now)."""
        future: Future[Any] = Future()
        if self.inline:
            _run(work, future)
            then(future)
            return
        assert step not in self._waiting, f"step {step} already has writes in flight"
        self._waiting[step] = (future, then)
        self._tasks.put((priority, next(self._seq), step, work, future))

    def busy(self, step: str) -> bool:
        return step in self._waiting

    def settle(self, step: str) -> bool:
        """Engine thread: run the step's continuation if its writes are done. True while they
        are still in flight (the reconcile must wait: their end queues the step again)."""
        waiting = self._waiting.get(step)
        if waiting is None:
            return False
        future, then = waiting
        if not future.done():
            return True
        del self._waiting[step]
        then(future)  # may raise: the worker requeues the step with backoff, as inline
        return step in self._waiting  # `then` submitted the next writes (an inline retry)

    def _loop(self) -> None:
        while True:
            _, _, step, work, future = self._tasks.get()
            if work is _noop:
                return
            _run(work, future)
            self.queue.add(step, URGENT)


def _noop() -> None:
    return None


def _run(work: Callable[[], Any], future: Future[Any]) -> None:
    try:
        future.set_result(work())
    except BaseException as exc:  # noqa: BLE001 - handed to the engine's thread as is
        future.set_exception(exc)
