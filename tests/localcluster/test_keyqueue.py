"""The job controller's key queue: the guarantees the controller's one worker relies on."""

from __future__ import annotations

import threading
import time

from zenml_oom_orchestrator.localcluster.keyqueue import KeyQueue


def test_a_key_waits_once_however_often_it_is_added() -> None:
    queue = KeyQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert [queue.get(), queue.get()] == ["a", "b"]


def test_a_key_added_while_syncing_comes_back_after_done_not_before() -> None:
    queue = KeyQueue()
    queue.add("a")
    assert queue.get() == "a"
    queue.add("a")  # an event during the sync
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(queue.get()), daemon=True)
    reader.start()
    reader.join(0.2)
    assert got == []  # not handed out a second time while the first sync runs
    queue.done("a")
    reader.join(2)
    assert got == ["a"]


def test_delayed_adds_keep_the_earliest_due_time() -> None:
    queue = KeyQueue()
    queue.add_after("a", 30.0)
    queue.add_after("a", 0.05)
    queue.add_after("a", 10.0)
    started = time.monotonic()
    assert queue.get() == "a"
    assert time.monotonic() - started < 5.0


def test_failed_syncs_back_off_per_key_until_forgotten() -> None:
    queue = KeyQueue(backoff_base=0.1)
    queue.add_rate_limited("a")  # 0.1 s
    queue.add_rate_limited("a")  # 0.2 s: the earlier due time wins
    assert queue._failures["a"] == 2
    queue.forget("a")
    assert "a" not in queue._failures
    assert queue.get() == "a"


def test_shut_down_wakes_a_blocked_get() -> None:
    queue = KeyQueue()
    got: list[object] = ["unset"]
    reader = threading.Thread(target=lambda: got.__setitem__(0, queue.get()), daemon=True)
    reader.start()
    time.sleep(0.1)
    queue.shut_down()
    reader.join(2)
    assert got == [None]
