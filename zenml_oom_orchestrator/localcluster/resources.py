"""The resource types the local cluster serves: names, groups, kinds and scopes."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import NotFound


@dataclass(frozen=True)
class ResourceType:
    plural: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # Subresources with their own write rules; "log" is served by the API server only.
    subresources: tuple[str, ...] = ()
    # DNS-1123 label (namespaces), DNS-1123 subdomain (most), or path segment (RBAC).
    name_rule: str = "subdomain"
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


REVIEWS = {
    "selfsubjectaccessreviews": "SelfSubjectAccessReview",
    "selfsubjectrulesreviews": "SelfSubjectRulesReview",
}

RESOURCES: dict[str, ResourceType] = {
    r.plural: r
    for r in (
        ResourceType(
            "namespaces",
            "Namespace",
            "",
            "v1",
            False,
            ("ns",),
            ("status",),
            name_rule="label",
        ),
        ResourceType("pods", "Pod", "", "v1", True, ("po",), ("status", "log", "resize")),
        ResourceType("events", "Event", "", "v1", True, ("ev",)),
        ResourceType("nodes", "Node", "", "v1", False, ("no",), ("status",)),
        ResourceType("secrets", "Secret", "", "v1", True),
        ResourceType("serviceaccounts", "ServiceAccount", "", "v1", True, ("sa",)),
        ResourceType("jobs", "Job", "batch", "v1", True, (), ("status",)),
        ResourceType("roles", "Role", "rbac.authorization.k8s.io", "v1", True, name_rule="segment"),
        ResourceType(
            "rolebindings",
            "RoleBinding",
            "rbac.authorization.k8s.io",
            "v1",
            True,
            name_rule="segment",
        ),
        ResourceType(
            "clusterroles",
            "ClusterRole",
            "rbac.authorization.k8s.io",
            "v1",
            False,
            name_rule="segment",
        ),
        ResourceType(
            "clusterrolebindings",
            "ClusterRoleBinding",
            "rbac.authorization.k8s.io",
            "v1",
            False,
            name_rule="segment",
        ),
        # Asked, never stored: the API server answers them (the local cluster has no authz).
        *(
            ResourceType(plural, kind, "authorization.k8s.io", "v1", False, verbs=("create",))
            for plural, kind in REVIEWS.items()
        ),
    )
}

KIND_TO_RESOURCE: dict[str, str] = {r.kind: r.plural for r in RESOURCES.values()}


def resource_type(resource: str) -> ResourceType:
    """The type for a plural name; `NotFound` for anything the cluster does not serve."""
    try:
        return RESOURCES[resource]
    except KeyError:
        raise NotFound(f"the server could not find the requested resource ({resource})") from None
