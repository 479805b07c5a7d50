"""The three PATCH flavours the Kubernetes clients send: JSON merge patch (RFC 7386), JSON
patch (RFC 6902) and strategic merge patch (lists of known fields merged by key)."""

from __future__ import annotations

from typing import Any

from .errors import BadRequest, Invalid, UnsupportedMediaType
from .objects import clone

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# Field name -> merge key, from the patchMergeKey tags of the core/batch/meta types we serve.
# Lists not named here are replaced whole, as for fields without a patch strategy.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "ephemeralContainerStatuses": "name",
    "secrets": "name",
}
# Primitive lists merged as sets (patchStrategy "merge" without a key).
SET_LISTS = {"finalizers"}


def apply_patch(obj: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Return a new object: `obj` with `patch` applied per the request's Content-Type."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == JSON_PATCH:
        if not isinstance(patch, list):
            raise BadRequest("json patch must be a list of operations")
        return json_patch(obj, patch)
    if not isinstance(patch, dict):
        raise BadRequest("patch body must be a JSON object")
    if ctype == MERGE_PATCH:
        return merge_patch(obj, patch)
    if ctype == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(obj, patch)
    raise UnsupportedMediaType(
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}"
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    out = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# -- JSON patch --------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise Invalid(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    cur = doc
    for part in parts[:-1]:
        try:
            cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise Invalid(f"jsonpatch: path {path!r} does not exist") from None
    return cur, parts[-1]


def _index(container: list[Any], token: str, path: str, for_insert: bool) -> int:
    if token == "-" and for_insert:
        return len(container)
    try:
        i = int(token)
    except ValueError:
        raise Invalid(f"jsonpatch: bad array index in {path!r}") from None
    if i < 0 or i > len(container) or (i == len(container) and not for_insert):
        raise Invalid(f"jsonpatch: array index out of range in {path!r}")
    return i


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent, last = _parent(doc, parts, path)
    try:
        if isinstance(parent, list):
            return parent[_index(parent, last, path, False)]
        return parent[last]
    except (KeyError, TypeError):
        raise Invalid(f"jsonpatch: path {path!r} does not exist") from None


def _remove(doc: Any, path: str) -> Any:
    parent, last = _parent(doc, _pointer(path), path)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, False))
    if not isinstance(parent, dict) or last not in parent:
        raise Invalid(f"jsonpatch: cannot remove {path!r}: it does not exist")
    return parent.pop(last)


def _add(doc: Any, path: str, value: Any, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, list):
        i = _index(parent, last, path, not replace)
        if replace:
            parent[i] = value
        else:
            parent.insert(i, value)
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise Invalid(f"jsonpatch: cannot replace {path!r}: it does not exist")
        parent[last] = value
    else:
        raise Invalid(f"jsonpatch: path {path!r} does not exist")
    return doc


def json_patch(obj: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    """RFC 6902 operations add, remove, replace, move, copy and test."""
    doc: Any = clone(obj)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise BadRequest(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, clone(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            doc = _add(doc, path, clone(op.get("value")), replace=True)
        elif kind == "move":
            doc = _add(doc, path, _remove(doc, op["from"]))
        elif kind == "copy":
            doc = _add(doc, path, clone(_get(doc, op["from"])))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise Invalid(f"jsonpatch: test operation for path {path!r} failed")
        else:
            raise BadRequest(f"unknown json patch operation {kind!r}")
    if not isinstance(doc, dict):
        raise Invalid("jsonpatch result is not an object")
    return doc


# -- strategic merge patch ---------------------------------------------------------------------


def strategic_merge_patch(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Strategic merge patch as kubectl and the client send it for built-in types."""
    return _smp_dict(clone(obj), patch)


def _smp_dict(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = set(value or [])
            target[field] = [v for v in target.get(field) or [] if v not in drop]
            continue
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                target.pop(key, None)
            else:
                cur = target.get(key)
                target[key] = _smp_dict(cur if isinstance(cur, dict) else {}, value)
        elif isinstance(value, list):
            target[key] = _smp_list(key, target.get(key), value)
        else:
            target[key] = value
    if isinstance(retain, list):
        for key in [k for k in target if k not in retain]:
            del target[key]
    return target


def _smp_list(field: str, cur: Any, patch: list[Any]) -> list[Any]:
    cur = cur if isinstance(cur, list) else []
    if field in SET_LISTS:
        out = list(cur)
        out.extend(v for v in patch if v not in out)
        return out
    key = MERGE_KEYS.get(field)
    if key is None or not all(isinstance(p, dict) for p in patch):
        return [clone(v) for v in patch]
    if any(p.get("$patch") == "replace" for p in patch):
        return [clone(p) for p in patch if p.get("$patch") != "replace"]
    out = list(cur)
    for item in patch:
        if key not in item:
            raise BadRequest(f"strategic merge patch: {field} item without merge key {key!r}")
        at = next(
            (i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if at is not None:
                out.pop(at)
        elif at is None:
            out.append(_smp_dict({}, item))
        else:
            out[at] = _smp_dict(out[at], item)
    return out
