"""Map request paths to API routes: `/api/v1/namespaces/ns/pods/name/status` and friends."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NotFound
from ..resources import RESOURCES, ResourceType


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def _not_found(path: str) -> NotFound:
    return NotFound("the server could not find the requested resource", name=path)


def parse_resource_path(path: str) -> Route | None:
    """The route for a resource path, None for non-resource paths (discovery, health).
    Raises NotFound for resource paths the cluster does not serve."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api" and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None  # a discovery document
    namespace = None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    rt = RESOURCES.get(rest[0])
    if rt is None or rt.group != group or rt.version != version:
        raise _not_found(path)
    if namespace is not None and not rt.namespaced:
        raise _not_found(path)
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if len(rest) > 3 or (sub is not None and sub not in rt.subresources):
        raise _not_found(path)
    return Route(rt, namespace, name, sub)
