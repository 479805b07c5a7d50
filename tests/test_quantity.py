"""Exact Kubernetes quantities: every suffix, canonical formatting, round trips."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zenml_oom_orchestrator.quantity import (
    MI,
    QuantityError,
    format_memory,
    format_quantity,
    memory_bytes,
    parse_quantity,
    round_up_mi,
)

KI, GI = 1 << 10, 1 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Fraction(0)),
        ("1", Fraction(1)),
        ("1Ki", Fraction(KI)),
        ("1Mi", Fraction(MI)),
        ("1Gi", Fraction(GI)),
        ("1Ti", Fraction(1 << 40)),
        ("1Pi", Fraction(1 << 50)),
        ("1Ei", Fraction(1 << 60)),
        ("1.5Gi", Fraction(3 * GI, 2)),
        ("0.5Mi", Fraction(MI, 2)),
        ("1k", Fraction(1000)),
        ("1M", Fraction(10**6)),
        ("2G", Fraction(2 * 10**9)),
        ("1T", Fraction(10**12)),
        ("1P", Fraction(10**15)),
        ("1E", Fraction(10**18)),  # a bare E is exa ...
        ("1E3", Fraction(1000)),  # ... an E with digits is an exponent
        ("1e3", Fraction(1000)),
        ("1.5e3", Fraction(1500)),
        ("1e+3", Fraction(1000)),
        ("25e-2", Fraction(1, 4)),
        ("100m", Fraction(1, 10)),
        ("1500m", Fraction(3, 2)),
        ("5u", Fraction(5, 10**6)),
        ("7n", Fraction(7, 10**9)),
        (".5", Fraction(1, 2)),
        ("5.", Fraction(5)),
        ("+1Ki", Fraction(KI)),
        ("-1k", Fraction(-1000)),
        ("0.1", Fraction(1, 10)),  # exact, not 0.1000000000000000055...
        (" 1Gi ", Fraction(GI)),
        (1024, Fraction(1024)),
        (Decimal("1.25"), Fraction(5, 4)),
        (Fraction(3, 2), Fraction(3, 2)),
        (2.0, Fraction(2)),  # an integral float is exact
    ],
)
def test_parse_quantity(text: str | int, expected: Fraction) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "bad",
    ["", "Gi", "1GB", "1gi", "1 Gi", "1.2.3", "1e", "1Ki3", "abc", "1e99999", "--1", "1KiB"],
)
def test_parse_quantity_rejects(bad: str) -> None:
    with pytest.raises(QuantityError) as err:
        parse_quantity(bad)
    # The message names the value and the accepted forms.
    assert repr(bad) in str(err.value)
    assert "Ki Mi Gi" in str(err.value) or "exponent" in str(err.value)


@pytest.mark.parametrize("bad", [True, 0.1, None, [1], float("nan"), Decimal("Infinity")])
def test_parse_quantity_rejects_non_strings(bad: object) -> None:
    with pytest.raises(QuantityError, match="invalid quantity"):
        parse_quantity(bad)  # type: ignore[arg-type]


def test_quantity_error_is_a_value_error() -> None:
    assert issubclass(QuantityError, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1Gi", GI),
        ("0.5", 1),  # rounded up, never down
        ("100m", 1),
        ("1.5Mi", 3 * MI // 2),
        ("2GiB", 2 * GI),  # ZenML's ResourceSettings units
        ("500MB", 500 * 10**6),
        ("1024B", 1024),
        ("1KiB", KI),
        (0, 0),
    ],
)
def test_memory_bytes(text: str | int, expected: int) -> None:
    assert memory_bytes(text) == expected


@pytest.mark.parametrize("bad", ["-1Gi", "1.5GiB", "lots", "1 GB"])
def test_memory_bytes_rejects(bad: str) -> None:
    with pytest.raises(QuantityError) as err:
        memory_bytes(bad)
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (1, "1"),
        (1000, "1k"),
        (1001, "1001"),
        (1024, "1Ki"),
        (1536 * MI, "1536Mi"),
        (2 * GI, "2Gi"),
        (1500 * 1000, "1500k"),
        (10**9, "1G"),
        (3 * 10**9 + 1, "3000000001"),
        (1 << 60, "1Ei"),
        (5 << 60, "5Ei"),
    ],
)
def test_format_memory(n: int, text: str) -> None:
    assert format_memory(n) == text
    assert memory_bytes(text) == n


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_format_memory_rejects(bad: object) -> None:
    with pytest.raises(QuantityError):
        format_memory(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [("1.5", "1500m"), ("0.1", "100m"), ("2000", "2k"), ("5u", "5u"), ("-250m", "-250m")],
)
def test_format_quantity(value: str, text: str) -> None:
    assert format_quantity(value) == text


def test_format_quantity_refuses_inexact() -> None:
    with pytest.raises(QuantityError, match="no exact"):
        format_quantity(Fraction(1, 3))


@pytest.mark.parametrize(
    ("n", "expected"), [(0, 0), (1, MI), (MI, MI), (MI + 1, 2 * MI), (Fraction(MI, 2), MI)]
)
def test_round_up_mi(n: int, expected: int) -> None:
    assert round_up_mi(n) == expected


# --- Properties ---------------------------------------------------------------------------

byte_counts = st.one_of(
    st.integers(min_value=0, max_value=1 << 70),
    st.integers(min_value=0, max_value=1 << 20).map(lambda k: k * MI),
    st.integers(min_value=0, max_value=10**6).map(lambda k: k * 1000),
)


@given(byte_counts)
def test_format_memory_round_trips(n: int) -> None:
    text = format_memory(n)
    assert memory_bytes(text) == n
    assert parse_quantity(text) == n
    assert format_memory(memory_bytes(text)) == text  # canonical: formatting is a fixpoint


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=9, min_value=-(10**12), max_value=10**12
    )
)
def test_format_quantity_round_trips(value: Decimal) -> None:
    assert parse_quantity(format_quantity(value)) == Fraction(value)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["", "k", "M", "G", "Ki", "Mi", "Gi", "m"]),
    st.integers(min_value=0, max_value=999),
)
def test_memory_bytes_is_ceiling_of_exact_value(whole: int, suffix: str, frac: int) -> None:
    text = f"{whole}.{frac:03d}{suffix}"
    exact = parse_quantity(text)
    assert memory_bytes(text) - 1 < exact <= memory_bytes(text)


@given(st.integers(min_value=0, max_value=1 << 50))
def test_round_up_mi_is_least_mi_multiple_at_or_above(n: int) -> None:
    r = round_up_mi(n)
    assert r % MI == 0 and n <= r < n + MI
