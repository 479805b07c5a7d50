"""Build one attempt's Pod from a step's pod template.

Why one bare Pod per attempt, not a Job with backoffLimit 0:
- the decision needs the container's termination reason, and a Pod is where it lives; a Job
  adds a second controller between us and that evidence, one that can delete pods (TTL,
  activeDeadlineSeconds) before we read them;
- a Job controller replaces a pod that vanishes with its node, i.e. it retries on its own at
  the same memory unless every rule of podFailurePolicy is right, which is exactly the decision
  we want to own (the podFailurePolicy cannot match OOMKilled anyway, KEP-3329);
- one object per attempt halves the objects the watch carries and keeps names deterministic.
A Job's only extra, TTL cleanup, comes from the ownerReference: deleting the supervisor's own
Pod/Job (or its TTL) cascades to every attempt.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from zenml_oom_orchestrator.quantity import format_memory
from zenml_oom_orchestrator.supervisor import naming

_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generateName", "selfLink")


def template_dict(template: Any) -> dict[str, Any]:
    """A pod template (``V1Pod`` or the API's JSON dict) as a fresh JSON dict."""
    if isinstance(template, dict):
        return copy.deepcopy(template)
    from kubernetes.client import ApiClient

    data = ApiClient().sanitize_for_serialization(template)
    if not isinstance(data, dict):
        raise TypeError(f"pod template must be a V1Pod or dict, got {type(template).__name__}")
    return data


def main_container_of(pod: dict[str, Any], main_container: str) -> dict[str, Any]:
    containers = (pod.get("spec") or {}).get("containers") or []
    for container in containers:
        if container.get("name") == main_container:
            return container  # type: ignore[no-any-return]
    names = [c.get("name") for c in containers]
    raise ValueError(f"pod template has no container {main_container!r} (containers: {names})")


def template_memory(template: dict[str, Any], main_container: str) -> tuple[str | None, str | None]:
    """(request, limit) of the main container as written in the template, if any."""
    resources = main_container_of(template, main_container).get("resources") or {}
    return (resources.get("requests") or {}).get("memory"), (resources.get("limits") or {}).get(
        "memory"
    )


def build_attempt_pod(
    template: dict[str, Any],
    *,
    name: str,
    namespace: str,
    run_id: str,
    step_name: str,
    attempt: int,
    memory_request: int,
    memory_limit: int,
    main_container: str = "main",
    previous_outcome: dict[str, Any] | None = None,
    previous_result: str | None = None,
    owner: dict[str, Any] | None = None,
    started_at: float | None = None,
) -> dict[str, Any]:
    """The Pod manifest for `attempt` of `step_name`, memory set from the policy's decision."""
    pod = template_dict(template)
    pod.pop("status", None)
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    meta = pod.setdefault("metadata", {}) or {}
    pod["metadata"] = meta
    for field in _SERVER_FIELDS:
        meta.pop(field, None)
    meta["name"], meta["namespace"] = name, namespace
    meta["labels"] = {
        **(meta.get("labels") or {}),
        naming.LABEL_RUN: naming.label_value(run_id),
        naming.LABEL_STEP: naming.label_value(step_name),
        naming.LABEL_ATTEMPT: str(attempt),
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
    }
    request, limit = format_memory(memory_request), format_memory(memory_limit)
    annotations = {
        **(meta.get("annotations") or {}),
        # Labels are truncated for long names; the exact step name lives here.
        naming.ANN_STEP: step_name,
        naming.ANN_ZENML_STEP: step_name,
        naming.ANN_ATTEMPT: str(attempt),
        naming.ANN_MEMORY_REQUEST: request,
        naming.ANN_MEMORY_LIMIT: limit,
    }
    if previous_outcome is not None:
        annotations[naming.ANN_PREVIOUS_OUTCOME] = json.dumps(previous_outcome, sort_keys=True)
    if previous_result is not None:
        annotations[naming.ANN_PREVIOUS_RESULT] = previous_result
    if started_at is not None:
        annotations[naming.ANN_STARTED_AT] = f"{started_at:.3f}"
    meta["annotations"] = annotations
    if owner is not None:
        meta["ownerReferences"] = [owner]

    spec = pod.setdefault("spec", {})
    # We decide every retry; the kubelet must never restart the container in place.
    spec["restartPolicy"] = "Never"
    main = main_container_of(pod, main_container)
    resources = main.setdefault("resources", {}) or {}
    main["resources"] = resources
    resources["requests"] = {**(resources.get("requests") or {}), "memory": request}
    resources["limits"] = {**(resources.get("limits") or {}), "memory": limit}
    env = [e for e in main.get("env") or [] if not str(e.get("name", "")).startswith("OOM_")]
    env += [
        {"name": "OOM_ATTEMPT", "value": str(attempt)},
        {"name": "OOM_MEMORY_LIMIT", "value": limit},
    ]
    main["env"] = env
    return pod


def owner_reference(owner: Any) -> dict[str, Any] | None:
    """A ``V1OwnerReference`` or dict as the API's JSON dict (controller=False: we are not
    the owner's controller, we only want the cascade)."""
    if owner is None:
        return None
    ref = template_dict(owner)
    ref.setdefault("blockOwnerDeletion", False)
    return ref
