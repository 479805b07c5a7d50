"""The `pods/resize` subresource as kube-apiserver 1.35 serves it (in-place pod resize, GA).

Only the containers' `resources` and `resizePolicy` are taken from the request; every other
change is silently dropped (an image or label change through `resize` returns 200 and changes
nothing). Refusals, each a 422 with the real server's field and words (checked on the real
tier, kube-apiserver 1.35.4):
- a container added or removed: `spec.containers: Forbidden: containers may not be added or
  removed on resize` (an added one without an image also `spec.containers[i].image: Required`);
- a limit or request dropped: `...resources.limits: Forbidden: resource limits cannot be removed`;
- any other resource than cpu and memory changed, or a changed `resizePolicy`:
  `spec: Forbidden: only cpu and memory resources are mutable`;
- a different QoS class: `spec: Invalid value: "<old class>": Pod QOS Class may not change as a
  result of resizing`;
- a request above its limit: the create-time check.
A spec change bumps `metadata.generation`; the kubelet reports `status.observedGeneration`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .defaults import _qos_class
from .errors import Invalid
from .objects import clone
from .patch import apply_patch
from .resources import resource_type
from .validation import _Errors

MUTABLE = ("cpu", "memory")


def _forbidden(errs: _Errors, field: str, detail: str) -> None:
    errs.causes.append(
        {"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field}
    )


def _defaulted(resources: Any) -> dict[str, Any]:
    """Requests default to limits (the API server defaults before it validates)."""
    res = clone(resources) if isinstance(resources, dict) else {}
    for name, value in (res.get("limits") or {}).items():
        res.setdefault("requests", {}).setdefault(name, value)
    return res


def resized(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` with the containers' resources and resizePolicy of `new`; Invalid if refused."""
    name = old["metadata"]["name"]
    spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    old_containers = spec.get("containers") or []
    new_containers = [c for c in new_spec.get("containers") or [] if isinstance(c, dict)]
    errs = _Errors()
    if sorted(str(c.get("name")) for c in new_containers) != sorted(
        str(c.get("name")) for c in old_containers
    ):
        for i, c in enumerate(new_containers):
            if not c.get("image"):
                errs.required(f"spec.containers[{i}].image")
        _forbidden(errs, "spec.containers", "containers may not be added or removed on resize")
        errs.raise_if_any(resource_type("pods"), name)
    by_name = {c["name"]: c for c in new_containers}
    result = clone(old)
    other_changed = False
    for i, container in enumerate(result["spec"]["containers"]):
        want = by_name[container["name"]]
        before, after = _defaulted(container.get("resources")), _defaulted(want.get("resources"))
        for kind, word in (("limits", "limits"), ("requests", "requests")):
            if set(before.get(kind) or {}) - set(after.get(kind) or {}):
                _forbidden(
                    errs,
                    f"spec.containers[{i}].resources.{kind}",
                    f"resource {word} cannot be removed",
                )
        for kind in ("limits", "requests"):
            was, now = before.get(kind) or {}, after.get(kind) or {}
            for rname in set(was) | set(now):
                if rname not in MUTABLE and was.get(rname) != now.get(rname):
                    other_changed = True
        if want.get("resizePolicy") != container.get("resizePolicy"):
            other_changed = True
            _check_resize_policy(errs, i, want.get("resizePolicy"), spec.get("restartPolicy"))
        if after:
            container["resources"] = after
        else:
            container.pop("resources", None)
    if other_changed:
        _forbidden(errs, "spec", "only cpu and memory resources are mutable")
    old_qos = (old.get("status") or {}).get("qosClass") or _qos_class(spec)
    if not errs.causes and _qos_class(result["spec"]) != old_qos:
        errs.invalid("spec", old_qos, "Pod QOS Class may not change as a result of resizing")
    errs.raise_if_any(resource_type("pods"), name)
    return result


def _check_resize_policy(errs: _Errors, i: int, policy: Any, restart_policy: Any) -> None:
    if restart_policy != "Never":
        return
    for p in policy or []:
        if isinstance(p, dict) and p.get("restartPolicy") == "RestartContainer":
            errs.invalid(
                f"spec.containers[{i}].resizePolicy",
                "RestartContainer",
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            )


def resize(
    store: Any, namespace: str | None, name: str, make_new: Callable[[dict[str, Any]], Any]
) -> dict[str, Any]:
    """Apply one resize request atomically: `make_new(current)` is the requested pod."""

    def fn(obj: dict[str, Any]) -> None:
        new = make_new(obj)
        if not isinstance(new, dict):
            raise Invalid("the request body must be a Pod")
        want_rv = (new.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != obj["metadata"]["resourceVersion"]:
            raise store.conflict_error(resource_type("pods"), name)
        result = resized(obj, new)
        obj.clear()
        obj.update(result)

    return dict(store.mutate("pods", namespace, name, fn, subresource="resize"))


def patch_resize(
    store: Any, namespace: str | None, name: str, body: Any, content_type: str
) -> dict[str, Any]:
    return resize(store, namespace, name, lambda obj: apply_patch(obj, body, content_type))


def put_resize(store: Any, namespace: str | None, name: str, body: Any) -> dict[str, Any]:
    return resize(store, namespace, name, lambda obj: body)
