"""The stand-in for a step's real work in these examples: it needs a known amount of memory."""

from __future__ import annotations

import time

MiB = 1024 * 1024


def use_memory(mib: int, hold_seconds: float = 0.0) -> int:
    """Allocate ``mib`` MiB, touch every page (so it is resident and counts against the
    container's limit), hold it for ``hold_seconds``, and return ``mib``."""
    block = bytearray(mib * MiB)
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))  # one write per page, in C
    time.sleep(hold_seconds)
    return len(block) // MiB
