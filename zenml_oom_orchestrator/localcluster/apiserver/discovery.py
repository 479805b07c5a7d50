"""Discovery documents: what kubectl and the client read to learn which resources exist."""

from __future__ import annotations

from typing import Any

from ..resources import RESOURCES, ResourceType
from ..version import GIT_VERSION, MAJOR, MINOR

KUBE_VERSION = {"major": str(MAJOR), "minor": str(MINOR), "gitVersion": GIT_VERSION}

_SINGULAR = {"namespaces": "namespace", "serviceaccounts": "serviceaccount"}
_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "log": ["get"],
    "resize": ["get", "patch", "update"],
}


def version_info() -> dict[str, Any]:
    return {
        **KUBE_VERSION,
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.25",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _groups() -> dict[str, list[ResourceType]]:
    out: dict[str, list[ResourceType]] = {}
    for rt in RESOURCES.values():
        out.setdefault(rt.api_version, []).append(rt)
    return out


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    main = {
        "name": rt.plural,
        "singularName": _SINGULAR.get(rt.plural, rt.kind.lower()),
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.plural in ("pods", "jobs", "events"):
        main["categories"] = ["all"] if rt.plural != "events" else []
    subs = [
        {
            "name": f"{rt.plural}/{sub}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": rt.kind if sub != "log" else "Pod",
            "verbs": _SUBRESOURCE_VERBS[sub],
        }
        for sub in rt.subresources
    ]
    return [main, *subs]


def api_resource_list(api_version: str) -> dict[str, Any] | None:
    """`/api/v1` or `/apis/<group>/<version>`, None for versions not served."""
    types = _groups().get(api_version)
    if types is None:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api_version,
        "resources": [e for rt in types for e in _resource_entries(rt)],
    }


def core_versions(server_address: str) -> dict[str, Any]:
    """`/api`."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    """`/apis`."""
    groups = sorted({(rt.group, rt.version) for rt in RESOURCES.values() if rt.group})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g, v) for g, v in groups]}


def api_group(name: str) -> dict[str, Any] | None:
    """`/apis/<group>`."""
    for rt in RESOURCES.values():
        if rt.group == name:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, rt.version)}
    return None


def _openapi_prefix(api_version: str) -> str:
    return f"api/{api_version}" if "/" not in api_version else f"apis/{api_version}"


def openapi_v3_root() -> dict[str, Any]:
    """`/openapi/v3`: where each group version's document is."""
    return {
        "paths": {
            _openapi_prefix(gv): {"serverRelativeURL": f"/openapi/v3/{_openapi_prefix(gv)}"}
            for gv in _groups()
        }
    }


def openapi_v3_group(api_version: str) -> dict[str, Any] | None:
    """A minimal OpenAPI v3 document for one group version: paths and operations with their
    group-version-kind and the `fieldValidation` parameter, which is what kubectl create/apply
    check to validate on the server instead of downloading schemas. No schemas."""
    types = _groups().get(api_version)
    if types is None:
        return None
    field_validation = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}]
    paths: dict[str, Any] = {}
    for rt in types:
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}

        def op(action: str, rt: ResourceType = rt, gvk: dict[str, str] = gvk) -> dict[str, Any]:
            return {
                "operationId": f"{action}{rt.kind}",
                "parameters": field_validation,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            }

        base = f"/{_openapi_prefix(api_version)}"
        if rt.namespaced:
            base += "/namespaces/{namespace}"
        base += f"/{rt.plural}"
        paths[base] = {"post": op("post")}
        if "get" in rt.verbs:  # not the create-only reviews
            paths[base]["get"] = op("list")
            paths[base + "/{name}"] = {"get": op("get"), "put": op("put"), "patch": op("patch")}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
        "paths": paths,
    }


def discovery_document(path: str, server_address: str) -> dict[str, Any] | None:
    """The discovery body for a non-resource path, None if there is none."""
    parts = [p for p in path.split("/") if p]
    if parts == ["version"]:
        return version_info()
    if parts[:2] == ["openapi", "v3"]:
        if len(parts) == 2:
            return openapi_v3_root()
        return openapi_v3_group("/".join(parts[3:]) if parts[2] == "apis" else parts[3])
    if parts == ["api"]:
        return core_versions(server_address)
    if parts == ["apis"]:
        return api_group_list()
    if len(parts) == 2 and parts[0] == "api":
        return api_resource_list(parts[1])
    if len(parts) == 2 and parts[0] == "apis":
        return api_group(parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return api_resource_list(f"{parts[1]}/{parts[2]}")
    return None
