"""Exact Kubernetes resource quantities.

Kubernetes quantities (``resource.Quantity``) are decimal or binary fixed-point numbers:
``512Mi``, ``1.5Gi``, ``2G``, ``100m``, ``1e9``. Memory maths done in floats drifts
(``1.1 * 3`` is not ``3.3``), and a drifted limit can land a byte short of what the user
asked for, so everything here is a :class:`fractions.Fraction` until the last step, where
memory is rounded *up* to whole bytes.

Memory fields also accept ZenML's byte units (``2GiB``, ``500MB``, ``1024B``), because the
start memory may come from ``ResourceSettings(memory=...)``, which uses them.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

__all__ = [
    "MI",
    "QuantityError",
    "format_memory",
    "format_quantity",
    "is_whole_bytes",
    "memory_bytes",
    "parse_quantity",
    "round_up_mi",
]

KI = 1 << 10
MI = 1 << 20

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
# ZenML's ByteUnit values (zenml.config.resource_settings); integers only, as ZenML requires.
_ZENML_UNITS = {
    "B": 1,
    "KB": 10**3,
    "KiB": 1 << 10,
    "MB": 10**6,
    "MiB": 1 << 20,
    "GB": 10**9,
    "GiB": 1 << 30,
    "TB": 10**12,
    "TiB": 1 << 40,
    "PB": 10**15,
    "PiB": 1 << 50,
}

# The grammar of k8s.io/apimachinery/pkg/api/resource. The exponent alternative comes before
# the one-letter suffixes so that "1E3" is 1000 while a bare "1E" is one exa.
_QUANTITY_RE = re.compile(
    r"^(?P<sign>[+-]?)(?P<num>\d+(?:\.\d*)?|\.\d+)"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exp>[+-]?\d+)|(?P<dec>[numkMGTPE])?)$"
)
_ZENML_RE = re.compile(r"^(?P<num>\d+)(?P<unit>B|KB|KiB|MB|MiB|GB|GiB|TB|TiB|PB|PiB)$")

# Guards against "1e999999999" allocating a huge integer; no real quantity is near this.
_MAX_EXPONENT = 64

ACCEPTED_FORMS = (
    "a number with an optional suffix: binary Ki Mi Gi Ti Pi Ei, decimal n u m k M G T P E, "
    "or a decimal exponent (examples: '512Mi', '1.5Gi', '2G', '100m', '1e9', '2.5e-3')"
)
ACCEPTED_MEMORY_FORMS = (
    ACCEPTED_FORMS + ", or a ZenML byte unit (examples: '2GiB', '500MB', '1024B'); "
    "memory must be zero or more"
)


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity (or not a valid amount of memory)."""


def parse_quantity(value: str | int | Fraction | Decimal) -> Fraction:
    """Parse a Kubernetes quantity exactly.

    Integers, ``Fraction`` and ``Decimal`` pass through unchanged; floats are refused unless
    integral, because a float like ``0.1`` is not the number the user typed.
    """
    if isinstance(value, bool):  # bool is an int subclass; True is never meant as "1 byte"
        raise QuantityError(f"invalid quantity {value!r}: expected {ACCEPTED_FORMS}")
    if isinstance(value, int | Fraction):
        return Fraction(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise QuantityError(f"invalid quantity {value!r}: expected {ACCEPTED_FORMS}")
        return Fraction(value)
    if isinstance(value, float):
        if value.is_integer():
            return Fraction(int(value))
        raise QuantityError(
            f"invalid quantity {value!r}: floats are inexact; pass a string such as "
            f"'{value}' instead. Expected {ACCEPTED_FORMS}"
        )
    if not isinstance(value, str):
        raise QuantityError(
            f"invalid quantity {value!r} of type {type(value).__name__}: expected {ACCEPTED_FORMS}"
        )
    match = _QUANTITY_RE.match(value.strip())
    if match is None:
        raise QuantityError(f"invalid quantity {value!r}: expected {ACCEPTED_FORMS}")
    number = Fraction(Decimal(match["num"]))
    if match["bin"]:
        number *= _BINARY[match["bin"]]
    elif match["exp"] is not None:
        exponent = int(match["exp"])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(
                f"invalid quantity {value!r}: exponent {exponent} is out of range "
                f"(at most {_MAX_EXPONENT} either way)"
            )
        number *= Fraction(10) ** exponent
    else:
        number *= _DECIMAL[match["dec"] or ""]
    return -number if match["sign"] == "-" else number


def memory_bytes(value: str | int | Fraction | Decimal) -> int:
    """Return a memory quantity in whole bytes, rounded up (``"0.5"`` is 1 byte).

    Rounding up matches the kubelet, which cannot grant a fraction of a byte and must not
    grant less than was asked. Accepts ZenML byte units as well as Kubernetes quantities.
    """
    if isinstance(value, str):
        zenml = _ZENML_RE.match(value.strip())
        if zenml is not None:
            return int(zenml["num"]) * _ZENML_UNITS[zenml["unit"]]
    try:
        amount = parse_quantity(value)
    except QuantityError:
        raise QuantityError(f"invalid memory {value!r}: expected {ACCEPTED_MEMORY_FORMS}") from None
    if amount < 0:
        raise QuantityError(f"invalid memory {value!r}: memory cannot be negative")
    return math.ceil(amount)


def is_whole_bytes(value: str) -> bool:
    """Whether a memory string names a whole number of bytes ("100m" is a tenth of one).

    Kubernetes accepts such a request and rounds it up; a policy setting refuses it, because
    nobody means 0.1 byte. Raises :class:`QuantityError` for a string that is not memory.
    """
    if _ZENML_RE.match(value.strip()):
        return True
    try:
        return parse_quantity(value).denominator == 1
    except QuantityError:
        raise QuantityError(f"invalid memory {value!r}: expected {ACCEPTED_MEMORY_FORMS}") from None


def round_up_mi(n_bytes: int | Fraction) -> int:
    """Round a byte count up to a whole number of mebibytes (returned in bytes)."""
    return math.ceil(Fraction(n_bytes) / MI) * MI


def format_memory(n_bytes: int) -> str:
    """Format bytes canonically: ``1536Mi``, ``2Gi``, ``1500k``, ``1001``.

    The largest binary suffix that leaves an integer wins, because memory sizes are
    usually binary; otherwise the largest decimal suffix that leaves an integer; otherwise
    plain bytes. The result always parses back to exactly ``n_bytes``.
    """
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int):
        raise QuantityError(f"invalid byte count {n_bytes!r}: expected an int")
    if n_bytes < 0:
        raise QuantityError(f"invalid byte count {n_bytes}: memory cannot be negative")
    if n_bytes == 0:
        return "0"
    for suffix, size in reversed(_BINARY.items()):
        if n_bytes % size == 0:
            return f"{n_bytes // size}{suffix}"
    return _format_decimal_integer(n_bytes)


def format_quantity(value: str | int | Fraction | Decimal) -> str:
    """Format any quantity canonically with decimal suffixes (``1500m``, ``2k``, ``3``).

    Integers use the largest decimal suffix that leaves an integer; fractions use ``m``,
    ``u`` or ``n``. A value finer than a nanounit (``1/3``) has no exact form and raises.
    """
    amount = parse_quantity(value)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount.denominator == 1:
        return sign + _format_decimal_integer(amount.numerator)
    for suffix in ("m", "u", "n"):
        scaled = amount / _DECIMAL[suffix]
        if scaled.denominator == 1:
            return f"{sign}{scaled.numerator}{suffix}"
    raise QuantityError(
        f"quantity {value!r} has no exact Kubernetes form: it is finer than 1n (10^-9)"
    )


def _format_decimal_integer(n: int) -> str:
    if n == 0:
        return "0"
    for suffix in ("E", "P", "T", "G", "M", "k"):
        size = _DECIMAL[suffix].numerator
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)
