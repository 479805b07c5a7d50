"""The orchestrator pod's Role (zenml_oom_orchestrator.rbac) against the calls its code makes.

Static: every Kubernetes client call in the modules that run in the orchestrator pod is mapped
to (verb, resource), and that set must equal what the Role grants: nothing missing (403 at run
time) and nothing extra (least privilege). The client-side orchestrator class (submit, fetch
status) runs with the user's own credentials and is not scanned.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from zenml_oom_orchestrator import rbac

PACKAGE = Path(rbac.__file__).parent
POD_SIDE = [
    *sorted((PACKAGE / "supervisor").glob("*.py")),
    PACKAGE / "orchestrators" / "oom_kubernetes_orchestrator_entrypoint.py",
    PACKAGE / "orchestrators" / "step_pods.py",
    PACKAGE / "orchestrators" / "zenml_observer.py",
    PACKAGE / "orchestrators" / "store_sync.py",
]
# ZenML's kube_utils helpers the pod-side code may call, and the API call each makes
# (read from zenml 0.98's kube_utils). Pure helpers map to nothing.
KUBE_UTILS = {
    "get_parent_job_name": {("get", "pods")},
    "get_pod_owner_references": {("get", "pods")},
    "get_pod": {("get", "pods")},
    "update_job": {("patch", "jobs")},
    "delete_secret": {("delete", "secrets")},
    "sanitize_label_value": set(),
    "sanitize_label": set(),
    "convert_resource_settings_to_k8s_format": set(),
    "apply_default_resource_requests": set(),
}
_CLIENT_METHOD = re.compile(
    r"^(read|list|create|patch|replace|delete)_(namespaced_)?([a-z_]+?)(_status|_log)?$"
)
_VERBS = {"read": "get", "list": "list", "create": "create", "patch": "patch",
          "replace": "update", "delete": "delete"}  # fmt: skip
_CLIENT_OBJECTS = {"core", "batch", "core_api", "batch_api", "_k8s_core_api", "_k8s_batch_api"}


def _plural(kind: str) -> str:
    return kind + ("es" if kind.endswith("s") else "s")


def _client_call(node: ast.Call) -> set[tuple[str, str]]:
    """(verb, resource) of `x.core.read_namespaced_pod(...)`-style calls, also when passed as a
    function (`self._json("...", self.core.list_namespaced_pod, ...)`)."""
    found = set()
    for target in [node.func, *node.args]:
        if not isinstance(target, ast.Attribute):
            continue
        owner = target.value
        owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        m = _CLIENT_METHOD.match(target.attr)
        if owner_name not in _CLIENT_OBJECTS or not m:
            continue
        verb, _, kind, sub = m.groups()
        resource = _plural(kind) + (f"/{sub[1:]}" if sub else "")
        found.add((_VERBS[verb], resource))
        if verb == "list" and any(k.arg == "watch" for k in node.keywords):
            found.add(("watch", resource))
    return found


_RAW_PATH = re.compile(r"^/api/v1/namespaces/\{namespace\}/([a-z]+)/\{name\}(/[a-z]+)?$")


def _raw_call(node: ast.Call) -> set[tuple[str, str]]:
    """(verb, resource) of `api_client.call_api("/api/v1/namespaces/{namespace}/pods/{name}/
    resize", "PATCH", ...)`: a subresource the pinned client has no method for."""
    func = node.func
    if not (isinstance(func, ast.Attribute) and func.attr == "call_api") or len(node.args) < 2:
        return set()
    path, method = node.args[0], node.args[1]
    if not (isinstance(path, ast.Constant) and isinstance(method, ast.Constant)):
        return set()
    m = _RAW_PATH.match(str(path.value))
    assert m, f"call_api on a path the scan cannot map: {path.value}"
    verb = {"GET": "get", "PATCH": "patch", "POST": "create", "DELETE": "delete"}
    return {(verb[str(method.value)], m.group(1) + (m.group(2) or ""))}


def used_by_pod_side() -> dict[tuple[str, str], list[str]]:
    """(verb, resource) -> where in the pod-side code it is called."""
    used: dict[tuple[str, str], list[str]] = {}
    for path in POD_SIDE:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            pairs = _client_call(node) | _raw_call(node)
            func = node.func
            if isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "kube_utils":
                assert func.attr in KUBE_UTILS, (
                    f"{path.name}:{node.lineno} calls kube_utils.{func.attr}: map it to the "
                    "API calls it makes in KUBE_UTILS"
                )
                pairs |= KUBE_UTILS[func.attr]
            for pair in pairs:
                used.setdefault(pair, []).append(f"{path.name}:{node.lineno}")
    return used


def test_the_role_grants_exactly_what_the_pod_side_code_calls() -> None:
    used = used_by_pod_side()
    granted = rbac.granted(include_nodes=True)
    missing = {pair: where for pair, where in used.items() if pair not in granted}
    extra = granted - set(used)
    assert not missing, f"the code calls these without a grant (403 at run time): {missing}"
    assert not extra, f"granted but never called (drop them): {sorted(extra)}"


def test_the_scan_sees_the_calls_it_must() -> None:
    # Guards the scanner itself: these calls exist in supervisor/cluster.py and the entrypoint.
    used = used_by_pod_side()
    for pair in [("watch", "pods"), ("create", "pods"), ("patch", "pods"), ("list", "nodes"),
                 ("create", "events"), ("patch", "jobs"), ("delete", "secrets"),
                 ("patch", "pods/resize")]:  # fmt: skip
        assert pair in used, pair


def test_manifests_are_namespaced_and_bind_the_service_account() -> None:
    docs = rbac.manifests("ml", service_account="runner")
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]
    role, binding = docs[1], docs[2]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "ml"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "runner", "namespace": "ml"}]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in role["rules"])
    assert rbac.manifests("ml", include_nodes=False)[-1]["kind"] == "RoleBinding"
    assert "kind: Role" in rbac.to_yaml("ml")
