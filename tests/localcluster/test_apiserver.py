"""The HTTP API through the official kubernetes client: discovery, CRUD, Status bodies,
selectors, paging, subresources, deletion and the cascade."""

from __future__ import annotations

import http.client
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .apiserver_fixtures import Api, Kube, api, job_manifest, kube, pod_manifest

__all__ = ["api", "kube"]  # fixtures


def status_of(e: ApiException) -> dict:
    body = json.loads(e.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == e.status
    return body


def test_discovery_documents(api: Api) -> None:
    assert api.raw("GET", "/version")[2]["major"] == "1"
    assert api.raw("GET", "/api")[2]["versions"] == ["v1"]
    groups = {g["name"] for g in api.raw("GET", "/apis")[2]["groups"]}
    assert groups == {"authorization.k8s.io", "batch", "rbac.authorization.k8s.io"}
    core = {r["name"] for r in api.raw("GET", "/api/v1")[2]["resources"]}
    assert {"pods", "pods/status", "pods/log", "namespaces", "nodes", "events"} <= core
    assert {"secrets", "serviceaccounts", "nodes/status"} <= core
    assert {r["name"] for r in api.raw("GET", "/apis/batch/v1")[2]["resources"]} == {
        "jobs",
        "jobs/status",
    }
    rbac = api.raw("GET", "/apis/rbac.authorization.k8s.io/v1")[2]
    assert {r["name"] for r in rbac["resources"]} == {
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
    }
    assert api.raw("GET", "/healthz")[:3:2] == (200, "ok")
    code, _, body = api.raw("GET", "/apis/apps/v1/namespaces/default/deployments")
    assert code == 404 and body["reason"] == "NotFound"


def test_create_get_list_with_metadata(kube: Kube) -> None:
    manifest = pod_manifest(labels={"app": "a"})
    manifest["metadata"] = {"generateName": "step-", "labels": {"app": "a"}}
    created = kube.core.create_namespaced_pod("default", manifest)
    meta = created.metadata
    assert meta.name.startswith("step-") and meta.uid and meta.resource_version
    assert meta.creation_timestamp is not None
    got = kube.core.read_namespaced_pod(meta.name, "default")
    assert got.metadata.uid == meta.uid and got.status.phase == "Pending"
    pods = kube.core.list_namespaced_pod("default")
    assert [p.metadata.name for p in pods.items] == [meta.name]
    assert int(pods.metadata.resource_version) >= int(meta.resource_version)
    assert len(kube.core.list_pod_for_all_namespaces().items) == 1


def test_status_bodies_for_404_409_422(kube: Kube) -> None:
    with pytest.raises(ApiException) as e:
        kube.core.read_namespaced_pod("missing", "default")
    body = status_of(e.value)
    assert e.value.status == 404 and body["reason"] == "NotFound"
    assert body["details"] == {"name": "missing", "kind": "pods"}

    kube.core.create_namespaced_pod("default", pod_manifest())
    with pytest.raises(ApiException) as e:
        kube.core.create_namespaced_pod("default", pod_manifest())
    assert e.value.status == 409 and status_of(e.value)["reason"] == "AlreadyExists"

    stale = kube.core.read_namespaced_pod("p", "default")
    stale.metadata.labels = {"v": "1"}
    kube.core.replace_namespaced_pod("p", "default", stale)
    stale.metadata.labels = {"v": "2"}
    with pytest.raises(ApiException) as e:
        kube.core.replace_namespaced_pod("p", "default", stale)
    assert e.value.status == 409 and status_of(e.value)["reason"] == "Conflict"

    for bad in (
        pod_manifest("Not_A_Name"),
        pod_manifest("p2", {"k": "x" * 64}),
        pod_manifest("p3", {"k": "has space"}),
    ):
        with pytest.raises(ApiException) as e:
            kube.core.create_namespaced_pod("default", bad)
        body = status_of(e.value)
        assert e.value.status == 422 and body["reason"] == "Invalid"
        assert body["details"]["causes"]
    bad = pod_manifest("p4")
    bad["spec"]["containers"][0]["resources"]["limits"]["memory"] = "lots"
    with pytest.raises(ApiException) as e:
        kube.core.create_namespaced_pod("default", bad)
    cause = status_of(e.value)["details"]["causes"][0]
    assert cause["field"] == "spec.containers[0].resources.limits[memory]"


def test_selectors_over_http(kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("a", {"run": "1", "step": "x"}))
    kube.core.create_namespaced_pod("default", pod_manifest("b", {"run": "2"}, nodeName="n1"))

    def names(**kw: str) -> list[str]:
        return [p.metadata.name for p in kube.core.list_namespaced_pod("default", **kw).items]

    assert names(label_selector="run=1") == ["a"]
    assert names(label_selector="run!=1") == ["b"]
    assert names(label_selector="run in (1,2),!step") == ["b"]
    assert names(label_selector="run notin (2)") == ["a"]
    assert names(label_selector="step") == ["a"]
    assert names(field_selector="spec.nodeName=n1") == ["b"]
    assert names(field_selector="metadata.name=a") == ["a"]
    assert names(field_selector="status.phase=Pending,metadata.namespace=default") == ["a", "b"]
    with pytest.raises(ApiException) as e:
        kube.core.list_namespaced_pod("default", label_selector="run in (1")
    assert e.value.status == 400


def test_paging_with_limit_and_continue(kube: Kube) -> None:
    for i in range(5):
        kube.core.create_namespaced_pod("default", pod_manifest(f"p{i}"))
    first = kube.core.list_namespaced_pod("default", limit=2)
    assert [p.metadata.name for p in first.items] == ["p0", "p1"]
    assert first.metadata.remaining_item_count == 3
    rest = kube.core.list_namespaced_pod("default", limit=10, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["p2", "p3", "p4"]
    assert rest.metadata._continue is None


def test_status_subresources(kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest())
    kube.core.patch_namespaced_pod("p", "default", {"status": {"phase": "Failed"}})
    assert kube.core.read_namespaced_pod("p", "default").status.phase == "Pending"
    kube.core.patch_namespaced_pod_status(
        "p", "default", {"status": {"phase": "Running"}, "metadata": {"labels": {"x": "y"}}}
    )
    pod = kube.core.read_namespaced_pod_status("p", "default")
    assert pod.status.phase == "Running" and not pod.metadata.labels

    kube.batch.create_namespaced_job("default", job_manifest())
    job = kube.batch.read_namespaced_job("j", "default")
    job.status = client.V1JobStatus(active=1)
    kube.batch.replace_namespaced_job_status("j", "default", job)
    assert kube.batch.read_namespaced_job_status("j", "default").status.active == 1


def test_every_resource_type_round_trips(kube: Kube) -> None:
    kube.core.create_namespace({"metadata": {"name": "run-1"}})
    assert kube.core.read_namespace("run-1").status.phase == "Active"
    kube.core.create_node(
        {"metadata": {"name": "node-1"}, "status": {"capacity": {"memory": "8Gi"}}}
    )
    kube.core.patch_node_status(
        "node-1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    assert kube.core.read_node("node-1").status.conditions[0].type == "Ready"
    kube.core.create_namespaced_secret(
        "run-1", {"metadata": {"name": "s"}, "stringData": {"token": "abc"}}
    )
    assert kube.core.read_namespaced_secret("s", "run-1").data == {"token": "YWJj"}
    kube.core.create_namespaced_service_account("run-1", {"metadata": {"name": "runner"}})
    sas = kube.core.list_namespaced_service_account("run-1").items
    assert sorted(s.metadata.name for s in sas) == ["default", "runner"]
    kube.rbac.create_namespaced_role(
        "run-1",
        {
            "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    )
    kube.rbac.create_namespaced_role_binding(
        "run-1",
        {
            "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": "run-1"}],
        },
    )
    assert kube.rbac.read_namespaced_role_binding("rb", "run-1").role_ref.name == "r"
    kube.core.create_namespaced_event(
        "run-1",
        {
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Pod", "name": "x", "namespace": "run-1"},
            "reason": "Started",
        },
    )
    events = kube.core.list_namespaced_event(
        "run-1", field_selector="involvedObject.kind=Pod,involvedObject.name=x"
    )
    assert [e.reason for e in events.items] == ["Started"]
    kube.core.delete_namespace("run-1")
    with pytest.raises(ApiException) as e:
        kube.core.read_namespace("run-1")
    assert e.value.status == 404


def test_graceful_pod_deletion(api: Api, kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("bound", nodeName="n1"))
    pod = kube.core.delete_namespaced_pod("bound", "default")
    assert pod.metadata.deletion_timestamp is not None
    assert (
        kube.core.read_namespaced_pod("bound", "default").metadata.deletion_grace_period_seconds
        == 30
    )
    kube.core.delete_namespaced_pod(
        "bound", "default", body=client.V1DeleteOptions(grace_period_seconds=0)
    )
    with pytest.raises(ApiException):
        kube.core.read_namespaced_pod("bound", "default")
    kube.core.create_namespaced_pod("default", pod_manifest("free"))
    kube.core.delete_namespaced_pod("free", "default")
    assert kube.core.list_namespaced_pod("default").items == []


def _job_with_pods(api: Api, kube: Kube) -> None:
    job = kube.batch.create_namespaced_job("default", job_manifest())
    for name, node in (("j-a", None), ("j-b", "n1")):
        manifest = pod_manifest(name)
        if node:
            manifest["spec"]["nodeName"] = node
        manifest["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": "j",
                "uid": job.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        kube.core.create_namespaced_pod("default", manifest)


def test_cascade_modes_over_http(api: Api, kube: Kube) -> None:
    _job_with_pods(api, kube)
    status = kube.batch.delete_namespaced_job("j", "default", propagation_policy="Background")
    assert status.status == "Success"
    assert [p.metadata.name for p in kube.core.list_namespaced_pod("default").items] == ["j-b"]
    kube.core.delete_namespaced_pod("j-b", "default", grace_period_seconds=0)

    _job_with_pods(api, kube)
    kube.batch.delete_namespaced_job(
        "j", "default", body=client.V1DeleteOptions(propagation_policy="Foreground")
    )
    job = kube.batch.read_namespaced_job("j", "default")
    assert job.metadata.finalizers == ["foregroundDeletion"] and job.metadata.deletion_timestamp
    kube.core.delete_namespaced_pod("j-b", "default", grace_period_seconds=0)
    with pytest.raises(ApiException):
        kube.batch.read_namespaced_job("j", "default")

    _job_with_pods(api, kube)
    kube.batch.delete_namespaced_job("j", "default", propagation_policy="Orphan")
    pods = kube.core.list_namespaced_pod("default").items
    assert len(pods) == 2 and all(p.metadata.owner_references is None for p in pods)


def test_delete_collection_and_request_counts(api: Api, kube: Kube) -> None:
    for i in range(3):
        kube.core.create_namespaced_pod("default", pod_manifest(f"p{i}", {"grp": str(i % 2)}))
    kube.core.delete_collection_namespaced_pod("default", label_selector="grp=0")
    assert [p.metadata.name for p in kube.core.list_namespaced_pod("default").items] == ["p1"]
    counts = api.server.request_counts
    assert counts[("create", "pods")] == 3 and counts[("deletecollection", "pods")] == 1
    assert counts[("list", "pods")] == 1


def test_dry_run_is_refused_not_applied(api: Api) -> None:
    code, _, body = api.raw(
        "POST", "/api/v1/namespaces/default/pods?dryRun=All", pod_manifest("dry")
    )
    assert code == 400 and body["reason"] == "BadRequest"
    assert api.store.list("pods")[0] == []


def test_stop_closes_keep_alive_connections(api: Api) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=5)
    conn.request("GET", "/api/v1/namespaces")
    assert conn.getresponse().read()
    api.server.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn.request("GET", "/api/v1/namespaces")
        conn.getresponse()
    conn.close()
