"""The policy's pieces: the OOMPolicy model, memory maths, waits, attempt records."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from zenml_oom_orchestrator.outcome import Outcome, OutcomeKind
from zenml_oom_orchestrator.policy import (
    DEFAULT_MEMORY,
    AppRetryConfig,
    AttemptRecord,
    Memory,
    OOMPolicy,
    PolicyError,
    ceiling,
    escalate_after_eviction,
    escalate_after_oom,
    grow,
    retries_used,
    start_memory,
    wait_combine,
    wait_exponential,
    wait_fixed,
    wait_none,
)

MI, GI = 1 << 20, 1 << 30


# --- OOMPolicy ----------------------------------------------------------------------------


def test_defaults_are_valid_and_documented() -> None:
    policy = OOMPolicy()
    assert policy.max_oom_retries == 3 and policy.sigkill_without_reason == "infrastructure"
    for name, field in OOMPolicy.model_fields.items():
        assert field.description and len(field.description) > 20, name
    schema = OOMPolicy.model_json_schema()
    assert schema["additionalProperties"] is False


def test_policy_round_trips_through_json() -> None:
    policy = OOMPolicy(max_memory="8Gi", memory_multiplier=1.5, initial_memory="1GiB")
    assert OOMPolicy.model_validate_json(policy.model_dump_json()) == policy


def test_memory_fields_accept_bytes_and_store_readable_form() -> None:
    # Typed str for readers; ints (bytes) are accepted on input.
    policy = OOMPolicy(max_memory=8 * GI, memory_increment=100 * MI)  # type: ignore[arg-type]
    assert policy.max_memory == "8Gi" and policy.memory_increment == "100Mi"
    assert policy.max_memory_bytes == 8 * GI


def test_multiplier_is_exact() -> None:
    assert OOMPolicy(memory_multiplier=1.1).multiplier == Fraction(11, 10)


def _error(**kwargs: Any) -> str:
    with pytest.raises(ValidationError) as err:
        OOMPolicy(**kwargs)
    return str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "must_mention"),
    [
        ({"memory_multiplier": 0.5}, ["memory_multiplier", "0.5", "below 1"]),
        ({"memory_multiplier": float("nan")}, ["memory_multiplier=nan is not a number"]),
        ({"memory_multiplier": float("inf")}, ["memory_multiplier=inf is infinite"]),
        ({"initial_memory": "100m"}, ["'100m' is a fraction of a byte", "'100Mi' or '100M'"]),
        ({"max_memory": "1.5"}, ["max_memory='1.5' is not a whole number of bytes"]),
        ({"memory_multiplier": 1000}, ["memory_multiplier", "1000"]),
        ({"max_oom_retries": -1}, ["max_oom_retries", "-1", "negative"]),
        ({"max_infrastructure_retries": -2}, ["max_infrastructure_retries", "-2", "negative"]),
        ({"max_memory": "lots"}, ["max_memory", "'lots'", "Ki Mi Gi"]),
        ({"initial_memory": "1.5 Gi"}, ["initial_memory", "'1.5 Gi'"]),
        ({"memory_increment": "-1Mi"}, ["memory_increment", "'-1Mi'", "negative"]),
        ({"max_memory": "0"}, ["max_memory", "zero"]),
        (
            {"initial_memory": "4Gi", "max_memory": "2Gi"},
            ["initial_memory", "'4Gi'", "max_memory", "'2Gi'"],
        ),
        (
            {"memory_multiplier": 1, "memory_increment": "0"},
            ["memory_multiplier", "memory_increment", "never"],
        ),
        ({"pending_timeout_seconds": -5}, ["pending_timeout_seconds", "-5"]),
        ({"sigkill_without_reason": "ignore"}, ["sigkill_without_reason", "ignore"]),
        ({"max_oom_retrys": 5}, ["max_oom_retrys", "5", "did you mean 'max_oom_retries'"]),
        ({"learning_window": 0}, ["learning_window", "0", "learn_start_memory=False"]),
        ({"learning_window": 101}, ["learning_window", "101", "1 to 100"]),
        ({"learn_start_memory": "maybe"}, ["learn_start_memory", "'maybe'", "True", "False"]),
        ({"learn_start_memry": False}, ["learn_start_memry", "did you mean 'learn_start_memory'"]),
        ({"colour": "blue"}, ["colour", "blue", "known settings"]),
    ],
)
def test_bad_policy_names_field_and_value(kwargs: dict[str, Any], must_mention: list[str]) -> None:
    message = _error(**kwargs)
    for text in must_mention:
        assert text in message, f"{text!r} not in {message}"
    assert "below 1" not in message or kwargs.get("memory_multiplier") == 0.5


def test_policy_is_frozen() -> None:
    with pytest.raises(ValidationError):
        OOMPolicy().max_oom_retries = 5  # type: ignore[misc]


# --- Memory maths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "multiplier", "increment", "expected"),
    [
        (GI, Fraction(2), 256 * MI, 2 * GI),
        (100 * MI, Fraction(6, 5), 100 * MI, 200 * MI),  # VPA: max(+100Mi, x1.2)
        (GI, Fraction(6, 5), 100 * MI, 1229 * MI),  # 1228.8Mi rounds up to whole Mi
        (GI, Fraction(1), 1, GI + MI),  # any growth is at least one Mi
        (10**9, Fraction(3, 2), 0, 1431 * MI),  # decimal start, binary result
    ],
)
def test_grow(previous: int, multiplier: Fraction, increment: int, expected: int) -> None:
    assert grow(previous, multiplier, increment) == expected


def test_ceiling() -> None:
    assert ceiling(None, None) is None
    assert ceiling(4 * GI, None) == 4 * GI
    assert ceiling(None, 3 * GI) == 3 * GI
    assert ceiling(4 * GI, 3 * GI) == 3 * GI


def test_escalate_after_oom_sets_request_to_limit_by_default() -> None:
    nxt = escalate_after_oom(Memory(512 * MI, GI), OOMPolicy(), top=None)
    assert nxt == Memory(2 * GI, 2 * GI, nxt.source)


def test_escalate_after_oom_can_keep_the_ratio() -> None:
    nxt = escalate_after_oom(Memory(512 * MI, GI), OOMPolicy(keep_request_ratio=True), top=None)
    assert (nxt.request, nxt.limit) == (GI, 2 * GI)


def test_escalate_after_oom_clamps_to_the_ceiling() -> None:
    nxt = escalate_after_oom(Memory(3 * GI, 3 * GI), OOMPolicy(), top=4 * GI)
    assert (nxt.request, nxt.limit) == (4 * GI, 4 * GI)


def test_escalate_after_eviction_raises_the_request_to_what_was_used() -> None:
    last = Memory(256 * MI, 4 * GI)
    nxt = escalate_after_eviction(last, OOMPolicy(), top=None, used=3 * GI)
    assert (nxt.request, nxt.limit) == (3 * GI, 4 * GI)  # the limit was already enough
    grown = escalate_after_eviction(last, OOMPolicy(), top=None, used=None)
    assert (grown.request, grown.limit) == (512 * MI, 4 * GI)


def test_escalate_after_eviction_keeps_ratio_and_limit_at_least_request() -> None:
    last = Memory(GI, 2 * GI)
    kept = escalate_after_eviction(last, OOMPolicy(keep_request_ratio=True), top=None)
    assert (kept.request, kept.limit) == (2 * GI, 4 * GI)
    over = escalate_after_eviction(Memory(GI, GI), OOMPolicy(), top=None, used=5 * GI)
    assert over.request == over.limit == 5 * GI


def test_memory_rejects_request_above_limit() -> None:
    with pytest.raises(PolicyError, match="request <= limit"):
        Memory(2 * GI, GI)


def test_memory_str() -> None:
    assert str(Memory(GI, GI)) == "1Gi"
    assert str(Memory(512 * MI, GI)) == "1Gi (request 512Mi)"


# --- Start memory: initial_memory → ResourceSettings → pod settings → default --------------

POD = {"requests": {"memory": "512Mi"}, "limits": {"memory": "1Gi"}}


@pytest.mark.parametrize(
    ("policy", "resource", "pod", "expected", "source"),
    [
        (OOMPolicy(initial_memory="3Gi"), "2GiB", POD, (3 * GI, 3 * GI), "initial_memory"),
        (OOMPolicy(), "2GiB", POD, (2 * GI, 2 * GI), "ResourceSettings"),
        (OOMPolicy(), "1500MB", None, (1500 * 10**6, 1500 * 10**6), "ResourceSettings"),
        (OOMPolicy(), None, POD, (512 * MI, GI), "pod settings"),
        (OOMPolicy(), None, {"limits": {"memory": "2Gi"}}, (2 * GI, 2 * GI), "pod settings"),
        (OOMPolicy(), None, {"requests": {"memory": "1G"}}, (10**9, 10**9), "pod settings"),
        (OOMPolicy(), None, {"requests": {"cpu": "1"}}, (GI, GI), "default"),
        (OOMPolicy(), None, None, (GI, GI), "default"),
        (OOMPolicy(keep_request_ratio=True), "2Gi", POD, (GI, 2 * GI), "ResourceSettings"),
        (
            OOMPolicy(keep_request_ratio=True, initial_memory="4Gi"),
            None,
            POD,
            (2 * GI, 4 * GI),
            "initial",
        ),
    ],
)
def test_start_memory_order(
    policy: OOMPolicy, resource: str | None, pod: Any, expected: tuple[int, int], source: str
) -> None:
    start = start_memory(policy, resource, pod)
    assert (start.request, start.limit) == expected
    assert source in start.source


def test_default_memory_is_documented() -> None:
    assert DEFAULT_MEMORY in (OOMPolicy.model_fields["initial_memory"].description or "")


def test_start_memory_reads_a_resources_model() -> None:
    from kubernetes.client import V1ResourceRequirements

    model = V1ResourceRequirements(requests={"memory": "256Mi"}, limits={"memory": "512Mi"})
    start = start_memory(OOMPolicy(), None, model)
    assert (start.request, start.limit) == (256 * MI, 512 * MI)


@pytest.mark.parametrize(
    ("policy", "resource", "pod", "node", "must_mention"),
    [
        (
            OOMPolicy(max_memory="1Gi"),
            "2GiB",
            None,
            None,
            ["2Gi", "max_memory='1Gi'", "raise max_memory"],
        ),
        (
            OOMPolicy(max_memory="1Gi"),
            None,
            {"limits": {"memory": "3Gi"}},
            None,
            ["3Gi", "max_memory"],
        ),
        (OOMPolicy(), "8Gi", None, 4 * GI, ["8Gi", "largest node", "4Gi"]),
        (OOMPolicy(), "many", None, None, ["ResourceSettings(memory='many')"]),
        (OOMPolicy(), None, {"limits": {"memory": "x"}}, None, ["resources.limits.memory='x'"]),
        (
            OOMPolicy(),
            None,
            {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}},
            None,
            ["request 2Gi above limit 1Gi"],
        ),
    ],
)
def test_start_memory_errors(
    policy: OOMPolicy, resource: str | None, pod: Any, node: int | None, must_mention: list[str]
) -> None:
    with pytest.raises(PolicyError) as err:
        start_memory(policy, resource, pod, largest_node_memory=node)
    for text in must_mention:
        assert text in str(err.value), f"{text!r} not in {err.value}"


# --- Waits ---------------------------------------------------------------------------------


def test_waits_compose_like_tenacity() -> None:
    assert wait_none()(5) == 0
    assert wait_fixed(3)(1) == wait_fixed(3)(9) == 3
    exp = wait_exponential(multiplier=2, max=30)
    assert [exp(n) for n in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 30, 30]
    both = wait_fixed(1) + wait_exponential(multiplier=1)
    assert isinstance(both, wait_combine) and [both(n) for n in (1, 2, 3)] == [2, 3, 5]
    assert sum([wait_fixed(1), wait_fixed(2)])(1) == 3  # type: ignore[operator]
    assert "wait_fixed(1)" in repr(both)
    assert wait_exponential(min=5)(1) == 5
    assert wait_exponential(max=60)(10_000) == 60  # no OverflowError


@pytest.mark.parametrize("make", [lambda: wait_fixed(-1), lambda: wait_exponential(multiplier=-1)])
def test_negative_waits_are_refused(make: Any) -> None:
    with pytest.raises(ValueError, match="-1"):
        make()


def test_app_retry_from_zenml_and_wait() -> None:
    step_retry = SimpleNamespace(max_retries=3, delay=10, backoff=2)  # StepRetryConfig's fields
    config = AppRetryConfig.from_zenml(step_retry)
    assert config == AppRetryConfig(max_retries=3, delay=10, backoff=2)
    assert [config.wait()(n) for n in (1, 2, 3)] == [10, 20, 40]
    assert AppRetryConfig.from_zenml(None) == AppRetryConfig()
    assert AppRetryConfig.from_zenml({"max_retries": 1, "delay": 5}).wait()(3) == 5
    zenml_default = AppRetryConfig.from_zenml(SimpleNamespace(max_retries=1, delay=7, backoff=0))
    assert [zenml_default.wait()(n) for n in (1, 2)] == [7, 7]  # backoff 0: constant
    with pytest.raises(ValidationError, match="max_retries"):
        AppRetryConfig(max_retries=-1)


# --- Attempt records ----------------------------------------------------------------------


def test_attempt_record_round_trip() -> None:
    outcome = Outcome(OutcomeKind.OOM_KILLED, container="main", exit_code=137, reason="OOMKilled")
    record = AttemptRecord(2, GI, 2 * GI, outcome, "oom", 10.0, 70.5, "node-1", "hi")
    data = json.loads(json.dumps(record.to_dict()))
    assert AttemptRecord.from_dict(data) == record
    assert AttemptRecord.from_dict({**data, "future_field": 1}) == record
    running = AttemptRecord(1, GI, GI)
    assert AttemptRecord.from_dict(running.to_dict()) == running
    assert running.finished(outcome, 5.0).outcome == outcome
    assert running.memory == Memory(GI, GI)


@pytest.mark.parametrize(
    ("kwargs", "text"), [({"number": 0}, "count from 1"), ({"budget": "gpu"}, "gpu")]
)
def test_attempt_record_validates(kwargs: dict[str, Any], text: str) -> None:
    base: dict[str, Any] = {"number": 1, "memory_request": GI, "memory_limit": GI}
    with pytest.raises(ValueError, match=text):
        AttemptRecord(**(base | kwargs))


def test_retries_used_counts_per_budget() -> None:
    attempts = [
        AttemptRecord(1, GI, GI),
        AttemptRecord(2, GI, GI, budget="infrastructure"),
        AttemptRecord(3, 2 * GI, 2 * GI, budget="oom"),
        AttemptRecord(4, 2 * GI, 2 * GI, budget="infrastructure"),
    ]
    assert retries_used(attempts, "infrastructure") == 2
    assert retries_used(attempts, "oom") == 1
    assert retries_used(attempts, "app") == 0
    assert retries_used([], "oom") == 0


def test_learning_is_on_by_default_and_reads_cli_strings() -> None:
    policy = OOMPolicy()
    assert policy.learn_start_memory is True and policy.learning_window == 10
    # `zenml orchestrator register --learn_start_memory=False` passes a string.
    assert OOMPolicy(learn_start_memory="False").learn_start_memory is False  # type: ignore[arg-type]
    assert OOMPolicy(learn_start_memory="true").learn_start_memory is True  # type: ignore[arg-type]


def test_growing_in_place_is_on_by_default_and_validated() -> None:
    policy = OOMPolicy()
    assert policy.grow_in_place and policy.grow_at_fraction == 0.8
    assert policy.max_growths_per_attempt == 4 and policy.grow_check_seconds == 5
    assert OOMPolicy(grow_in_place="off").grow_in_place is False  # type: ignore[arg-type]
    assert OOMPolicy(grow_check_seconds=30).grow_check_seconds == 30
    for kwargs, text in [
        ({"grow_at_fraction": 0.99}, "grow_at_fraction=0.99 is outside 0.5 to 0.95"),
        ({"grow_check_seconds": 0}, "grow_check_seconds=0 is outside 1 to 30"),
        ({"grow_check_seconds": 60}, "set grow_in_place=False"),
        ({"grow_at_fraction": float("nan")}, "set grow_in_place=False"),
        ({"max_growths_per_attempt": -1}, "max_growths_per_attempt=-1 is negative"),
        ({"grow_in_place": "maybe"}, "grow_in_place='maybe' is not true or false"),
        ({"grow_at_fractoin": 0.7}, "did you mean 'grow_at_fraction'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(text)):
            OOMPolicy(**kwargs)


def test_growth_target_uses_the_oom_arithmetic_and_the_ceiling() -> None:
    from zenml_oom_orchestrator.policy import Memory, growth_target

    policy = OOMPolicy(memory_multiplier=1.5, memory_increment="256Mi", max_memory="2Gi")
    start = Memory(512 * MI, 512 * MI)
    first = growth_target(start, policy, None)
    assert first is not None and (first.request, first.limit) == (768 * MI, 768 * MI)
    assert growth_target(Memory(1800 * MI, 1800 * MI), policy, None) == Memory(
        2048 * MI, 2048 * MI, "in-place growth"
    )
    assert growth_target(Memory(2048 * MI, 2048 * MI), policy, None) is None  # at max_memory
    assert growth_target(start, policy, 600 * MI) == Memory(600 * MI, 600 * MI, "in-place growth")
    assert growth_target(start, policy, 512 * MI) is None  # the largest node is the ceiling
    ratio = OOMPolicy(keep_request_ratio=True)
    half = growth_target(Memory(256 * MI, 512 * MI), ratio, None)
    assert half is not None and (half.request, half.limit) == (512 * MI, 1024 * MI)


def test_growths_round_trip_and_stop_after_one_not_in_force() -> None:
    from zenml_oom_orchestrator.policy import AttemptRecord, Growth, may_grow

    ok = Growth(1.0, 512 * MI, 512 * MI, 1024 * MI, 1024 * MI, "in_force", 0.8)
    late = Growth(2.0, 1024 * MI, 1024 * MI, 2048 * MI, 2048 * MI, "deferred", 10.0, "Node")
    record = AttemptRecord(1, 1024 * MI, 1024 * MI, growths=(ok, late))
    assert AttemptRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert (
        AttemptRecord.from_dict({"number": 1, "memory_request": 1, "memory_limit": 1}).growths == ()
    )
    policy = OOMPolicy(max_growths_per_attempt=2)
    assert may_grow(policy, ()) and may_grow(policy, (ok,))
    assert not may_grow(policy, (ok, ok)) and not may_grow(policy, (late,))
    assert not may_grow(OOMPolicy(grow_in_place=False), ())
    assert ok.describe() == "512Mi -> 1Gi: in force in 0.8 s"
    assert late.describe() == "1Gi -> 2Gi: deferred in 10.0 s (Node)"
