"""Defaulting the API server applies before validation (what clients see come back)."""

from __future__ import annotations

import base64
from typing import Any

from .jobspec import default_job
from .validation import parse_quantity


def _default_pod_spec(spec: dict[str, Any], restart_policy: str = "Always") -> None:
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = str(c.get("image") or "")
            tagless = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
            c.setdefault("imagePullPolicy", "Always" if tagless else "IfNotPresent")
            res = c.get("resources")
            if isinstance(res, dict) and res.get("limits"):
                # Requests default to limits: the scheduler relies on this.
                requests = res.setdefault("requests", {})
                for k, v in res["limits"].items():
                    requests.setdefault(k, v)


def _qos_class(spec: dict[str, Any]) -> str:
    containers = [c for g in ("initContainers", "containers") for c in spec.get(g) or []]
    guaranteed, any_set = True, False
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        any_set = any_set or bool(limits) or bool(requests)
        for r in ("cpu", "memory"):
            try:
                if r not in limits or parse_quantity(limits[r]) != parse_quantity(
                    requests.get(r, limits[r])
                ):
                    guaranteed = False
            except ValueError:
                return "BestEffort"  # validation reports the quantity
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


DEFAULT_TOLERATION_SECONDS = 300
NOT_READY, UNREACHABLE = "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"
NODE_GONE_TAINTS = (NOT_READY, UNREACHABLE)


def default_toleration_seconds(spec: dict[str, Any]) -> None:
    """The DefaultTolerationSeconds admission (pods, on create): 300 s on a node that is not
    ready or unreachable, unless the pod already has a toleration for that NoExecute taint."""
    tolerations = list(spec.get("tolerations") or [])
    for key in NODE_GONE_TAINTS:
        if not any(
            (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
            and t.get("effect") in (None, "", "NoExecute")
            for t in tolerations
        ):
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
                }
            )
    spec["tolerations"] = tolerations


def apply_defaults(resource: str, obj: dict[str, Any]) -> None:
    """Fill the defaults a real API server adds to `obj` (in place), on create and update."""
    meta = obj["metadata"]
    if resource == "pods":
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            _default_pod_spec(spec)
            status = obj.setdefault("status", {})
            status.setdefault("phase", "Pending")
            status.setdefault("qosClass", _qos_class(spec))
    elif resource == "jobs":
        # One place for batch/v1 defaulting: the job controller's own rules.
        default_job(obj)
        template_spec = obj["spec"]["template"].get("spec")
        if isinstance(template_spec, dict):
            _default_pod_spec(template_spec)
        obj.setdefault("status", {})
    elif resource == "namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        meta["labels"] = {
            **(meta.get("labels") or {}),
            "kubernetes.io/metadata.name": meta.get("name"),
        }
    elif resource == "secrets":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if string_data:
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
