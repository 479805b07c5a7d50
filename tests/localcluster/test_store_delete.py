"""Store deletion: graceful pods, finalizers, preconditions, cascades, namespaces."""

from __future__ import annotations

import pytest

from zenml_oom_orchestrator.localcluster import BadRequest, Conflict, Forbidden, NotFound, Store

from .store_objects import job, names, owned_pod, pod


@pytest.fixture
def store() -> Store:
    return Store(history_size=50)


# -- deletion ----------------------------------------------------------------------------------


def test_unbound_pod_goes_at_once_bound_pod_waits_for_kubelet(store: Store) -> None:
    store.create("pods", pod("free"))
    gone = store.delete("pods", "default", "free")
    assert gone["metadata"]["name"] == "free"
    with pytest.raises(NotFound):
        store.get("pods", "default", "free")

    store.create("pods", pod("bound", nodeName="node-1", terminationGracePeriodSeconds=10))
    marked = store.delete("pods", "default", "bound")
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 10
    assert store.get("pods", "default", "bound")["metadata"]["deletionTimestamp"]
    store.delete("pods", "default", "bound", grace_period_seconds=0)  # the kubelet's final delete
    with pytest.raises(NotFound):
        store.get("pods", "default", "bound")


def test_finished_pod_on_node_goes_at_once(store: Store) -> None:
    store.create("pods", pod("done", nodeName="n"))
    store.mutate("pods", "default", "done", lambda o: o["status"].update(phase="Succeeded"))
    store.delete("pods", "default", "done")
    with pytest.raises(NotFound):
        store.get("pods", "default", "done")


def test_finalizers_hold_deletion(store: Store) -> None:
    s = store.create("secrets", {"metadata": {"name": "s", "finalizers": ["x/y"]}})
    assert s["type"] == "Opaque"
    held = store.delete("secrets", "default", "s")
    assert held["metadata"]["deletionTimestamp"]
    with pytest.raises(Forbidden):
        store.mutate("secrets", "default", "s", lambda o: o["metadata"]["finalizers"].append("z"))
    store.mutate("secrets", "default", "s", lambda o: o["metadata"].update(finalizers=[]))
    with pytest.raises(NotFound):
        store.get("secrets", "default", "s")


def test_delete_preconditions(store: Store) -> None:
    store.create("pods", pod())
    with pytest.raises(Conflict):
        store.delete("pods", "default", "p", preconditions={"uid": "other"})
    with pytest.raises(BadRequest):
        store.delete("pods", "default", "p", propagation_policy="Sideways")


def test_cascade_background(store: Store) -> None:
    j = store.create("jobs", job())
    store.create("pods", owned_pod("free", j))
    store.create("pods", owned_pod("bound", j, nodeName="n"))
    store.delete("jobs", "default", "j", propagation_policy="Background")
    with pytest.raises(NotFound):
        store.get("jobs", "default", "j")
    assert names(store.list("pods")[0]) == ["bound"]
    assert store.get("pods", "default", "bound")["metadata"]["deletionTimestamp"]


def test_cascade_foreground_waits_for_dependents(store: Store) -> None:
    j = store.create("jobs", job())
    store.create("pods", owned_pod("free", j))
    store.create("pods", owned_pod("bound", j, nodeName="n"))
    held = store.delete("jobs", "default", "j", propagation_policy="Foreground")
    assert held["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert held["metadata"]["deletionTimestamp"]
    assert names(store.list("pods")[0]) == ["bound"]
    assert store.get("jobs", "default", "j")["metadata"]["finalizers"] == ["foregroundDeletion"]
    store.delete("pods", "default", "bound", grace_period_seconds=0)
    with pytest.raises(NotFound):
        store.get("jobs", "default", "j")


def test_cascade_orphan_and_job_default_is_orphan(store: Store) -> None:
    for policy in ("Orphan", None):
        j = store.create("jobs", job())
        store.create("pods", owned_pod("p", j))
        store.delete("jobs", "default", "j", propagation_policy=policy)
        assert "ownerReferences" not in store.get("pods", "default", "p")["metadata"]
        store.delete("pods", "default", "p")


def test_pod_with_two_owners_survives_one(store: Store) -> None:
    a = store.create("jobs", job("a"))
    b = store.create("jobs", job("b"))
    p = owned_pod("p", a)
    p["metadata"]["ownerReferences"] += owned_pod("x", b)["metadata"]["ownerReferences"]
    store.create("pods", p)
    store.delete("jobs", "default", "a", propagation_policy="Background")
    refs = store.get("pods", "default", "p")["metadata"]["ownerReferences"]
    assert [r["name"] for r in refs] == ["b"]
    store.delete("jobs", "default", "b", propagation_policy="Background")
    assert store.list("pods")[0] == []


def test_namespace_deletion_removes_contents(store: Store) -> None:
    ns = store.create("namespaces", {"metadata": {"name": "run"}})
    assert ns["status"]["phase"] == "Active"
    assert names(store.list("serviceaccounts", "run")[0]) == ["default"]
    store.create("pods", pod("bound", nodeName="n"), namespace="run")
    store.create("secrets", {"metadata": {"name": "s"}}, namespace="run")
    held = store.delete("namespaces", None, "run")
    assert held["status"]["phase"] == "Terminating"
    with pytest.raises(Forbidden):
        store.create("secrets", {"metadata": {"name": "t"}}, namespace="run")
    assert names(store.list("pods", "run")[0]) == ["bound"]
    store.delete("pods", "run", "bound", grace_period_seconds=0)
    with pytest.raises(NotFound):
        store.get("namespaces", None, "run")
