"""How the supervisor words and weighs the API server's refusals, on ApiExceptions carrying the
Status bodies a real kube-apiserver 1.35 sends (RBAC's authorizer; the ServiceAccount admission
plugin in a namespace whose `default` account is not made yet, seen on the real tier)."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from zenml_oom_orchestrator.supervisor.cluster import (
    describe_error,
    forbidden_advice,
    is_forbidden,
    refusal_text,
)

RBAC_DENIED = (
    'pods "r-s-a1" is forbidden: User "system:serviceaccount:ml:zenml-oom" cannot patch '
    'resource "pods" in API group "" in the namespace "ml"'
)
NO_ACCOUNT_YET = (
    'pods "r-s-a1" is forbidden: error looking up service account ml/default: '
    'serviceaccount "default" not found'
)


def refused(status: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps(  # bytes, as the client's RESTResponse gives it
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": status,
        }
    ).encode()
    exc.headers = {"Audit-Id": "0f3c", "Content-Type": "application/json"}
    return exc


def test_an_rbac_denial_is_final_and_says_what_to_apply() -> None:
    exc = refused(403, "Forbidden", RBAC_DENIED)
    assert is_forbidden(exc)
    advice = forbidden_advice(exc, "ml")
    assert RBAC_DENIED in advice
    assert "python -m zenml_oom_orchestrator.rbac --namespace ml | kubectl apply -f -" in advice
    assert "Audit-Id" not in advice and "HTTP response headers" not in describe_error(exc)


def test_a_serviceaccount_not_made_yet_is_retried() -> None:
    assert not is_forbidden(refused(403, "Forbidden", NO_ACCOUNT_YET))


def test_an_invalid_token_is_final() -> None:
    assert is_forbidden(refused(401, "Unauthorized", "Unauthorized"))


def test_other_errors_are_described_in_one_line() -> None:
    assert not is_forbidden(refused(500, "InternalError", "etcdserver: leader changed"))
    assert refusal_text(refused(422, "Invalid", "spec: Invalid value")) == (
        "422 Invalid: spec: Invalid value"
    )
    bare = ApiException(status=503, reason="Service Unavailable")
    assert refusal_text(bare) == "503 Service Unavailable"
    assert describe_error(TimeoutError("read timed out")) == "read timed out"
