"""In-place pod resize on the node, as kubelet 1.35 does it (checked on the real tier).

When a pod's spec asks for other container resources than the kubelet allocated, the pod
worker admits the resize or not:
- **Infeasible** when the pod's new request exceeds what the node could ever hold (its
  allocatable plus the 100Mi hard-eviction threshold, as the kubelet's absolute allocatable):
  condition `PodResizePending` reason `Infeasible`, message `Node didn't have enough capacity:
  memory, requested: N, capacity: C`, a Warning Event `ResizeInfeasible`.
- **Deferred** when it would fit but the other pods on the node hold the room now:
  `PodResizePending` reason `Deferred`, `Node didn't have enough resource: memory, requested:
  N, used: U, capacity: C` (allocatable), a Warning `ResizeDeferred`; retried whenever a pod of
  the node ends or is deleted (the condition's lastProbeTime and message move, its
  lastTransitionTime and the single Event stay).
- otherwise **accepted**: one status write with `allocatedResources` already new,
  `resources` still old and `PodResizeInProgress` True (Event `ResizeStarted`); the running
  container's cgroup limit is changed in place (no restart); then a write with `resources`
  new and no resize condition (Event `ResizeCompleted`).
A spec back at the allocated resources drops a pending condition at once. Resize conditions
come first in `status.conditions` and carry `lastProbeTime` and `observedGeneration`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from ..validation import parse_quantity
from .events import now
from .podresources import CPU, MEMORY, TERMINAL_PHASES, memory_limit_bytes, pod_requests
from .status import ContainerRecord

# The kubelet's default evictionHard memory.available: its "absolute" allocatable adds it back.
EVICTION_HARD_MEMORY = 100 << 20
PENDING, IN_PROGRESS = "PodResizePending", "PodResizeInProgress"


def normalized(resources: Any) -> dict[str, Any]:
    """`resources` as the API server stores them (requests defaulted to limits), only the
    limits/requests kinds that are set."""
    res = resources if isinstance(resources, Mapping) else {}
    out: dict[str, Any] = {}
    for kind in ("limits", "requests"):
        if res.get(kind):
            out[kind] = dict(res[kind])
    for name, value in (out.get("limits") or {}).items():
        out.setdefault("requests", {}).setdefault(name, value)
    return out


def init_allocation(rec: ContainerRecord) -> None:
    rec.allocated = normalized(rec.spec.get("resources"))


def _quantity(value: Fraction) -> int:
    return int(value) if value.denominator == 1 else int(value) + 1


def _allocated_pod(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod with each container's resources as its kubelet allocated them."""
    statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    containers = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        alloc = (statuses.get(c.get("name")) or {}).get("allocatedResources")
        containers.append({**c, "resources": {"requests": alloc}} if alloc else c)
    return {"spec": {**(pod.get("spec") or {}), "containers": containers}}


def _verdict(worker: Any, wanted: Mapping[str, Any]) -> tuple[str, str] | None:
    k = worker.kubelet
    spec = worker.pod.get("spec") or {}
    containers = [
        {**c, "resources": wanted.get(c["name"], {})} for c in spec.get("containers") or []
    ]
    need = pod_requests({"spec": {**spec, "containers": containers}})
    allocatable = {CPU: parse_quantity(k.cpus) * 1000, MEMORY: parse_quantity(k.memory)}
    need = {CPU: need[CPU] * 1000, MEMORY: need[MEMORY]}
    absolute = {CPU: allocatable[CPU], MEMORY: allocatable[MEMORY] + EVICTION_HARD_MEMORY}
    for r in (CPU, MEMORY):
        if need[r] > absolute[r]:
            return "Infeasible", (
                f"Node didn't have enough capacity: {r}, requested: {_quantity(need[r])}, "
                f"capacity: {_quantity(absolute[r])}"
            )
    used = {CPU: Fraction(0), MEMORY: Fraction(0)}
    for pod in k.store.list_shared("pods", field_selector=f"spec.nodeName={k.node_name}")[0]:
        if pod["metadata"]["uid"] == worker.uid:
            continue
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            continue
        other = pod_requests(_allocated_pod(pod))
        used[CPU] += other[CPU] * 1000
        used[MEMORY] += other[MEMORY]
    for r in (CPU, MEMORY):
        if need[r] + used[r] > allocatable[r]:
            return "Deferred", (
                f"Node didn't have enough resource: {r}, requested: {_quantity(need[r])}, "
                f"used: {_quantity(used[r])}, capacity: {_quantity(allocatable[r])}"
            )
    return None


def _event_message(wanted: Mapping[str, Any], generation: int, error: str | None) -> str:
    body: dict[str, Any] = {
        "containers": [
            {"name": name, "resources": json.loads(json.dumps(res, sort_keys=True))}
            for name, res in wanted.items()
        ],
        "generation": generation,
    }
    if error is not None:
        body["error"] = error
    return json.dumps(body, separators=(",", ":"))


def _condition(
    type_: str, gen: int, old: Mapping[str, Any] | None, reason: str = "", message: str = ""
) -> dict[str, Any]:
    stamp = now()
    same = old is not None and old.get("reason", "") == reason
    cond: dict[str, Any] = {
        "type": type_,
        "status": "True",
        "lastProbeTime": stamp,
        "lastTransitionTime": old["lastTransitionTime"] if same and old else stamp,
        "observedGeneration": gen,
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def sync_resize(worker: Any, retry: bool = False) -> None:
    """Admit, defer or refuse what the pod's spec now asks for; apply an admitted resize to
    the running containers' cgroups. The worker writes the status after this returns. A
    pending verdict that did not change is rewritten only on a `retry` (its lastProbeTime)."""
    if worker._kill_at is not None or worker._override is not None:
        return
    if worker.computed_phase() in TERMINAL_PHASES:
        return
    meta, spec = worker.pod["metadata"], worker.pod.get("spec") or {}
    gen = int(meta.get("generation") or 1)
    wanted = {c["name"]: normalized(c.get("resources")) for c in spec.get("containers") or []}
    changed = [rec for rec in worker.main if wanted.get(rec.name, {}) != rec.allocated]
    old = {c["type"]: c for c in worker.resize_conditions}
    if not changed:
        worker.resize_conditions = [c for c in worker.resize_conditions if c["type"] != PENDING]
        return
    verdict = _verdict(worker, wanted)
    k = worker.kubelet
    if verdict is not None:
        reason, message = verdict
        before = old.get(PENDING) or {}
        same = (before.get("reason"), before.get("message"), before.get("observedGeneration"))
        if retry or same != (reason, message, gen):
            worker.resize_conditions = [_condition(PENDING, gen, before or None, reason, message)]
        if worker.resize_event != (reason, gen):
            worker.resize_event = (reason, gen)
            text = _event_message(wanted, gen, message)
            k.record(worker.pod, f"Resize{reason}", f"Pod resize {reason}: {text}", "Warning")
        return
    for rec in changed:
        rec.allocated = wanted[rec.name]
        rec.spec = {**rec.spec, "resources": wanted[rec.name]}  # a restart starts with it
    worker.resize_conditions = [_condition(IN_PROGRESS, gen, old.get(IN_PROGRESS))]
    k.record(
        worker.pod, "ResizeStarted", f"Pod resize started: {_event_message(wanted, gen, None)}"
    )
    worker.write_status()  # allocated new, resources still old, PodResizeInProgress
    errors = []
    for rec in changed:
        if rec.proc is None:
            continue  # applied when it starts
        if rec.cgroup is not None:
            try:
                k.backend.set_memory_limit(rec.cgroup, memory_limit_bytes(rec.spec))
            except OSError as e:
                errors.append(f"{rec.name}: {e}")
                continue
        rec.actual = rec.allocated
    if errors:
        message = "; ".join(errors)
        worker.resize_conditions = [
            _condition(IN_PROGRESS, gen, old.get(IN_PROGRESS), "Error", message)
        ]
        return
    worker.resize_conditions = []
    worker.resize_event = None
    k.record(
        worker.pod, "ResizeCompleted", f"Pod resize completed: {_event_message(wanted, gen, None)}"
    )


def with_generation(conditions: list[dict[str, Any]], gen: int) -> list[dict[str, Any]]:
    """kubelet 1.35 stamps every pod condition it writes with the generation it acted on."""
    return [{**c, "observedGeneration": gen} for c in conditions]
