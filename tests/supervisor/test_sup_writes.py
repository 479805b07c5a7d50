import threading
from concurrent.futures import Future
from typing import Any

import pytest

from zenml_oom_orchestrator.supervisor import writes
from zenml_oom_orchestrator.supervisor.workqueue import WorkQueue
from zenml_oom_orchestrator.supervisor.writes import Writes


def test_inline_runs_work_and_continuation_at_once() -> None:
    pool = Writes(WorkQueue())  # no threads: resume, stop and the fast tests
    seen: list[Any] = []
    pool.submit("s", lambda: 42, lambda done: seen.append(done.result()), writes.FIRST)
    assert seen == [42] and not pool.busy("s")


def test_continuation_runs_on_the_settling_thread_after_the_work() -> None:
    q = WorkQueue()
    pool = Writes(q, threads=2)
    pool.start()
    try:
        release = threading.Event()
        ran_on: list[str] = []
        pool.submit(
            "s",
            lambda: release.wait(10) and "created",
            lambda done: ran_on.append(f"{threading.current_thread().name}:{done.result()}"),
            writes.RETRY,
        )
        assert pool.settle("s") is True  # in flight: the reconcile waits
        assert ran_on == []
        release.set()
        assert q.get(5) == "s"  # the end of the work queues the step again
        assert pool.settle("s") is False
        assert ran_on == [f"{threading.current_thread().name}:created"]
        assert not pool.busy("s")
    finally:
        pool.stop()


def test_a_failed_write_raises_in_the_continuation() -> None:
    q = WorkQueue()
    pool = Writes(q, threads=1)
    pool.start()
    try:

        def boom() -> None:
            raise RuntimeError("API down")

        pool.submit("s", boom, lambda done: done.result(), writes.FINISH)
        assert q.get(5) == "s"
        with pytest.raises(RuntimeError, match="API down"):
            pool.settle("s")
        assert not pool.busy("s")  # the step is free to be reconciled again
    finally:
        pool.stop()


def test_retries_writes_run_before_first_attempts_queued_earlier() -> None:
    q = WorkQueue()
    pool = Writes(q, threads=1)
    order: list[str] = []
    gate = threading.Event()
    started = threading.Event()

    def first_blocking() -> None:
        started.set()
        gate.wait(10)

    pool.start()
    try:
        pool.submit("busy", first_blocking, lambda d: None, writes.FIRST)
        assert started.wait(5)  # the one writer is taken
        for i in range(5):
            pool.submit(f"fresh-{i}", lambda i=i: order.append(f"fresh-{i}"), lambda d: None, 2)
        pool.submit("retry", lambda: order.append("retry"), lambda d: None, writes.RETRY)
        gate.set()
        done: Future[None] = Future()
        pool.submit("last", lambda: done.set_result(None), lambda d: None, 9)
        done.result(10)
        assert order[0] == "retry" and sorted(order[1:]) == [f"fresh-{i}" for i in range(5)]
    finally:
        pool.stop()
