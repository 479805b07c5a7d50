"""Store semantics: what the API server layer and the controllers rely on."""

from __future__ import annotations

import time
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    Invalid,
    NotFound,
    Store,
)

from .store_objects import job, names, pod


@pytest.fixture
def store() -> Store:
    return Store(history_size=50)


# -- create / get / update ---------------------------------------------------------------------


def test_create_fills_metadata_and_defaults(store: Store) -> None:
    p = store.create("pods", {"metadata": {"generateName": "step-"}, "spec": pod()["spec"]})
    meta = p["metadata"]
    assert meta["name"].startswith("step-") and len(meta["name"]) == 10
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["namespace"] == "default" and meta["resourceVersion"].isdigit()
    assert p["kind"] == "Pod" and p["apiVersion"] == "v1"
    assert p["status"]["phase"] == "Pending" and p["spec"]["restartPolicy"] == "Always"
    assert store.get("pods", "default", meta["name"]) == p


def test_job_defaults_selector_and_template_labels(store: Store) -> None:
    j = store.create("jobs", job())
    uid = j["metadata"]["uid"]
    assert j["apiVersion"] == "batch/v1" and j["spec"]["backoffLimit"] == 6
    # As kube-apiserver 1.27+: the selector uses the batch.kubernetes.io/ label.
    assert j["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert j["spec"]["manualSelector"] is False
    labels = j["spec"]["template"]["metadata"]["labels"]
    assert labels["controller-uid"] == uid and labels["job-name"] == "j"


def test_limits_default_requests(store: Store) -> None:
    spec = pod()["spec"]
    spec["containers"][0]["resources"] = {"limits": {"memory": "256Mi", "cpu": "1"}}
    p = store.create("pods", {"metadata": {"name": "g"}, "spec": spec})
    assert p["spec"]["containers"][0]["resources"]["requests"] == {"memory": "256Mi", "cpu": "1"}
    assert p["status"]["qosClass"] == "Guaranteed"


def test_returned_objects_are_copies(store: Store) -> None:
    p = store.create("pods", pod())
    p["metadata"]["labels"]["x"] = "y"
    store.get("pods", "default", "p")["metadata"]["labels"]["z"] = "w"
    assert store.get("pods", "default", "p")["metadata"]["labels"] == {}


def test_already_exists_not_found_and_missing_namespace(store: Store) -> None:
    store.create("pods", pod())
    with pytest.raises(AlreadyExists) as e:
        store.create("pods", pod())
    assert e.value.status()["code"] == 409 and e.value.status()["reason"] == "AlreadyExists"
    with pytest.raises(NotFound) as nf:
        store.get("pods", "default", "nope")
    assert nf.value.status()["message"] == 'pods "nope" not found'
    with pytest.raises(NotFound):
        store.create("pods", pod(), namespace="missing")
    with pytest.raises(NotFound):
        store.get("widgets", None, "x")


def test_update_conflict_on_stale_resource_version(store: Store) -> None:
    p = store.create("pods", pod())
    p["metadata"]["labels"] = {"a": "1"}
    updated = store.update("pods", p)
    assert int(updated["metadata"]["resourceVersion"]) > int(p["metadata"]["resourceVersion"])
    with pytest.raises(Conflict) as e:
        store.update("pods", p)  # still carries the old resourceVersion
    assert "the object has been modified" in e.value.message


def test_update_keeps_status_and_status_subresource_keeps_rest(store: Store) -> None:
    p = store.create("pods", pod())
    p["status"] = {"phase": "Running"}
    p["metadata"]["labels"] = {"a": "1"}
    p = store.update("pods", p)
    assert p["status"]["phase"] == "Pending" and p["metadata"]["labels"] == {"a": "1"}
    p["status"] = {"phase": "Running"}
    p["metadata"]["labels"] = {"a": "2"}
    p = store.update("pods", p, subresource="status")
    assert p["status"]["phase"] == "Running" and p["metadata"]["labels"] == {"a": "1"}


def test_mutate_is_atomic_and_skips_no_op(store: Store) -> None:
    p = store.create("pods", pod())
    rv = p["metadata"]["resourceVersion"]
    assert store.mutate("pods", "default", "p", lambda o: None)["metadata"]["resourceVersion"] == rv
    assert (
        store.mutate("pods", "default", "p", lambda o: False)["metadata"]["resourceVersion"] == rv
    )
    out = store.mutate("pods", "default", "p", lambda o: o["status"].update(phase="Running"))
    assert out["status"]["phase"] == "Running" and out["metadata"]["resourceVersion"] != rv
    out = store.mutate(
        "pods",
        "default",
        "p",
        lambda o: (o["status"].update(phase="Failed"), o["metadata"].update(labels={"x": "y"})),
        subresource="status",
    )
    assert out["status"]["phase"] == "Failed" and out["metadata"]["labels"] == {}
    with pytest.raises(NotFound):
        store.mutate("pods", "default", "nope", lambda o: None)


def test_generation_bumps_on_spec_change(store: Store) -> None:
    j = store.create("jobs", job())
    assert j["metadata"]["generation"] == 1
    j = store.mutate("jobs", "default", "j", lambda o: o["spec"].update(suspend=True))
    assert j["metadata"]["generation"] == 2
    j = store.mutate("jobs", "default", "j", lambda o: o["status"].update(active=1))
    assert j["metadata"]["generation"] == 2


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"metadata": {"name": "Bad_Name"}}, "metadata.name"),
        ({"metadata": {"name": "a" * 254}}, "metadata.name"),
        ({"metadata": {"name": "p", "labels": {"k": "v" * 64}}}, "metadata.labels"),
        ({"metadata": {"name": "p", "labels": {"k": "bad value"}}}, "metadata.labels"),
        ({"metadata": {"name": "p", "labels": {"bad key!": "v"}}}, "metadata.labels"),
    ],
)
def test_invalid_metadata(store: Store, patch: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as e:
        store.create("pods", {**pod(), **patch})
    body = e.value.status()
    assert body["code"] == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == field


@pytest.mark.parametrize("quantity", ["12XB", "lots", "1.2.3Gi", "-1Gi", ""])
def test_invalid_quantities(store: Store, quantity: str) -> None:
    spec = pod()["spec"]
    spec["containers"][0]["resources"] = {"limits": {"memory": quantity}}
    with pytest.raises(Invalid) as e:
        store.create("pods", {"metadata": {"name": "q"}, "spec": spec})
    assert e.value.causes and "resources.limits[memory]" in e.value.causes[0]["field"]


def test_valid_quantities_and_request_above_limit(store: Store) -> None:
    spec = pod()["spec"]
    spec["containers"][0]["resources"] = {
        "limits": {"memory": "1.5Gi", "cpu": "500m"},
        "requests": {"memory": "1e9", "cpu": "0.25"},
    }
    store.create("pods", {"metadata": {"name": "ok"}, "spec": spec})
    spec["containers"][0]["resources"]["requests"]["memory"] = "2Gi"
    with pytest.raises(Invalid, match="must be less than or equal to memory limit"):
        store.create("pods", {"metadata": {"name": "bad"}, "spec": spec})


def test_namespace_names_are_dns_labels_and_job_restart_policy(store: Store) -> None:
    with pytest.raises(Invalid):
        store.create("namespaces", {"metadata": {"name": "has.dot"}})
    store.create("pods", {"metadata": {"name": "has.dot"}, "spec": pod()["spec"]})
    bad = job()
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(Invalid, match="Unsupported value"):
        store.create("jobs", bad)


# -- selectors ---------------------------------------------------------------------------------


def test_label_selectors(store: Store) -> None:
    store.create("pods", pod("a", {"app": "x", "tier": "web"}))
    store.create("pods", pod("b", {"app": "y"}))
    store.create("pods", pod("c", {}))
    cases = {
        "app=x": ["a"],
        "app==x": ["a"],
        "app!=x": ["b", "c"],
        "app in (x, y)": ["a", "b"],
        "app notin (x)": ["b", "c"],
        "app": ["a", "b"],
        "!app": ["c"],
        "app,!tier": ["b"],
        "app in (x,y),tier=web": ["a"],
    }
    for selector, expected in cases.items():
        assert names(store.list("pods", label_selector=selector)[0]) == expected, selector
    with pytest.raises(BadRequest):
        store.list("pods", label_selector="app in (x")
    with pytest.raises(BadRequest):
        store.list("pods", label_selector="app=bad value")


def test_field_selectors(store: Store) -> None:
    store.create("namespaces", {"metadata": {"name": "other"}})
    store.create("pods", pod("a", nodeName="n1"))
    store.create("pods", pod("b"))
    store.create("pods", pod("a"), namespace="other")
    store.mutate("pods", "default", "b", lambda o: o["status"].update(phase="Running"))
    assert names(store.list("pods", field_selector="metadata.name=a")[0]) == ["a", "a"]
    assert names(store.list("pods", "other")[0]) == ["a"]
    assert len(store.list("pods", field_selector="metadata.namespace=other")[0]) == 1
    assert names(store.list("pods", field_selector="status.phase=Running")[0]) == ["b"]
    assert names(store.list("pods", field_selector="spec.nodeName=n1")[0]) == ["a"]
    assert names(store.list("pods", "default", field_selector="spec.nodeName=")[0]) == ["b"]
    assert names(store.list("pods", field_selector="status.phase!=Running")[0]) == ["a", "a"]


def test_event_involved_object_field_selectors(store: Store) -> None:
    p = store.create("pods", pod())
    for i, (kind, uid) in enumerate([("Pod", p["metadata"]["uid"]), ("Job", "other")]):
        store.create(
            "events",
            {
                "metadata": {"name": f"p.{i}"},
                "involvedObject": {"kind": kind, "name": "p", "namespace": "default", "uid": uid},
                "reason": "Scheduled",
            },
        )
    sel = f"involvedObject.name=p,involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid={p['metadata']['uid']}"
    assert names(store.list("events", "default", field_selector=sel)[0]) == ["p.0"]


# -- watch -------------------------------------------------------------------------------------


def drain(w: Any, n: int, wait: float = 2.0) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    deadline = time.monotonic() + wait
    while len(out) < n and time.monotonic() < deadline:
        got = w.next_shared(0.05)
        if got is not None:
            out.append((got[0], got[1]["metadata"].get("name", "")))
    return out


def test_watch_from_resource_version_and_initial_state(store: Store) -> None:
    store.create("pods", pod("a"))
    _, rv = store.list("pods")
    store.create("pods", pod("b"))
    with store.watch("pods", resource_version=rv) as w:
        store.mutate("pods", "default", "a", lambda o: o["metadata"].update(labels={"x": "1"}))
        store.delete("pods", "default", "b")
        assert drain(w, 3) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    with store.watch("pods") as w:
        assert drain(w, 1) == [("ADDED", "a")]


def test_watch_selector_transitions(store: Store) -> None:
    store.create("pods", pod("a", {"run": "1"}))
    with store.watch("pods", resource_version=store.resource_version, label_selector="run=1") as w:
        store.mutate("pods", "default", "a", lambda o: o["metadata"].update(labels={"run": "2"}))
        store.mutate("pods", "default", "a", lambda o: o["metadata"].update(labels={"run": "1"}))
        store.create("pods", pod("other"))
        store.mutate("pods", "default", "a", lambda o: o["status"].update(phase="Running"))
        assert drain(w, 3) == [("DELETED", "a"), ("ADDED", "a"), ("MODIFIED", "a")]
        assert drain(w, 1, wait=0.2) == []


def test_watch_namespace_filter_and_deleted_carries_new_rv(store: Store) -> None:
    store.create("namespaces", {"metadata": {"name": "other"}})
    with store.watch("pods", "other", resource_version=store.resource_version) as w:
        store.create("pods", pod("a"))
        store.create("pods", pod("b"), namespace="other")
        store.delete("pods", "other", "b")
        assert drain(w, 2) == [("ADDED", "b"), ("DELETED", "b")]
    _, rv = store.list("pods")
    assert int(rv) == int(store.resource_version)


def test_watch_expired_after_history_trimmed() -> None:
    store = Store(history_size=3)
    store.create("pods", pod("a"))
    _, old_rv = store.list("pods")
    for i in range(5):
        p = store.get("pods", "default", "a")
        p["metadata"]["labels"] = {"i": str(i)}
        store.update("pods", p)
    with pytest.raises(Expired) as e:
        store.watch("pods", resource_version=old_rv)
    assert e.value.status()["code"] == 410
    _, rv = store.list("pods")
    store.watch("pods", resource_version=rv).stop()  # recent enough
    store.create("pods", pod("b"))
    store.trim_history()
    with pytest.raises(Expired):
        store.watch("pods", resource_version=rv)


def test_watch_timeout_and_bookmarks(store: Store) -> None:
    start = time.monotonic()
    assert list(store.watch("pods", resource_version=store.resource_version, timeout=0.3)) == []
    assert 0.25 < time.monotonic() - start < 2
    store.create("pods", pod("a"))
    w = store.watch("pods", resource_version="0", timeout=1.0, bookmark_interval=0.2)
    events = list(w)
    assert events[0][0] == "ADDED"
    marks = [o for t, o in events if t == "BOOKMARK"]
    assert marks and marks[-1]["metadata"]["resourceVersion"] == store.resource_version
    assert marks[-1]["kind"] == "Pod"


def test_watch_stop_ends_iteration_and_unregisters(store: Store) -> None:
    w = store.watch("pods")
    w.stop()
    assert list(w) == []
    assert not store._watchers["pods"]


def test_slow_watcher_is_cut_off() -> None:
    store = Store(max_watch_queue=3)
    w = store.watch("pods", resource_version=store.resource_version)
    for i in range(5):
        store.create("pods", pod(f"p{i}"))
    assert w.overflowed and len(list(w)) == 3
