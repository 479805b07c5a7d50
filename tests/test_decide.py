"""decide(): the rule per outcome kind, the messages, and escalation properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zenml_oom_orchestrator.outcome import Outcome, OutcomeKind
from zenml_oom_orchestrator.policy import (
    AppRetryConfig,
    AttemptRecord,
    Budget,
    GiveUp,
    OOMPolicy,
    Retry,
    decide,
)
from zenml_oom_orchestrator.quantity import format_memory

MI, GI = 1 << 20, 1 << 30
OOM = Outcome(OutcomeKind.OOM_KILLED, container="main", exit_code=137, reason="OOMKilled")
APP = Outcome(OutcomeKind.APP_ERROR, container="main", exit_code=1, reason="Error")
KILLED = Outcome(OutcomeKind.KILLED, container="main", exit_code=137, signal=9, reason="Error")


def _attempt(
    n: int, limit: int, request: int | None = None, budget: Budget | None = None
) -> AttemptRecord:
    return AttemptRecord(n, request or limit, limit, budget=budget)


def _retry(decision: object) -> Retry:
    assert isinstance(decision, Retry), decision
    return decision


def _give_up(decision: object) -> GiveUp:
    assert isinstance(decision, GiveUp), decision
    return decision


# --- OOM -----------------------------------------------------------------------------------


def test_oom_doubles_from_the_last_attempts_memory() -> None:
    retry = _retry(decide("train", [_attempt(1, GI)], OOM, OOMPolicy()))
    assert (retry.memory_request, retry.memory_limit) == (2 * GI, 2 * GI)
    assert retry.budget == "oom" and retry.reason == "oom_killed" and retry.delay_seconds == 0
    assert "train" in retry.message and "1Gi" in retry.message and "2Gi" in retry.message


def test_oom_escalates_from_memory_not_from_retry_count() -> None:
    # Attempt 2 ran with 3Gi (say, after an infrastructure retry on a resized template):
    # the next size comes from 3Gi, not from "attempt 2 -> 2 x start".
    attempts = [_attempt(1, GI), _attempt(2, 3 * GI, budget="infrastructure")]
    retry = _retry(decide("train", attempts, OOM, OOMPolicy()))
    assert retry.memory_limit == 6 * GI


def test_oom_uses_the_increment_when_larger() -> None:
    policy = OOMPolicy(memory_multiplier=1.2, memory_increment="500Mi")
    retry = _retry(decide("s", [_attempt(1, GI)], OOM, policy))
    assert retry.memory_limit == GI + 500 * MI


def test_oom_clamps_to_cap_then_gives_up_at_cap() -> None:
    policy = OOMPolicy(max_memory="3Gi")
    retry = _retry(decide("train", [_attempt(1, 2 * GI)], OOM, policy))
    assert retry.memory_limit == 3 * GI
    attempts = [_attempt(1, 2 * GI), _attempt(2, 3 * GI, budget="oom")]
    give_up = _give_up(decide("train", attempts, OOM, policy))
    assert give_up.reason == "memory_cap_reached"
    for text in ("'train'", "attempt 2", "3Gi", "2Gi, 3Gi", "raise max_memory above 3Gi"):
        assert text in give_up.message, text


def test_oom_clamps_to_the_largest_node() -> None:
    retry = _retry(decide("s", [_attempt(1, 3 * GI)], OOM, OOMPolicy(), largest_node_memory=4 * GI))
    assert retry.memory_limit == 4 * GI
    attempts = [_attempt(1, 3 * GI), _attempt(2, 4 * GI, budget="oom")]
    give_up = _give_up(decide("s", attempts, OOM, OOMPolicy(), largest_node_memory=4 * GI))
    assert give_up.reason == "node_memory_reached"
    assert "add a node with more than 4Gi" in give_up.message


def test_oom_budget_runs_out() -> None:
    attempts = [_attempt(1, GI), _attempt(2, 2 * GI, budget="oom")]
    give_up = _give_up(decide("s", attempts, OOM, OOMPolicy(max_oom_retries=1)))
    assert give_up.reason == "oom_retries_exhausted"
    assert "all 1 OOM retries" in give_up.message and "max_oom_retries" in give_up.message
    off = _give_up(decide("s", [_attempt(1, GI)], OOM, OOMPolicy(max_oom_retries=0)))
    assert "OOM retries are off" in off.message


def test_oom_keeps_the_ratio_when_asked() -> None:
    policy = OOMPolicy(keep_request_ratio=True)
    retry = _retry(decide("s", [_attempt(1, GI, request=256 * MI)], OOM, policy))
    assert (retry.memory_request, retry.memory_limit) == (512 * MI, 2 * GI)


def test_oom_delay_follows_the_steps_backoff() -> None:
    app = AppRetryConfig(max_retries=0, delay=5, backoff=3)
    attempts = [_attempt(1, GI), _attempt(2, 2 * GI, budget="oom")]
    assert _retry(decide("s", attempts, OOM, OOMPolicy(), app)).delay_seconds == 15


# --- Evictions, disruptions, kills --------------------------------------------------------


def test_memory_pressure_eviction_raises_the_request() -> None:
    evicted = Outcome(OutcomeKind.EVICTED, "main", memory_pressure=True, memory_used=3 * GI)
    retry = _retry(decide("s", [_attempt(1, 4 * GI, request=GI)], evicted, OOMPolicy()))
    assert retry.budget == "oom"
    assert (retry.memory_request, retry.memory_limit) == (3 * GI, 4 * GI)


def test_other_evictions_retry_at_the_same_memory() -> None:
    evicted = Outcome(OutcomeKind.EVICTED, "main", memory_pressure=False, reason="Evicted")
    retry = _retry(decide("s", [_attempt(1, 2 * GI, request=GI)], evicted, OOMPolicy()))
    assert retry.budget == "infrastructure"
    assert (retry.memory_request, retry.memory_limit) == (GI, 2 * GI)


@pytest.mark.parametrize("kind", [OutcomeKind.DISRUPTED, OutcomeKind.NODE_LOST])
def test_infrastructure_has_its_own_budget(kind: OutcomeKind) -> None:
    outcome = Outcome(kind, "main", reason="PreemptionByScheduler")
    # Two OOM retries spent already do not count against the infrastructure budget.
    attempts = [
        _attempt(1, GI),
        _attempt(2, 2 * GI, budget="oom"),
        _attempt(3, 4 * GI, budget="oom"),
    ]
    retry = _retry(decide("s", attempts, outcome, OOMPolicy(max_infrastructure_retries=1)))
    assert retry.budget == "infrastructure" and retry.memory_limit == 4 * GI
    spent = [*attempts, _attempt(4, 4 * GI, budget="infrastructure")]
    give_up = _give_up(decide("s", spent, outcome, OOMPolicy(max_infrastructure_retries=1)))
    assert give_up.reason == "infrastructure_retries_exhausted"
    assert "max_infrastructure_retries" in give_up.message and "attempt 4" in give_up.message


@pytest.mark.parametrize(
    ("meaning", "budget", "limit"),
    [("infrastructure", "infrastructure", GI), ("oom", "oom", 2 * GI), ("app_error", "app", GI)],
)
def test_bare_sigkill_follows_the_setting(meaning: str, budget: str, limit: int) -> None:
    policy = OOMPolicy(sigkill_without_reason=meaning)  # type: ignore[arg-type]
    retry = _retry(decide("s", [_attempt(1, GI)], KILLED, policy, AppRetryConfig(max_retries=1)))
    assert (retry.budget, retry.memory_limit) == (budget, limit)


# --- The step's own errors ----------------------------------------------------------------


def test_app_error_uses_the_steps_retries_at_the_same_memory() -> None:
    app = AppRetryConfig(max_retries=2, delay=10, backoff=2)
    attempts = [_attempt(1, GI), _attempt(2, 2 * GI, budget="oom")]
    first = _retry(decide("s", attempts, APP, OOMPolicy(), app))
    assert (first.budget, first.memory_limit, first.delay_seconds) == ("app", 2 * GI, 10)
    attempts.append(_attempt(3, 2 * GI, budget="app"))
    assert _retry(decide("s", attempts, APP, OOMPolicy(), app)).delay_seconds == 20
    attempts.append(_attempt(4, 2 * GI, budget="app"))
    give_up = _give_up(decide("s", attempts, APP, OOMPolicy(), app))
    assert give_up.reason == "app_retries_exhausted"
    assert "all 2 retries" in give_up.message and "max_retries" in give_up.message


def test_app_error_without_retry_config_gives_up() -> None:
    give_up = _give_up(decide("s", [_attempt(1, GI)], APP, OOMPolicy()))
    assert "no retries" in give_up.message and "exit 1" in give_up.message


TRACEBACK_TAIL = (  # a terminated.message under FallbackToLogsOnError: the log's last lines
    'Traceback (most recent call last):\n  File "steps.py", line 3, in fail\n'
    "    raise RuntimeError(message)\nRuntimeError: the step's own bug\n"
)


def test_an_app_error_quotes_the_last_line_of_the_logs_tail() -> None:
    failed = Outcome(
        OutcomeKind.APP_ERROR, "main", exit_code=1, reason="Error", message=TRACEBACK_TAIL
    )
    give_up = _give_up(decide("s", [_attempt(1, GI)], failed, OOMPolicy()))
    assert "(exit 1, Error: RuntimeError: the step's own bug)" in give_up.message
    assert "Traceback" not in give_up.message


def test_an_oom_kill_does_not_quote_what_the_step_printed_last() -> None:
    oom = Outcome(OutcomeKind.OOM_KILLED, "main", exit_code=137, reason="OOMKilled", message="50%")
    retry = _retry(decide("s", [_attempt(1, GI)], oom, OOMPolicy()))
    assert "(exit 137, OOMKilled)" in retry.message and "50%" not in retry.message


def test_deadline_exceeded_counts_as_the_steps_own() -> None:
    deadline = Outcome(OutcomeKind.DEADLINE_EXCEEDED, "main", reason="DeadlineExceeded")
    retry = _retry(
        decide("s", [_attempt(1, GI)], deadline, OOMPolicy(), AppRetryConfig(max_retries=1))
    )
    assert retry.budget == "app" and retry.memory_limit == GI
    give_up = _give_up(decide("s", [_attempt(1, GI)], deadline, OOMPolicy()))
    assert give_up.reason == "deadline_retries_exhausted"
    assert "active_deadline_seconds" in give_up.message


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (OutcomeKind.IMAGE_ERROR, "image"),
        (OutcomeKind.CONFIG_ERROR, "Secret"),
        (OutcomeKind.UNSCHEDULABLE, "add a node"),
    ],
)
def test_never_healing_outcomes_give_up_at_once(kind: OutcomeKind, text: str) -> None:
    outcome = Outcome(kind, "main", reason="X", message="details here")
    generous = OOMPolicy(max_infrastructure_retries=9)
    give_up = _give_up(
        decide("step-x", [_attempt(1, GI)], outcome, generous, AppRetryConfig(max_retries=9))
    )
    assert give_up.reason == kind.value
    for part in ("'step-x'", "attempt 1", "1Gi", "details here", text):
        assert part in give_up.message, part


@pytest.mark.parametrize("kind", [OutcomeKind.SUCCEEDED, OutcomeKind.RUNNING, OutcomeKind.PENDING])
def test_non_failures_are_refused(kind: OutcomeKind) -> None:
    with pytest.raises(ValueError, match=kind.value):
        decide("s", [_attempt(1, GI)], Outcome(kind), OOMPolicy())


def test_empty_attempts_are_refused() -> None:
    with pytest.raises(ValueError, match="attempts is empty"):
        decide("s", [], OOM, OOMPolicy())


def test_decisions_serialise() -> None:
    retry = _retry(decide("s", [_attempt(1, GI)], OOM, OOMPolicy()))
    assert retry.to_dict()["decision"] == "retry" and retry.to_dict()["memory_limit"] == 2 * GI
    give_up = _give_up(decide("s", [_attempt(1, GI)], APP, OOMPolicy()))
    assert give_up.to_dict()["decision"] == "give_up"


def test_every_give_up_names_step_attempt_memory_and_a_change() -> None:
    for kind in OutcomeKind:
        if kind in (OutcomeKind.SUCCEEDED, OutcomeKind.RUNNING, OutcomeKind.PENDING):
            continue
        outcome = Outcome(kind, "main", memory_pressure=True)
        policy = OOMPolicy(max_oom_retries=0, max_infrastructure_retries=0)
        give_up = _give_up(decide("name-7", [_attempt(3, 3 * GI)], outcome, policy))
        for part in ("'name-7'", "attempt 3", "3Gi"):
            assert part in give_up.message, (kind, give_up.message)
        assert any(
            w in give_up.message for w in ("raise", "Raise", "fix", "add a node", "lower")
        ), give_up


# --- Properties: escalation is monotonic and bounded ---------------------------------------


@st.composite
def policies(draw: st.DrawFn) -> OOMPolicy:
    multiplier = draw(st.decimals(min_value=1, max_value=4, places=2))
    increment = draw(st.integers(min_value=0 if multiplier > 1 else 1, max_value=2048)) * MI
    cap = draw(st.none() | st.integers(min_value=1, max_value=1 << 16).map(lambda m: m * MI))
    return OOMPolicy(
        memory_multiplier=float(multiplier),
        memory_increment=format_memory(increment),
        max_memory=None if cap is None else format_memory(cap),
        keep_request_ratio=draw(st.booleans()),
        max_oom_retries=draw(st.integers(min_value=0, max_value=12)),
    )


@settings(max_examples=300, deadline=None)
@given(
    policy=policies(),
    limit=st.integers(min_value=MI, max_value=64 * GI),
    ratio=st.decimals(min_value=Decimal("0.05"), max_value=1, places=2),
    node=st.none() | st.integers(min_value=MI, max_value=128 * GI),
    evictions=st.booleans(),
)
def test_escalation_is_monotonic_and_bounded(
    policy: OOMPolicy, limit: int, ratio: Decimal, node: int | None, evictions: bool
) -> None:
    top = min(b for b in (policy.max_memory_bytes, node, 1 << 62) if b is not None)
    limit = min(limit, top)
    request = max(1, int(limit * ratio))
    attempts = [AttemptRecord(1, request, limit)]
    while True:
        last = attempts[-1]
        used = last.memory_request * 2 if evictions else None
        outcome = Outcome(
            OutcomeKind.EVICTED if evictions else OutcomeKind.OOM_KILLED,
            "main",
            memory_pressure=evictions,
            memory_used=used,
        )
        decision = decide("s", attempts, outcome, policy, largest_node_memory=node)
        if isinstance(decision, GiveUp):
            break
        assert decision.budget == "oom"
        assert 0 < decision.memory_request <= decision.memory_limit <= top
        assert decision.memory_limit >= last.memory_limit
        assert decision.memory_request >= last.memory_request
        grew = decision.memory_request if evictions else decision.memory_limit
        assert grew > (last.memory_request if evictions else last.memory_limit)
        attempts.append(
            AttemptRecord(
                last.number + 1, decision.memory_request, decision.memory_limit, budget="oom"
            )
        )
    assert len(attempts) - 1 <= policy.max_oom_retries
    assert decision.reason in ("oom_retries_exhausted", "memory_cap_reached", "node_memory_reached")


def test_a_long_cause_is_shortened_at_a_word_and_marked() -> None:
    words = "0/1 nodes are available: 1 Insufficient memory. preemption: " * 6
    outcome = Outcome(OutcomeKind.UNSCHEDULABLE, "main", reason="Unschedulable", message=words)
    give_up = _give_up(decide("s", [_attempt(1, GI)], outcome, OOMPolicy()))
    cause = give_up.message.split("(Unschedulable: ", 1)[1].split(" ...)", 1)[0]
    assert len(cause) <= 237 and words.startswith(cause + " ")
    assert give_up.message.endswith("add a node with more allocatable memory.")
