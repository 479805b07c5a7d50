import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zenml_oom_orchestrator.supervisor import naming

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_attempt_name_is_deterministic_and_readable() -> None:
    a = naming.attempt_name("run-1", "train_model", 2)
    assert a == naming.attempt_name("run-1", "train_model", 2)
    assert a.startswith("train-model-") and a.endswith("-a2")
    assert a != naming.attempt_name("run-2", "train_model", 2)
    assert a != naming.attempt_name("run-1", "train_model", 3)


def test_long_names_fit_and_do_not_collide() -> None:
    long = "x" * 300
    n1 = naming.attempt_name("r" * 100, long + "1", 1000, prefix="p" * 80)
    n2 = naming.attempt_name("r" * 100, long + "2", 1000, prefix="p" * 80)
    assert len(n1) <= 63 and len(n2) <= 63 and n1 != n2
    assert DNS_LABEL.match(n1)


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        naming.attempt_name("r", "s", 0)


@given(st.text(max_size=200), st.text(max_size=200), st.integers(1, 10_000), st.text(max_size=80))
def test_attempt_name_always_valid(run: str, step: str, attempt: int, prefix: str) -> None:
    name = naming.attempt_name(run, step, attempt, prefix=prefix)
    assert len(name) <= 63 and DNS_LABEL.match(name)


@given(st.text(max_size=200))
def test_label_value_always_valid(value: str) -> None:
    out = naming.label_value(value)
    assert len(out) <= 63 and LABEL_VALUE.match(out)


def test_label_value_keeps_valid_values() -> None:
    uuid = "0b6c1a9e-52f4-4c7e-9d0a-3f1b2c3d4e5f"
    assert naming.label_value(uuid) == uuid
    assert naming.label_value("Step_1.a") == "Step_1.a"
    long = "a" * 64
    assert naming.label_value(long) != naming.label_value("a" * 65)
    assert naming.run_selector(uuid) == f"run_id={uuid},app.kubernetes.io/managed-by=oom-supervisor"


def test_event_name() -> None:
    assert naming.event_name("pod-a1", "OOMRetry") == "pod-a1.oomretry"
