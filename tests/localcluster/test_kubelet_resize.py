"""In-place resize on the local kubelet with real processes and real cgroup limits: the
running container's limit changes without a restart, and the status, conditions and Events
follow kubelet 1.35 (sequence and words checked on the real tier)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.kubelet import Kubelet
from zenml_oom_orchestrator.localcluster.kubelet.testing import (
    events_for,
    pod_body,
    wait_pod,
)
from zenml_oom_orchestrator.localcluster.resize import patch_resize
from zenml_oom_orchestrator.localcluster.store import Store
from zenml_oom_orchestrator.localcluster.testing import wait_for

from .real_cgroups import node

__all__ = ["node"]  # fixture

pytestmark = pytest.mark.cluster

MiB = 1 << 20
SMP = "application/strategic-merge-patch+json"
# Waits for a file, then allocates and touches 600 MiB: OOM-killed under 256Mi.
GROW_AFTER_GO = (
    "import os, sys, time\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
    "b = bytearray(600 << 20); b[::4096] = b'x' * (600 << 8)\n"
    "print('allocated 600 MiB', flush=True)\n"
)


def resources(memory: str) -> dict[str, Any]:
    return {"limits": {"memory": memory}, "requests": {"memory": memory}}


def resize_to(store: Store, name: str, memory: str) -> dict[str, Any]:
    body = {"spec": {"containers": [{"name": "main", "resources": resources(memory)}]}}
    return patch_resize(store, "default", name, body, SMP)


def cgroup_limit(kubelet: Kubelet, pod: dict[str, Any]) -> int:
    worker = kubelet.workers[pod["metadata"]["uid"]]
    path = worker.main[0].cgroup
    assert path is not None
    name = "memory.limit_in_bytes" if kubelet.backend.name == "v1" else "memory.max"
    return int((path / name).read_text())


def running(store: Store, name: str) -> dict[str, Any]:
    return wait_pod(store, name, ("Running",))


def resize_view(pod: dict[str, Any]) -> tuple[Any, ...]:
    status = pod.get("status") or {}
    cs = (status.get("containerStatuses") or [{}])[0]
    conds = tuple(
        (c["type"], c.get("reason"))
        for c in status.get("conditions") or []
        if c["type"].startswith("PodResize")
    )
    return (
        status.get("observedGeneration"),
        (cs.get("allocatedResources") or {}).get("memory"),
        ((cs.get("resources") or {}).get("limits") or {}).get("memory"),
        conds,
    )


def test_resize_raises_the_running_limit_and_the_process_survives(
    node: tuple[Store, Kubelet], tmp_path: Path
) -> None:
    """256Mi -> 1Gi on a running container, then it allocates 600 MiB: Succeeded, restartCount
    0; the watch sees allocatedResources new with PodResizeInProgress first, then resources new
    and no condition, as a real kubelet 1.35 writes them."""
    store, kubelet = node
    go = tmp_path / "go"
    store.create("pods", pod_body("grow", [sys.executable, "-c", GROW_AFTER_GO, str(go)], "256Mi"))
    pod = running(store, "grow")
    assert cgroup_limit(kubelet, pod) == 256 * MiB
    assert resize_view(pod) == (1, "256Mi", "256Mi", ())
    rv = store.resource_version
    resized = resize_to(store, "grow", "1Gi")
    assert resized["metadata"]["generation"] == 2
    wait_for(lambda: resize_view(store.get("pods", "default", "grow"))[2] == "1Gi", 10)
    assert cgroup_limit(kubelet, pod) == 1 << 30
    seen = []
    with store.watch("pods", resource_version=rv, field_selector="metadata.name=grow") as w:
        while (got := w.next_shared(0.2)) is not None:
            view = resize_view(got[1])
            if not seen or seen[-1] != view:
                seen.append(view)
    assert seen == [
        (1, "256Mi", "256Mi", ()),  # the API server's write: only the spec moved
        (2, "1Gi", "256Mi", (("PodResizeInProgress", None),)),
        (2, "1Gi", "1Gi", ()),
    ], seen
    go.touch()
    done = wait_pod(store, "grow", timeout=90)  # touching 600 MiB takes long in an emulated VM
    status = done["status"]["containerStatuses"][0]
    assert done["status"]["phase"] == "Succeeded", status
    assert (status["restartCount"], status["state"]["terminated"]["reason"]) == (0, "Completed")
    assert "allocated 600 MiB" in kubelet.read_log("default", "grow")
    events = {e["reason"]: e for e in events_for(store, "grow")}
    body = '{"containers":[{"name":"main","resources":{"limits":{"memory":"1Gi"},"requests":{"memory":"1Gi"}}}],"generation":2}'
    assert events["ResizeStarted"]["message"] == f"Pod resize started: {body}"
    assert events["ResizeCompleted"]["message"] == f"Pod resize completed: {body}"
    assert "fieldPath" not in events["ResizeStarted"]["involvedObject"]


def test_infeasible_resize_leaves_the_limit_and_is_dropped_when_taken_back(
    node: tuple[Store, Kubelet],
) -> None:
    store, kubelet = node
    store.create(
        "pods", pod_body("inf", [sys.executable, "-c", "import time; time.sleep(60)"], "256Mi")
    )
    pod = running(store, "inf")
    resize_to(store, "inf", "100Gi")
    wait_for(lambda: resize_view(store.get("pods", "default", "inf"))[3], 10)
    now = store.get("pods", "default", "inf")
    cond = now["status"]["conditions"][0]
    node_bytes = 4 << 30  # running_node's allocatable; the kubelet adds the 100Mi threshold
    assert cond == {
        "type": "PodResizePending",
        "status": "True",
        "reason": "Infeasible",
        "message": f"Node didn't have enough capacity: memory, requested: {100 << 30}, "
        f"capacity: {node_bytes + 100 * MiB}",
        "lastProbeTime": cond["lastProbeTime"],
        "lastTransitionTime": cond["lastTransitionTime"],
        "observedGeneration": 2,
    }
    assert resize_view(now)[1:3] == ("256Mi", "256Mi")
    assert cgroup_limit(kubelet, pod) == 256 * MiB
    (event,) = [e for e in events_for(store, "inf") if e["reason"] == "ResizeInfeasible"]
    assert event["type"] == "Warning" and '"error":"Node didn' in event["message"]
    resize_to(store, "inf", "256Mi")
    wait_for(lambda: not resize_view(store.get("pods", "default", "inf"))[3], 10)
    assert store.get("pods", "default", "inf")["status"]["observedGeneration"] == 3


def test_deferred_resize_is_retried_when_room_frees(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    store.create("pods", pod_body("filler", sleep, "2Gi"))
    store.create("pods", pod_body("d", sleep, "256Mi"))
    running(store, "filler")
    pod = running(store, "d")
    resize_to(store, "d", "3Gi")
    wait_for(lambda: resize_view(store.get("pods", "default", "d"))[3], 10)
    cond = store.get("pods", "default", "d")["status"]["conditions"][0]
    assert (cond["type"], cond["reason"]) == ("PodResizePending", "Deferred")
    assert cond["message"] == (
        f"Node didn't have enough resource: memory, requested: {3 << 30}, used: {2 << 30}, "
        f"capacity: {4 << 30}"
    )
    assert cgroup_limit(kubelet, pod) == 256 * MiB
    quiet = store.get("pods", "default", "d")["metadata"]["resourceVersion"]
    time.sleep(1.5)  # a waiting resize is not rewritten on every status echo
    assert store.get("pods", "default", "d")["metadata"]["resourceVersion"] == quiet
    store.delete("pods", "default", "filler", grace_period_seconds=0)
    wait_for(lambda: resize_view(store.get("pods", "default", "d"))[2] == "3Gi", 15)
    assert cgroup_limit(kubelet, pod) == 3 << 30
    assert not resize_view(store.get("pods", "default", "d"))[3]
    reasons = [e["reason"] for e in events_for(store, "d") if e["reason"].startswith("Resize")]
    assert sorted(reasons) == ["ResizeCompleted", "ResizeDeferred", "ResizeStarted"]


def test_scheduler_counts_the_resized_request(node: tuple[Store, Kubelet]) -> None:
    """Node accounting follows an admitted resize: after 256Mi -> 3Gi on a 4Gi node, a 2Gi pod
    no longer fits."""
    store, _ = node
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    store.create("pods", pod_body("big", sleep, "256Mi"))
    running(store, "big")
    resize_to(store, "big", "3Gi")
    wait_for(lambda: resize_view(store.get("pods", "default", "big"))[2] == "3Gi", 10)
    store.create("pods", pod_body("late", sleep, "2Gi"))
    time.sleep(1)
    late = store.get("pods", "default", "late")
    assert not late["spec"].get("nodeName")
    scheduled = next(c for c in late["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["reason"] == "Unschedulable"
