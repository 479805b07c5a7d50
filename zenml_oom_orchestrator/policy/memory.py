"""Memory maths: where the first attempt starts and how the next one grows.

Growth starts from the memory the last attempt *actually had* (not from the retry count, the
mistake Argo users hit in #12849): ``max(last x multiplier, last + increment)``, rounded up to
whole Mi, then clamped to the ceiling (the smaller of ``max_memory`` and the largest node's
allocatable memory).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..quantity import QuantityError, format_memory, memory_bytes, round_up_mi
from .settings import DEFAULT_MEMORY, OOMPolicy

__all__ = [
    "Memory",
    "PolicyError",
    "ceiling",
    "escalate_after_eviction",
    "escalate_after_oom",
    "grow",
    "start_memory",
]


class PolicyError(ValueError):
    """The policy and the step's own memory settings do not fit together."""


@dataclass(frozen=True)
class Memory:
    """A container's memory request and limit, in bytes."""

    request: int
    limit: int
    source: str = ""  # where it came from, for messages: "initial_memory", "default", ...

    def __post_init__(self) -> None:
        if not 0 < self.request <= self.limit:
            raise PolicyError(
                f"memory request {self.request} and limit {self.limit} bytes: need "
                "0 < request <= limit"
            )

    def __str__(self) -> str:
        if self.request == self.limit:
            return format_memory(self.limit)
        return f"{format_memory(self.limit)} (request {format_memory(self.request)})"


def grow(previous: int, multiplier: Fraction, increment: int) -> int:
    """``max(previous x multiplier, previous + increment)`` rounded up to whole Mi."""
    return round_up_mi(max(previous * multiplier, Fraction(previous + increment)))


def ceiling(max_memory: int | None, largest_node_memory: int | None) -> int | None:
    """The most memory any attempt may get; ``None`` when nothing bounds it."""
    bounds = [b for b in (max_memory, largest_node_memory) if b is not None]
    return min(bounds) if bounds else None


def _clamp(n: int, top: int | None) -> int:
    return n if top is None else min(n, top)


def escalate_after_oom(last: Memory, policy: OOMPolicy, top: int | None) -> Memory:
    """The next attempt's memory after the last one hit its limit."""
    limit = _clamp(grow(last.limit, policy.multiplier, policy.memory_increment_bytes), top)
    if not policy.keep_request_ratio:
        return Memory(request=limit, limit=limit, source="oom escalation")
    ratio = Fraction(last.request, last.limit)
    request = min(limit, max(last.request, round_up_mi(limit * ratio)))
    return Memory(request=request, limit=limit, source="oom escalation")


def escalate_after_eviction(
    last: Memory, policy: OOMPolicy, top: int | None, used: int | None = None
) -> Memory:
    """The next attempt's memory after a node-pressure eviction.

    The kubelet evicts pods using more than their *request* first, so the request is what
    must grow: to the grown request, or to what the container was seen using, whichever is
    more. The limit follows only as far as it must (or keeps the ratio, if asked).
    """
    grown = grow(last.request, policy.multiplier, policy.memory_increment_bytes)
    request = _clamp(max(grown, round_up_mi(used or 0)), top)
    if policy.keep_request_ratio:
        by_ratio = round_up_mi(request * Fraction(last.limit, last.request))
        limit = _clamp(max(last.limit, by_ratio), top)
    else:
        limit = _clamp(max(last.limit, request), top)
    return Memory(request=request, limit=max(limit, request), source="eviction escalation")


def _resources_memory(pod_resources: Any) -> tuple[int | None, int | None]:
    """(request, limit) from ``{"requests": {"memory": ..}, "limits": {..}}`` or a model."""
    if pod_resources is None:
        return None, None
    out: list[int | None] = []
    for key in ("requests", "limits"):
        section = (
            pod_resources.get(key)
            if isinstance(pod_resources, Mapping)
            else getattr(pod_resources, key, None)
        )
        value = section.get("memory") if isinstance(section, Mapping) else None
        try:
            out.append(None if value is None else memory_bytes(value))
        except QuantityError as err:
            raise PolicyError(f"pod settings resources.{key}.memory={value!r}: {err}") from None
    return out[0], out[1]


def start_memory(
    policy: OOMPolicy,
    resource_memory: str | None = None,
    pod_resources: Any = None,
    largest_node_memory: int | None = None,
) -> Memory:
    """The first attempt's memory.

    Order: ``policy.initial_memory``, then ZenML's ``ResourceSettings(memory=...)`` (e.g.
    ``"2GiB"``), then the pod settings' ``resources`` (``{"requests": {"memory": ...},
    "limits": {...}}``), then :data:`DEFAULT_MEMORY`. Pod settings' requests and limits are
    used as written; a single size becomes both request and limit, unless
    ``keep_request_ratio`` and the pod settings give a ratio to keep.

    Raises:
        PolicyError: the start is above ``max_memory`` or no node can hold it.
    """
    pod_request, pod_limit = _resources_memory(pod_resources)
    if pod_request is not None and pod_limit is not None and pod_request > pod_limit:
        raise PolicyError(
            f"pod settings ask for memory request {format_memory(pod_request)} above limit "
            f"{format_memory(pod_limit)}; make the request at most the limit"
        )
    if policy.initial_memory_bytes is not None:
        size, source = policy.initial_memory_bytes, f"initial_memory={policy.initial_memory!r}"
    elif resource_memory:
        try:
            size = memory_bytes(resource_memory)
        except QuantityError as err:
            raise PolicyError(f"ResourceSettings(memory={resource_memory!r}): {err}") from None
        source = f"ResourceSettings(memory={resource_memory!r})"
    elif pod_request is not None or pod_limit is not None:
        request = pod_request if pod_request is not None else pod_limit
        limit = pod_limit if pod_limit is not None else pod_request
        assert request is not None and limit is not None
        return _checked(
            Memory(request, limit, "pod settings resources"), policy, largest_node_memory
        )
    else:
        size, source = memory_bytes(DEFAULT_MEMORY), f"the default {DEFAULT_MEMORY}"
    request = size
    if policy.keep_request_ratio and pod_request and pod_limit:
        request = max(1, math.ceil(size * Fraction(pod_request, pod_limit)))
    return _checked(Memory(request, size, source), policy, largest_node_memory)


def _checked(start: Memory, policy: OOMPolicy, largest_node_memory: int | None) -> Memory:
    cap = policy.max_memory_bytes
    if cap is not None and start.limit > cap:
        raise PolicyError(
            f"the step starts with {start} from {start.source}, above max_memory="
            f"{policy.max_memory!r}; raise max_memory to at least {format_memory(start.limit)} "
            "or lower the step's memory"
        )
    if largest_node_memory is not None and start.request > largest_node_memory:
        raise PolicyError(
            f"the step starts with {start} from {start.source}, but the largest node has "
            f"{format_memory(largest_node_memory)} allocatable; lower the step's memory or add "
            "a bigger node"
        )
    return start
