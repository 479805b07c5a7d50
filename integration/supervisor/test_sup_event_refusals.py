"""An Event whose namespace is going or gone is dropped at once with one log line (issue 11:
on the real tier a supervisor retried such a create 10-20 times a second until its requeue
limit); a transient error keeps its backoff."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.supervisor import naming
from zenml_oom_orchestrator.supervisor.cluster import ApiRetry, ClusterApi

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.local_only("holds a namespace Terminating and injects faults in the local store"),
]
HOLD = "test.zenml.io/hold"
POD = {"metadata": {"name": "s-a1", "uid": "u-1"}}


@pytest.fixture
def closing_namespace(local_cluster: Any) -> Iterator[str]:
    """A namespace kept Terminating by a Secret with a finalizer (removed on exit)."""
    store = local_cluster.store
    name = f"closing-{secrets.token_hex(4)}"
    store.create("namespaces", {"metadata": {"name": name}})
    store.create("secrets", {"metadata": {"name": "held", "finalizers": [HOLD]}}, name)
    store.delete("namespaces", None, name)
    yield name
    release(store, name)


def release(store: Any, namespace: str) -> None:
    def drop(obj: dict[str, Any]) -> None:
        obj["metadata"].pop("finalizers", None)

    try:
        store.mutate("secrets", namespace, "held", drop)
    except Exception:  # noqa: BLE001 - already released
        return
    wait_for(lambda: not store.list("namespaces", field_selector=f"metadata.name={namespace}")[0])


def test_local_api_server_refuses_creates_in_a_terminating_namespace_as_kube_apiserver(
    k8s_api_client: Any, closing_namespace: str
) -> None:
    """NamespaceLifecycle admission, kube-apiserver 1.35's wording."""
    core = k8s.CoreV1Api(k8s_api_client)
    body = {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p"}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_event(closing_namespace, body)
    assert refused.value.status == 403
    status = json.loads(refused.value.body)
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        f'events "e1" is forbidden: unable to create new content in namespace '
        f"{closing_namespace} because it is being terminated"
    )
    assert status["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": f"namespace {closing_namespace} is being terminated",
            "field": "metadata.namespace",
        }
    ]


def test_event_in_a_terminating_then_gone_namespace_is_dropped_at_once(
    local_cluster: Any, k8s_api_client: Any, closing_namespace: str, caplog: Any
) -> None:
    api = ClusterApi(k8s_api_client, closing_namespace, ApiRetry(max_attempts=5))
    caplog.set_level(logging.INFO, logger="zenml_oom_orchestrator.supervisor.cluster")
    api.emit_event(POD, "RetryOOM", "attempt 2 at 1Gi")  # no raise: nothing to requeue
    assert api.calls == 1
    lines = [r.getMessage() for r in caplog.records]
    event = naming.event_name("s-a1", "RetryOOM")
    assert lines == [
        f'Event RetryOOM not recorded: 403 Forbidden: events "{event}" is forbidden: unable to '
        f"create new content in namespace {closing_namespace} because it is being terminated"
    ]

    release(local_cluster.store, closing_namespace)  # the namespace is gone now: 404
    caplog.clear()
    api.emit_event(POD, "RetryOOM", "attempt 2 at 1Gi")
    assert api.calls == 2
    assert [r.getMessage() for r in caplog.records] == [
        f'Event RetryOOM not recorded: 404 Not Found: namespaces "{closing_namespace}" not found'
    ]


def test_transient_event_errors_keep_their_backoff(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    """A 500 on the create is retried (tenacity) and the Event lands; a refusal that may
    change (an RBAC 403) still reaches the caller."""
    faults = local_cluster.api_server.faults
    api = ClusterApi(k8s_api_client, cluster_namespace, ApiRetry(max_attempts=5, initial_wait=0.01))
    faults.update(error_rate=1.0, verbs={"create"}, resources={"events"})
    try:
        with pytest.raises(ApiException) as failed:
            api.emit_event(POD, "RetryOOM", "attempt 2 at 1Gi")
        assert failed.value.status == 500 and api.calls == 5
        faults.update(error_rate=0.0, forbid_rate=1.0)
        with pytest.raises(ApiException) as forbidden:
            api.emit_event(POD, "RetryOOM", "attempt 2 at 1Gi")
        assert forbidden.value.status == 403
    finally:
        faults.clear()
    api.emit_event(POD, "RetryOOM", "attempt 2 at 1Gi")
    events = k8s.CoreV1Api(k8s_api_client).list_namespaced_event(cluster_namespace).items
    assert [e.reason for e in events] == ["RetryOOM"]
