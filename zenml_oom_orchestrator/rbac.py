"""The orchestrator pod's permissions as data: exactly the verbs and resources its code calls.

`python -m zenml_oom_orchestrator.rbac --namespace NS [--service-account NAME]` prints the
ServiceAccount, Role, RoleBinding (and, unless `--no-nodes`, the ClusterRole and binding that
let the supervisor read Nodes) as YAML for `kubectl apply -f -`. Use the ServiceAccount with the
orchestrator's `service_account_name` setting instead of ZenML's default, which binds the broad
built-in `edit` ClusterRole.

tests/security/test_rbac.py checks the rules against the calls the orchestrator-pod code makes,
both ways: nothing missing (the pod would get 403) and nothing extra (least privilege).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import yaml

NAME = "zenml-oom-orchestrator"


@dataclass(frozen=True)
class Rule:
    """One RBAC rule and why the orchestrator pod needs it."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    why: str

    def manifest(self) -> dict[str, Any]:
        return {
            "apiGroups": [self.api_group],
            "resources": [self.resource],
            "verbs": list(self.verbs),
        }


# Namespaced: what the supervisor and the orchestrator entrypoint call in the run's namespace.
ROLE_RULES: tuple[Rule, ...] = (
    Rule(
        "",
        "pods",
        ("get", "list", "watch", "create", "patch", "delete"),
        "attempt pods: one list+watch per run, create (get to adopt on 409), the result "
        "annotation (patch), delete in-flight attempts on stop and expired ones; get its own "
        "pod to find its Job and owner",
    ),
    Rule(
        "",
        "pods/resize",
        ("patch",),
        "grow a running attempt's memory request and limit in place (grow_in_place)",
    ),
    Rule("", "events", ("create", "list"), "decision Events; the classifier reads a pod's Events"),
    Rule("batch", "jobs", ("get", "patch"), "its own Job: read and write the run-id annotations"),
    Rule("", "secrets", ("delete",), "delete the run's ZenML token Secret when the run ends"),
)
# Cluster-scoped and optional: without it the supervisor warns once and skips the up-front
# "request above every node's memory" refusal (pending_timeout still ends such attempts).
CLUSTER_RULES: tuple[Rule, ...] = (
    Rule("", "nodes", ("list",), "refuse a memory request above every node's allocatable"),
)


def granted(include_nodes: bool = True) -> set[tuple[str, str]]:
    """(verb, resource) pairs the manifests grant."""
    rules = ROLE_RULES + (CLUSTER_RULES if include_nodes else ())
    return {(verb, r.resource) for r in rules for verb in r.verbs}


def manifests(
    namespace: str, service_account: str = NAME, include_nodes: bool = True
) -> list[dict[str, Any]]:
    """ServiceAccount, Role, RoleBinding (+ ClusterRole and ClusterRoleBinding for Nodes)."""
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    labels = {"app.kubernetes.io/name": NAME}
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": service_account, "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
            "rules": [r.manifest() for r in ROLE_RULES],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [subject],
        },
    ]
    if include_nodes:
        # One ClusterRoleBinding per namespace's service account: the name says which.
        binding = f"{NAME}-nodes-{namespace}"[:253]
        out += [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": f"{NAME}-nodes", "labels": labels},
                "rules": [r.manifest() for r in CLUSTER_RULES],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": binding, "labels": labels},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": f"{NAME}-nodes",
                },
                "subjects": [subject],
            },
        ]
    return out


def to_yaml(namespace: str, service_account: str = NAME, include_nodes: bool = True) -> str:
    docs = manifests(namespace, service_account, include_nodes)
    return yaml.safe_dump_all(docs, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zenml_oom_orchestrator.rbac")
    parser.add_argument("--namespace", default="zenml")
    parser.add_argument("--service-account", default=NAME)
    parser.add_argument("--no-nodes", action="store_true", help="no ClusterRole for Nodes")
    args = parser.parse_args(argv)
    sys.stdout.write(to_yaml(args.namespace, args.service_account, not args.no_nodes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
