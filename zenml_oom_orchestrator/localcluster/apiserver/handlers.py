"""The resource verbs: each turns one parsed request into Store calls and a response body."""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, MethodNotAllowed, NotFound
from ..patch import apply_patch
from ..resize import patch_resize, put_resize
from ..selectors import object_matcher
from ..store import Store
from .routing import Route

Query = Mapping[str, str]
Body = dict[str, Any]


def _flag(query: Query, name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


def _int(query: Query, name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError:
        raise BadRequest(f"invalid {name}: {value!r}") from None


def get(store: Store, route: Route) -> Body:
    assert route.name is not None
    return store.get(route.rt.plural, route.namespace, route.name)


def list_objects(store: Store, route: Route, query: Query) -> Body:
    """A list with `limit`/`continue` paging; items are shared snapshots (only serialised).
    With a selector and a limit, matching stops at the page (so `remainingItemCount` is
    left out, as the real API server does for selector lists)."""
    rt = route.rt
    matcher = object_matcher(query.get("labelSelector"), query.get("fieldSelector"))
    items, rv = store.snapshot(rt.plural, route.namespace)
    meta: dict[str, Any] = {"resourceVersion": rv}
    token = query.get("continue")
    if token:
        try:
            after = json.loads(base64.urlsafe_b64decode(token.encode()))
            start = bisect.bisect_right([_key(o) for o in items], (after["ns"], after["name"]))
        except (ValueError, KeyError, TypeError):
            raise BadRequest("invalid continue token") from None
        items = items[start:]
    limit = _int(query, "limit") or None
    more = False
    if matcher is None:
        if limit and len(items) > limit:
            meta["remainingItemCount"] = len(items) - limit
            items, more = items[:limit], True
    else:
        page: list[Body] = []
        for o in items:
            if matcher(o):
                if limit and len(page) == limit:
                    more = True
                    break
                page.append(o)
        items = page
    if more:
        ns, name = _key(items[-1])
        meta["continue"] = base64.urlsafe_b64encode(
            json.dumps({"ns": ns, "name": name, "rv": rv}).encode()
        ).decode()
    return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": items}


def _key(obj: Body) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _body_object(body: Any) -> Body:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def create(store: Store, route: Route, body: Any) -> Body:
    if route.name is not None:
        raise MethodNotAllowed(f"POST is not supported on {route.rt.plural}/{route.name}")
    return store.create(route.rt.plural, _body_object(body), route.namespace)


def update(store: Store, route: Route, body: Any) -> Body:
    obj = _body_object(body)
    meta = obj.setdefault("metadata", {})
    if meta.get("name") and meta["name"] != route.name:
        raise BadRequest(
            f"the name of the object ({meta['name']}) does not match the name on the URL "
            f"({route.name})"
        )
    meta["name"] = route.name
    if route.rt.namespaced:
        if meta.get("namespace") and meta["namespace"] != route.namespace:
            raise BadRequest(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["namespace"] = route.namespace
    return store.update(route.rt.plural, obj, subresource=route.subresource)


def patch(store: Store, route: Route, body: Any, content_type: str) -> Body:
    """Apply the patch atomically under the store lock; the main resource ignores `.status`
    changes and the status subresource everything else, as in the real API server."""
    assert route.name is not None
    rt = route.rt

    def fn(obj: Body) -> None:
        patched = apply_patch(obj, body, content_type)
        want_rv = (patched.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != obj["metadata"]["resourceVersion"]:
            raise store.conflict_error(rt, route.name or "")
        if route.subresource is None and rt.has_status:
            patched["status"] = obj.get("status")
        obj.clear()
        obj.update(patched)

    return store.mutate(rt.plural, route.namespace, route.name, fn, subresource=route.subresource)


def resize(store: Store, route: Route, method: str, body: Any, content_type: str) -> Body:
    """PATCH or PUT on `pods/<name>/resize`: only the containers' resources may change."""
    assert route.name is not None
    if method == "PUT":
        return put_resize(store, route.namespace, route.name, _body_object(body))
    return patch_resize(store, route.namespace, route.name, body, content_type)


def delete_options(query: Query, body: Any) -> tuple[int | None, str | None, dict[str, str]]:
    """(gracePeriodSeconds, propagationPolicy, preconditions) from DeleteOptions body or query."""
    opts: dict[str, Any] = body if isinstance(body, dict) else {}
    grace = opts.get("gracePeriodSeconds")
    if grace is None:
        grace = _int(query, "gracePeriodSeconds")
    policy = opts.get("propagationPolicy") or query.get("propagationPolicy") or None
    orphan = opts.get("orphanDependents")
    if orphan is None and "orphanDependents" in query:
        orphan = _flag(query, "orphanDependents")
    if policy is None and orphan is not None:
        policy = "Orphan" if orphan else "Background"
    return grace, policy, dict(opts.get("preconditions") or {})


def delete(store: Store, route: Route, query: Query, body: Any) -> Body:
    """The object if it stays (graceful, finalizers) or is a pod, else a Success Status."""
    assert route.name is not None
    rt = route.rt
    grace, policy, pre = delete_options(query, body)
    result = store.delete(rt.plural, route.namespace, route.name, grace, policy, pre)
    if rt.plural == "pods" or result["metadata"].get("deletionTimestamp") and _exists(store, route):
        return result
    details: dict[str, Any] = {"name": route.name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    details["uid"] = result["metadata"]["uid"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _exists(store: Store, route: Route) -> bool:
    try:
        store.get(route.rt.plural, route.namespace, route.name or "")
    except NotFound:
        return False
    return True


def delete_collection(store: Store, route: Route, query: Query, body: Any) -> Body:
    rt = route.rt
    grace, policy, _ = delete_options(query, body)
    items, rv = store.list(
        rt.plural, route.namespace, query.get("labelSelector"), query.get("fieldSelector")
    )
    deleted = []
    for obj in items:
        meta = obj["metadata"]
        try:
            deleted.append(
                store.delete(rt.plural, meta.get("namespace"), meta["name"], grace, policy)
            )
        except NotFound:
            continue  # deleted meanwhile
    return {
        "kind": rt.list_kind,
        "apiVersion": rt.api_version,
        "metadata": {"resourceVersion": store.resource_version},
        "items": deleted,
    }
