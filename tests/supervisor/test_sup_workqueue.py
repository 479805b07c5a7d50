import threading

import pytest

from zenml_oom_orchestrator.supervisor.workqueue import (
    BucketRateLimiter,
    ExponentialRateLimiter,
    QueueFull,
    WorkQueue,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_dedup_and_fifo() -> None:
    q = WorkQueue()
    for key in ["a", "b", "a", "c", "b"]:
        q.add(key)
    assert len(q) == 3
    assert [q.get(0), q.get(0), q.get(0)] == ["a", "b", "c"]
    assert q.get(0) is None


def test_key_in_process_is_not_handed_out_twice() -> None:
    q = WorkQueue()
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")  # event while a worker owns "a"
    assert q.get(0) is None  # nobody else may take it
    q.done("a")
    assert q.get(0) == "a"


def test_higher_priority_goes_first_and_a_re_add_only_raises() -> None:
    q = WorkQueue()
    for key in ["fresh-1", "fresh-2", "fresh-3"]:
        q.add(key)
    q.add("retry", priority=1)  # arrives last, served first
    q.add("fresh-2", priority=1)  # an event on a waiting key moves it up
    q.add("retry", priority=0)  # a lower add never moves a key down
    assert [q.get(0) for _ in range(4)] == ["retry", "fresh-2", "fresh-1", "fresh-3"]


def test_priority_survives_processing_and_timers() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add("a")
    q.add("b")
    assert q.get(0) == "a"
    q.add("a", priority=1)  # while in process: back in the high lane after done
    q.done("a")
    q.add_after("c", 5, priority=1)
    q.add_after("c", 9)  # a later, lower timer neither delays nor demotes it
    assert q.get(0) == "a"
    clock.t = 5
    assert [q.get(0), q.get(0)] == ["c", "b"]


def test_add_after_keeps_earliest_and_bounds_timers() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    for delay in range(100, 0, -1):
        q.add_after("a", float(delay))
    assert q.pending_timers() == 1
    assert len(q._heap) <= 2 * 1 + 16 + 1
    clock.t = 0.5
    assert q.get(0) is None
    clock.t = 1.0
    assert q.get(0) == "a"


def test_rate_limited_requeues_are_bounded() -> None:
    clock = FakeClock()
    q = WorkQueue(max_requeues=3, rate_limiter=ExponentialRateLimiter(base=1, cap=100), clock=clock)
    results = [q.add_rate_limited("k") for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert q.num_requeues("k") == 3
    q.forget("k")
    assert q.num_requeues("k") == 0


def test_exponential_backoff_caps() -> None:
    lim = ExponentialRateLimiter(base=0.5, cap=3)
    assert [lim.when("k") for _ in range(5)] == [0.5, 1, 2, 3, 3]


def test_bucket_limits_overall_rate() -> None:
    clock = FakeClock()
    lim = BucketRateLimiter(qps=10, burst=2, clock=clock)
    assert [lim.when(i) for i in range(4)] == [0, 0, pytest.approx(0.1), pytest.approx(0.2)]


def test_bounded_keys() -> None:
    q = WorkQueue(max_keys=2)
    q.add("a")
    q.add("b")
    q.add("a")  # already there: fine
    with pytest.raises(QueueFull):
        q.add("c")
    with pytest.raises(QueueFull):
        q.add_after("c", 5)


def test_get_blocks_until_added_and_shutdown_wakes() -> None:
    q = WorkQueue()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.add("x")
    t.join(2)
    assert got == ["x"]
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.shut_down()
    t.join(2)
    assert got == ["x", None]


def test_memory_flat_under_churn() -> None:
    q = WorkQueue(max_keys=50)
    for i in range(20_000):
        key = f"s{i % 40}"
        q.add(key)
        q.add_after(key, 1000 - (i % 7))
        k = q.get(0)
        if k is not None:
            q.done(k)
    assert q.pending_timers() <= 40
    assert len(q._heap) <= 2 * 40 + 17
