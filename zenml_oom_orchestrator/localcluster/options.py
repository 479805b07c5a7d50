"""Command-line options of the local cluster, checked before anything starts.

Each check names the option, the value and what is accepted, so `zenml-oom cluster up` and
`zenml-oom demo` refuse a bad value in one line (exit 2) instead of failing half-way through
starting a cluster or a ZenML server.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import click

from .validation import parse_quantity

# A node smaller than this cannot run one Python pod next to the orchestrator's; larger than
# this is no machine's memory (the node's memory is what the scheduler hands out).
MIN_NODE_MEMORY = 256 << 20
MAX_NODE_MEMORY = 64 << 40
MAX_CPUS = 1024
MEMORY_ACCEPTED = (
    "a whole number of bytes from 256Mi to 64Ti as a Kubernetes quantity, e.g. 8Gi, 6144Mi or 8G"
)
CPUS_ACCEPTED = f"a number of CPUs above 0 and at most {MAX_CPUS}, in steps of 0.001, e.g. 2 or 1.5"


def node_memory_bytes(value: str) -> int:
    """The node's memory in bytes; ValueError saying what is accepted when it is not one."""
    try:
        amount = parse_quantity(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a Kubernetes quantity; use {MEMORY_ACCEPTED}") from None
    if amount.denominator != 1:
        raise ValueError(
            f"{value!r} is {float(amount):g} bytes, not a whole number ('m' means 1/1000: "
            f"did you mean Mi or M?); use {MEMORY_ACCEPTED}"
        )
    if not MIN_NODE_MEMORY <= amount <= MAX_NODE_MEMORY:
        size = "negative" if amount < 0 else "zero" if amount == 0 else f"{amount} bytes"
        raise ValueError(f"{value!r} is {size}, out of range; use {MEMORY_ACCEPTED}")
    return int(amount)


def check_memory(ctx: click.Context | None, param: click.Parameter | None, value: str) -> str:
    """Click callback for a node memory option (`--memory`)."""
    try:
        node_memory_bytes(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    return value.strip()


def check_cpus(ctx: click.Context | None, param: click.Parameter | None, value: str) -> float:
    """Click callback for `--cpus`: finite, positive, whole milli-CPUs (a Kubernetes quantity)."""
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise click.BadParameter(f"{value!r} is not a number; use {CPUS_ACCEPTED}") from None
    if not math.isfinite(cpus):
        raise click.BadParameter(f"{value!r} is not a finite number; use {CPUS_ACCEPTED}")
    if not 0 < cpus <= MAX_CPUS:
        raise click.BadParameter(f"{value!r} is out of range; use {CPUS_ACCEPTED}")
    if (Fraction(str(cpus)) * 1000).denominator != 1:
        raise click.BadParameter(f"{value!r} is finer than 0.001 CPU; use {CPUS_ACCEPTED}")
    return cpus


def check_writable_file(path: Path) -> None:
    """A file we may create at `path`: its nearest existing folder is a writable directory."""
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory; give a file path")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot create {path}: {parent} is not a writable directory")
