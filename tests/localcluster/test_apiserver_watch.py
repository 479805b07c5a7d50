"""Watches and logs over HTTP: resourceVersions, timeouts, bookmarks, 410 Expired, forced
expiry, many concurrent watchers, and pods/log (plain, tail, follow)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException

from .apiserver_fixtures import Api, Kube, api, kube, pod_manifest

__all__ = ["api", "kube"]  # fixtures


def open_watch(api: Api, path: str) -> tuple[http.client.HTTPConnection, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked"
    return conn, resp


def read_event(resp: Any) -> dict[str, Any]:
    return json.loads(resp.readline())


def test_stream_from_resource_version_until_timeout(kube: Kube) -> None:
    rv = kube.core.list_namespaced_pod("default").metadata.resource_version
    kube.core.create_namespaced_pod("default", pod_manifest("a"))
    kube.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})
    kube.core.delete_namespaced_pod("a", "default")
    start = time.monotonic()
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            kube.core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert 0.9 < time.monotonic() - start < 3


def test_watch_without_resource_version_lists_first_and_filters(kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("a", {"run": "1"}))
    kube.core.create_namespaced_pod("default", pod_manifest("b", {"run": "2"}))
    w = watch.Watch()
    seen = []
    for e in w.stream(kube.core.list_namespaced_pod, "default", label_selector="run=1"):
        seen.append((e["type"], e["object"].metadata.name))
        if len(seen) == 1:
            kube.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"run": "3"}}})
        else:
            w.stop()
    assert seen == [("ADDED", "a"), ("DELETED", "a")]


def test_bookmarks(kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("a"))
    rv = kube.core.list_namespaced_pod("default").metadata.resource_version
    events = list(
        watch.Watch().stream(
            kube.core.list_namespaced_pod,
            "default",
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=1,
        )
    )
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert events[-1]["raw_object"]["metadata"]["resourceVersion"] == rv


def test_410_once_history_is_trimmed(api: Api, kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("a"))
    old = kube.core.list_namespaced_pod("default").metadata.resource_version
    kube.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})
    api.store.trim_history()
    with pytest.raises(ApiException) as e:
        list(
            watch.Watch().stream(
                kube.core.list_namespaced_pod, "default", resource_version=old, timeout_seconds=1
            )
        )
    assert e.value.status == 410
    conn, resp = open_watch(api, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={old}")
    event = read_event(resp)
    assert event["type"] == "ERROR" and event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    conn.close()


def test_bounded_history_expires_old_versions(api: Api, kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("a"))
    old = kube.core.list_namespaced_pod("default").metadata.resource_version
    for i in range(api.store.history_size + 1):
        kube.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"i": str(i)}}})
    conn, resp = open_watch(api, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={old}")
    assert read_event(resp)["object"]["code"] == 410
    conn.close()


def test_forced_expiry_of_open_watches(api: Api) -> None:
    conn, resp = open_watch(api, "/api/v1/namespaces/default/pods?watch=true")
    time.sleep(0.2)  # the stream is registered once its headers are sent
    assert api.server.expire_watches() == 1
    event = read_event(resp)
    assert event["type"] == "ERROR" and event["object"]["code"] == 410
    conn.close()
    api.server.faults.update(watch_expire_rate=1.0)
    conn, resp = open_watch(api, "/api/v1/pods?watch=1")
    assert read_event(resp)["object"]["code"] == 410
    conn.close()
    assert api.server.faults.injected["410"] == 1


def test_a_watcher_far_behind_gets_every_event_of_a_burst(api: Api, kube: Kube) -> None:
    """Replaying 190 events (the fixture keeps 200) crosses the server's per-chunk batch
    limit twice; a watch that lost the event read after a full batch delivered 188."""
    rv = kube.core.list_namespaced_pod("default").metadata.resource_version
    kube.core.create_namespaced_pod("default", pod_manifest("a"))
    for i in range(189):
        api.store.mutate(
            "pods", "default", "a", lambda p, i=i: p["metadata"].update(labels={"i": str(i)})
        )
    conn, resp = open_watch(
        api, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&timeoutSeconds=2"
    )
    events = [json.loads(line) for line in resp.read().splitlines()]  # until timeoutSeconds
    conn.close()
    labels = [(e["object"]["metadata"].get("labels") or {}).get("i") for e in events]
    assert labels == [None, *(str(i) for i in range(189))]


def test_watch_cluster_scoped_and_other_groups(kube: Kube) -> None:
    rv = kube.core.list_namespace().metadata.resource_version
    kube.core.create_namespace({"metadata": {"name": "run-1"}})
    events = list(
        watch.Watch().stream(kube.core.list_namespace, resource_version=rv, timeout_seconds=1)
    )
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "run-1")]


def test_hundreds_of_concurrent_watches(api: Api, kube: Kube) -> None:
    n = 200
    rv = api.store.resource_version
    streams = [
        open_watch(api, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}")
        for _ in range(n)
    ]
    start = time.monotonic()
    kube.core.create_namespaced_pod("default", pod_manifest("a"))
    got = [read_event(resp)["object"]["metadata"]["name"] for _, resp in streams]
    assert got == ["a"] * n
    assert time.monotonic() - start < 10
    for conn, _ in streams:
        conn.close()
    deadline = time.monotonic() + 5
    while api.server._streams and time.monotonic() < deadline:
        kube.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"t": "x"}}})
        time.sleep(0.1)  # a write to a closed stream is how a thread notices
        kube.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"t": "y"}}})
    assert not api.server._streams


def test_pod_logs(api: Api, kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("a"))
    api.logs[("default", "a", "main")] = "one\ntwo\nthree\n"
    assert kube.core.read_namespaced_pod_log("a", "default") == "one\ntwo\nthree\n"
    assert kube.core.read_namespaced_pod_log("a", "default", tail_lines=1) == "three\n"
    with pytest.raises(ApiException) as e:
        kube.core.read_namespaced_pod_log("a", "default", container="other")
    assert e.value.status == 400
    with pytest.raises(ApiException) as e:
        kube.core.read_namespaced_pod_log("missing", "default")
    assert e.value.status == 404


def test_followed_logs_end_with_the_pod(api: Api, kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("a"))
    api.logs[("default", "a", "main")] = "start\n"

    def finish() -> None:
        time.sleep(0.4)
        api.logs[("default", "a", "main")] += "end\n"
        api.store.mutate("pods", "default", "a", lambda o: o["status"].update(phase="Succeeded"))

    threading.Thread(target=finish).start()
    resp = kube.core.read_namespaced_pod_log("a", "default", follow=True, _preload_content=False)
    assert resp.data.decode() == "start\nend\n"
