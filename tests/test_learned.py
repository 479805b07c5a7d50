"""Learned start memory, the pure core: history records + policy -> start memory + provenance."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from zenml_oom_orchestrator.policy import Memory, OOMPolicy
from zenml_oom_orchestrator.policy.learned import (
    LearnedMemory,
    PastRun,
    PastStep,
    is_learned,
    learn,
    learned_start,
)

MI, GI = 1 << 20, 1 << 30
HASH = "code-v1"


def rows(*attempts: tuple[str, str]) -> list[dict[str, Any]]:
    """oom_attempts rows as the orchestrator stores them: (memory_limit, outcome)."""
    return [
        {"attempt": n, "memory_request": limit, "memory_limit": limit, "outcome": outcome}
        for n, (limit, outcome) in enumerate(attempts, 1)
    ]


def run(name: str, **steps: PastStep) -> PastRun:
    return PastRun(name=name, steps=steps)


ESCALATED = PastStep.from_rows(
    "train", HASH, rows(("512Mi", "oom_killed"), ("1Gi", "oom_killed"), ("2Gi", "succeeded"))
)


def test_past_step_reads_the_attempt_rows() -> None:
    assert ESCALATED.succeeded_with == Memory(2 * GI, 2 * GI)
    assert ESCALATED.oom_killed_at is None  # it succeeded: the kills say nothing more
    failed = PastStep.from_rows("t", HASH, rows(("512Mi", "oom_killed"), ("1Gi", "oom_killed")))
    assert failed.succeeded_with is None and failed.oom_killed_at == GI
    app = PastStep.from_rows("t", HASH, rows(("512Mi", "app_error")))
    assert app.succeeded_with is None and app.oom_killed_at is None
    # Rows this version cannot read (no limit, not a size) are skipped, not fatal.
    odd = PastStep.from_rows("t", HASH, [{"outcome": "succeeded"}, {"memory_limit": "lots"}])
    assert odd.succeeded_with is None


def test_a_step_starts_where_it_last_succeeded() -> None:
    policy = OOMPolicy(initial_memory="512Mi", max_memory="4Gi")
    learned = learn("train", HASH, [run("r2", train=ESCALATED)], policy)
    assert learned == LearnedMemory(
        request=2 * GI, limit=2 * GI, run="r2", how="succeeded", seen_at=2 * GI
    )
    start = learned_start(Memory(512 * MI, 512 * MI, "initial_memory"), learned, policy)
    assert (start.request, start.limit) == (2 * GI, 2 * GI)
    assert start.source == "learned: succeeded at 2Gi in run r2"
    assert is_learned(start.source)


def test_the_newest_success_in_the_window_wins() -> None:
    policy = OOMPolicy(learning_window=3)
    older = PastStep.from_rows("train", HASH, rows(("4Gi", "succeeded")))
    newer = PastStep.from_rows("train", HASH, rows(("1Gi", "succeeded")))
    history = [run("r3", train=newer), run("r2", train=older)]
    learned = learn("train", HASH, history, policy)
    assert learned is not None and (learned.limit, learned.run) == (GI, "r3")


def test_runs_outside_the_window_do_not_count() -> None:
    policy = OOMPolicy(learning_window=2)
    history = [run("r3"), run("r2"), run("r1", train=ESCALATED)]
    assert learn("train", HASH, history, policy) is None
    assert learn("train", HASH, history, OOMPolicy(learning_window=3)) is not None


def test_cached_steps_other_steps_and_changed_code_do_not_count() -> None:
    policy = OOMPolicy()
    cached = PastStep.from_rows("train", HASH, rows(("8Gi", "succeeded")), cached=True)
    changed = PastStep.from_rows("train", "code-v0", rows(("8Gi", "succeeded")))
    other = PastStep.from_rows("other", HASH, rows(("8Gi", "succeeded")))
    history = [run("r3", train=cached), run("r2", train=changed), run("r1", other=other)]
    assert learn("train", HASH, history, policy) is None
    # No code hash to match on (a snapshot without one): nothing is learned.
    assert learn("train", None, [run("r1", train=ESCALATED)], policy) is None


def test_learning_off_learns_nothing() -> None:
    policy = OOMPolicy(learn_start_memory=False)
    assert learn("train", HASH, [run("r1", train=ESCALATED)], policy) is None


def test_an_oom_kill_at_the_cap_starts_one_step_above_it_next_time() -> None:
    # Last run: killed at 1Gi, its cap then. The cap is 8Gi now: start at 2Gi, not 512Mi.
    policy = OOMPolicy(max_memory="8Gi")
    failed = PastStep.from_rows("train", HASH, rows(("512Mi", "oom_killed"), ("1Gi", "oom_killed")))
    learned = learn("train", HASH, [run("r1", train=failed)], policy)
    assert learned is not None and learned.how == "oom_killed" and learned.limit == 2 * GI
    start = learned_start(Memory(512 * MI, 512 * MI), learned, policy)
    assert start.limit == 2 * GI
    assert start.source.startswith("learned: OOM-killed at 1Gi in run r1")


def test_a_newer_kill_above_an_older_success_takes_the_larger() -> None:
    policy = OOMPolicy()
    success = PastStep.from_rows("train", HASH, rows(("1Gi", "succeeded")))
    killed = PastStep.from_rows("train", HASH, rows(("1Gi", "oom_killed"), ("2Gi", "oom_killed")))
    history = [run("r2", train=killed), run("r1", train=success)]
    learned = learn("train", HASH, history, policy)
    assert learned is not None and (learned.limit, learned.run) == (4 * GI, "r2")


def test_a_step_that_needed_more_than_its_cap_starts_at_the_cap() -> None:
    policy = OOMPolicy(max_memory="1Gi")
    learned = learn("train", HASH, [run("r1", train=ESCALATED)], policy)
    start = learned_start(Memory(512 * MI, 512 * MI), learned, policy)
    assert (start.request, start.limit) == (GI, GI)
    assert start.source == "learned: succeeded at 2Gi in run r1, capped at max_memory 1Gi"
    # No max_memory: the largest node caps it.
    node = learned_start(Memory(512 * MI, 512 * MI), learned, OOMPolicy(), 1536 * MI)
    assert node.limit == 1536 * MI
    assert node.source.endswith("capped at the largest node's memory 1536Mi")


def test_the_policy_start_wins_when_it_is_larger() -> None:
    policy = OOMPolicy()
    learned = learn("train", HASH, [run("r1", train=ESCALATED)], policy)
    start = Memory(3 * GI, 3 * GI, "ResourceSettings(memory='3GiB')")
    assert learned_start(start, learned, policy) is start
    assert learned_start(start, None, policy) is start


def test_a_learned_request_below_its_limit_is_kept() -> None:
    # keep_request_ratio: the successful attempt asked for less than its limit.
    policy = OOMPolicy(keep_request_ratio=True)
    ratio = PastStep.from_rows(
        "train",
        HASH,
        [{"memory_request": "1Gi", "memory_limit": "2Gi", "outcome": "succeeded"}],
    )
    learned = learn("train", HASH, [run("r1", train=ratio)], policy)
    start = learned_start(Memory(256 * MI, 512 * MI), learned, policy)
    assert (start.request, start.limit) == (GI, 2 * GI)


def test_learned_memory_round_trips_through_a_run_spec_json() -> None:
    learned = LearnedMemory(request=GI, limit=GI, run="r1", how="succeeded", seen_at=GI)
    assert LearnedMemory.model_validate_json(learned.model_dump_json()) == learned
    with pytest.raises(ValidationError):
        LearnedMemory(request=GI, limit=GI, run="r1", how="guessed", seen_at=GI)  # type: ignore[arg-type]
