"""The informer: list, watch from the list's version, resume after a broken watch, re-list on
410 and deliver what changed or vanished in the gap."""

from __future__ import annotations

import json
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.supervisor.cluster import WatchExpired
from zenml_oom_orchestrator.supervisor.informer import SHARED_STRING_MAX, PodInformer


def pod(name: str, rv: int, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv)}, "status": {"phase": phase}}


class ScriptedCluster:
    """Lists return `lists` in turn; each watch call plays the next script (a list of
    events, or an exception to raise after them), then blocks until stopped."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[list[Any]]) -> None:
        self.lists, self.watches = lists, watches
        self.list_calls = 0
        self.watch_from: list[str] = []
        self.idle = threading.Event()

    def list_pods(self, selector: str) -> tuple[list[dict[str, Any]], str]:
        items = self.lists[min(self.list_calls, len(self.lists) - 1)]
        self.list_calls += 1
        rv = max((int(p["metadata"]["resourceVersion"]) for p in items), default=0)
        return items, str(rv)

    def watch_pods(
        self, selector: str, rv: str, timeout: int, on_open: Callable[[Callable[[], None]], None]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        self.watch_from.append(rv)
        stop = threading.Event()
        on_open(stop.set)
        script = self.watches.pop(0) if self.watches else []
        for item in script:
            if isinstance(item, BaseException):
                raise item
            yield item
        if not self.watches:
            self.idle.set()
        stop.wait(5)


def test_relist_after_410_delivers_changes_and_deletions_from_the_gap() -> None:
    seen: list[tuple[str, str]] = []
    cluster = ScriptedCluster(
        lists=[
            [pod("a", 1), pod("b", 2)],
            # after the 410: a changed, b vanished, c appeared
            [pod("a", 7, "Failed"), pod("c", 8)],
        ],
        watches=[
            [("MODIFIED", pod("a", 3)), WatchExpired("too old")],
            [("BOOKMARK", {"metadata": {"resourceVersion": "9"}})],
        ],
    )
    inf = PodInformer(
        cluster,
        "run_id=x",
        lambda p: seen.append((p["metadata"]["name"], p["metadata"]["resourceVersion"])),
    )  # type: ignore[arg-type]
    inf.start()
    try:
        assert inf.wait_synced(5)
        wait_for(cluster.idle.is_set, timeout=5, what="scripts played")
        assert inf.relists == 1
        assert inf.get("a")["status"]["phase"] == "Failed"  # type: ignore[index]
        assert inf.get("b") is None and inf.deleted("b") == pod("b", 2)
        assert inf.get("c") is not None
        assert ("b", "2") in seen and ("a", "7") in seen and ("c", "8") in seen
        assert cluster.watch_from == ["2", "8"]  # each watch from the list it follows
    finally:
        inf.stop()


def test_broken_watch_resumes_from_last_version_without_relisting() -> None:
    cluster = ScriptedCluster(
        lists=[[pod("a", 1)]],
        watches=[
            [("MODIFIED", pod("a", 5)), ConnectionResetError("dropped")],
            [("DELETED", pod("a", 6, "Failed"))],
        ],
    )
    inf = PodInformer(cluster, "run_id=x", lambda p: None, max_backoff=0.01)  # type: ignore[arg-type]
    inf.start()
    try:
        wait_for(cluster.idle.is_set, timeout=5, what="scripts played")
        wait_for(lambda: inf.deleted("a") is not None, timeout=5, what="delete")
        assert cluster.list_calls == 1 and cluster.watch_from == ["1", "5"]
        assert inf.deleted("a")["status"]["phase"] == "Failed"  # type: ignore[index]
        inf.forget("a")
        assert inf.deleted("a") is None
    finally:
        inf.stop()


def test_assumed_pod_survives_a_list_cut_before_it_was_created() -> None:
    cluster = ScriptedCluster(lists=[[]], watches=[])
    inf = PodInformer(cluster, "run_id=x", lambda p: None)  # type: ignore[arg-type]
    inf.assume(pod("new", 10, "Pending"))
    inf._replace([])  # a re-list whose version predates the create
    assert inf.get("new") is not None and inf.deleted("new") is None
    inf._replace([pod("new", 11)])  # confirmed: no longer assumed
    inf._replace([])
    assert inf.get("new") is None and inf.deleted("new") is not None


def test_tombstones_are_bounded_by_count_and_age(monkeypatch: Any) -> None:
    from zenml_oom_orchestrator.supervisor import informer as mod

    monkeypatch.setattr(mod, "MAX_TOMBSTONES", 3)
    inf = PodInformer(ScriptedCluster([[]], []), "run_id=x", lambda p: None)  # type: ignore[arg-type]
    for i in range(10):
        inf._delete(pod(f"p{i}", i, "Failed"))
    assert [inf.deleted(f"p{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    monkeypatch.setattr(mod, "TOMBSTONE_TTL", 0.0)
    inf._delete(pod("last", 11, "Failed"))
    assert inf.deleted("p9") is None and inf.deleted("last") is None


def served_pod(name: str, rv: int) -> dict[str, Any]:
    """A step pod as the API server sends it, parsed on its own (one event, one json.loads)."""
    text = json.dumps(
        {
            "metadata": {
                "name": name,
                "resourceVersion": str(rv),
                "labels": {"app.kubernetes.io/managed-by": "zenml-oom", "run_id": "r"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}] * 20,
            },
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "localhost/zenml-oom:dev",
                        "resources": {"limits": {"memory": "512Mi"}},
                        "env": [{"name": f"ZENML_VAR_{i}", "value": "true"} for i in range(30)],
                    }
                ]
            },
            "status": {"phase": "Running", "message": "x" * (SHARED_STRING_MAX + 1)},
        }
    )
    return dict(json.loads(text))


def test_cached_pods_share_their_keys_and_short_strings_and_drop_managed_fields() -> None:
    """Issue 14's RSS: each event is parsed apart, so without sharing every cached pod held its
    own copy of every key and short value."""
    cluster = ScriptedCluster(lists=[[]], watches=[])
    inf = PodInformer(cluster, "run_id=x", lambda p: None)  # type: ignore[arg-type]
    served = [served_pod(f"p{i}", i) for i in range(200)]
    first_env = [p["spec"]["containers"][0]["env"] for p in served[:2]]
    assert first_env[0][0]["name"] is not first_env[1][0]["name"]  # as parsed: two copies
    expected = [json.loads(json.dumps(p)) for p in served]
    for p in expected:
        del p["metadata"]["managedFields"]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [json.loads(json.dumps(p)) for p in served]  # what a cache without sharing holds
        for p in kept:
            del p["metadata"]["managedFields"]
        unshared = tracemalloc.get_traced_memory()[0] - before
        del kept
        before = tracemalloc.get_traced_memory()[0]
        inf._replace(served)
        del served
        shared = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    a, b = inf.get("p0"), inf.get("p1")
    assert a is not None and b is not None
    assert [inf.get(f"p{i}") for i in range(200)] == expected  # the same content
    env_a, env_b = a["spec"]["containers"][0]["env"], b["spec"]["containers"][0]["env"]
    assert env_a[3]["name"] is env_b[3]["name"] and env_a[3]["value"] is env_b[3]["value"]
    assert next(iter(a["metadata"])) is next(iter(b["metadata"]))  # "name", one copy
    assert a["status"]["message"] is not b["status"]["message"]  # long strings are not shared
    print(f"\n200 cached pods: {unshared / 200:.0f} B each unshared, {shared / 200:.0f} B shared")
    assert shared < 0.75 * unshared


def test_events_about_a_settled_pod_are_handed_on_as_served_and_not_kept() -> None:
    """A recorded (settled) pod is never stored again, so its later events are not rebuilt for
    sharing: the engine is woken with the object as parsed, and the cache keeps only the name."""
    seen: list[dict[str, Any]] = []
    inf = PodInformer(ScriptedCluster([[]], []), "run_id=x", seen.append)  # type: ignore[arg-type]
    inf._upsert(served_pod("done", 1))
    inf.forget("done")
    later = served_pod("done", 2)
    inf._upsert(later)
    assert seen[-1] is later and "managedFields" in later["metadata"]  # untouched
    assert inf.get("done") is None and inf.names() == ["done"]
    gone = served_pod("done", 3)
    inf._delete(gone)
    assert seen[-1] is gone and inf.deleted("done") is None and inf.names() == []
    inf._upsert(served_pod("again", 5))
    inf.forget("again")
    relisted = served_pod("again", 6)
    inf._replace([relisted])  # a re-list after a 410: the settled pod is listed, not kept
    assert "managedFields" in relisted["metadata"] and inf.get("again") is None
    assert inf.names() == ["again"]
    live = served_pod("live", 4)
    inf._upsert(live)
    assert seen[-1] is not live and "managedFields" not in seen[-1]["metadata"]  # compacted
    assert inf.get("live") is seen[-1]
