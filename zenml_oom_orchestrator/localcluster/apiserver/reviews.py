"""`kubectl auth can-i`: SelfSubjectAccessReview and SelfSubjectRulesReview.

The local cluster authenticates nobody and authorizes everything (its kubeconfig has no
credentials), so every review is answered "allowed", and the reason says why: a real cluster
may well say no. Use a real cluster to check RBAC (integration/minikube/rbac.yaml).
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest

NO_AUTHZ = "the local cluster has no authorization: every request is allowed"
EVERYTHING = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}


def review(kind: str, body: Any) -> dict[str, Any]:
    """The review with its `status` filled in, as the API server returns it (201)."""
    if not isinstance(body, dict):
        raise BadRequest(f"a {kind} needs a body")
    spec = body.get("spec") or {}
    answer: dict[str, Any] = {
        "kind": kind,
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
    }
    if kind == "SelfSubjectAccessReview":
        if not spec.get("resourceAttributes") and not spec.get("nonResourceAttributes"):
            raise BadRequest(
                "SelfSubjectAccessReview is invalid: spec: one of resourceAttributes or "
                "nonResourceAttributes must be set"
            )
        answer["status"] = {"allowed": True, "reason": NO_AUTHZ}
    else:
        answer["status"] = {
            "resourceRules": [EVERYTHING],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
            "evaluationError": NO_AUTHZ,
        }
    return answer
