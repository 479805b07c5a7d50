"""Resource maths shared by the scheduler and the kubelet (requests, limits)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from ..validation import parse_quantity

MEMORY = "memory"
CPU = "cpu"
TERMINAL_PHASES = ("Succeeded", "Failed")


def _quantity(value: Any) -> Fraction | None:
    try:
        return parse_quantity(value)
    except ValueError:
        return None  # the API server refuses these; a bad one here just counts as unset


def container_resource(container: Mapping[str, Any], kind: str, name: str) -> Fraction | None:
    """`resources.<kind>.<name>` of a container; a request defaults to the limit like the API."""
    res = container.get("resources") or {}
    value = (res.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (res.get("limits") or {}).get(name)
    return None if value is None else _quantity(value)


def memory_limit_bytes(container: Mapping[str, Any]) -> int | None:
    """The memory cgroup limit for a container, in whole bytes (None: unlimited)."""
    q = container_resource(container, "limits", MEMORY)
    return None if q is None else math.ceil(q)


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Fraction]:
    """The pod's effective requests as kube-scheduler computes them.

    max(sum over app containers, max over init containers) + pod overhead, per resource.
    """
    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = {}
    for name in (MEMORY, CPU):
        app = sum(
            (_resized_request(pod, c, name) or Fraction(0)) for c in spec.get("containers") or []
        )
        init = max(
            (container_resource(c, "requests", name) or Fraction(0))
            for c in [*(spec.get("initContainers") or []), {}]
        )
        overhead = _quantity((spec.get("overhead") or {}).get(name, 0)) or Fraction(0)
        total[name] = max(Fraction(app), init) + overhead
    return total


def resize_infeasible(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "PodResizePending" and c.get("reason") == "Infeasible"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _resized_request(
    pod: Mapping[str, Any], container: Mapping[str, Any], name: str
) -> Fraction | None:
    """A container's request as kube-scheduler 1.35 counts it during an in-place resize: the
    larger of the spec's and the running container's (`status.containerStatuses[].resources`),
    or only the running one's while the resize is Infeasible."""
    wanted = container_resource(container, "requests", name)
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    actual_res = next(
        (s.get("resources") for s in statuses if s.get("name") == container.get("name")), None
    )
    if not actual_res:
        return wanted
    actual = _quantity((actual_res.get("requests") or {}).get(name))
    if resize_infeasible(pod):
        return actual
    if actual is None:
        return wanted
    return actual if wanted is None else max(wanted, actual)


def sum_requests(pods: Iterable[Mapping[str, Any]]) -> dict[str, Fraction]:
    """Requests of the pods that still hold their node's resources (non-terminal ones)."""
    total = {MEMORY: Fraction(0), CPU: Fraction(0)}
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            continue
        for name, value in pod_requests(pod).items():
            total[name] += value
    return total


def format_bytes(value: float | Fraction | int) -> str:
    """A human quantity in Ki/Mi/Gi, as the eviction manager prints usage ("612Mi")."""
    n = float(value)
    for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= size:
            return f"{round(n / size)}{suffix}"
    return str(int(n))


def format_cpu(value: Fraction) -> str:
    """CPU as a Kubernetes quantity: whole cores, else millicores ("500m")."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{math.ceil(value * 1000)}m"
