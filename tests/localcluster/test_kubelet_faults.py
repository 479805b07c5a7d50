"""Node faults: a lost pod, a NotReady node, node-pressure eviction, failing image pulls."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.classify import classify
from zenml_oom_orchestrator.localcluster.kubelet import Kubelet
from zenml_oom_orchestrator.localcluster.kubelet.testing import (
    events_for,
    pod_body,
    process_gone,
    running_node,
    wait_pod,
)
from zenml_oom_orchestrator.localcluster.nodelifecycle import NodeLifecycleController
from zenml_oom_orchestrator.localcluster.store import Store
from zenml_oom_orchestrator.localcluster.testing import healthy_peer_node, wait_for
from zenml_oom_orchestrator.outcome import OutcomeKind

pytestmark = pytest.mark.cluster


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Store, Kubelet]]:
    with running_node(tmp_path, image_pull_failures=["registry.invalid/*"]) as pair:
        yield pair


def start_sleeper(store: Store, name: str) -> tuple[dict[str, Any], int]:
    store.create("pods", pod_body(name, ["sleep", "60"], memory_limit="128Mi"))
    pod = wait_pod(store, name, phases=("Running",))
    return pod, int(pod["status"]["containerStatuses"][0]["containerID"].split("//")[1])


def test_lose_pod_kills_process_and_pod_vanishes(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    pod, pid = start_sleeper(store, "lost")
    kubelet.lose_pod("default", "lost")
    assert process_gone(pid)
    assert not store.list("pods", field_selector="metadata.name=lost")[0]
    assert not (kubelet.backend.root / pod["metadata"]["uid"]).exists()


def _pod_condition(pod: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in pod["status"]["conditions"] if c["type"] == kind), None)


def _wait_ready(store: Store, name: str) -> dict[str, Any]:
    """Phase Running comes a write before the container is ready; wait for both."""

    def ready() -> dict[str, Any] | None:
        pod = store.get("pods", "default", name)
        cond = _pod_condition(pod, "Ready") if pod["status"].get("conditions") else None
        return pod if cond is not None and cond["status"] == "True" else None

    return wait_for(ready, what=f"{name} ready")


def test_lost_node_pods_stay_running_marked_not_ready_as_on_a_real_cluster(
    node: tuple[Store, Kubelet],
) -> None:
    """As kube-controller-manager 1.35 shows a node that stopped reporting: the node's
    conditions go Unknown with the unreachable taints; each pod keeps phase Running with no
    reason, only its Ready condition goes False (MarkPodsNotReady, a NodeNotReady Event); with
    the default 300 s toleration nothing evicts it yet. The only node NotReady: the controller
    takes that for a partition of the control plane (full disruption), so no NoExecute taint."""
    store, kubelet = node
    _, pid = start_sleeper(store, "orphan")
    pod = _wait_ready(store, "orphan")
    assert {(t["key"], t["tolerationSeconds"]) for t in pod["spec"]["tolerations"]} == {
        ("node.kubernetes.io/not-ready", 300),
        ("node.kubernetes.io/unreachable", 300),
    }
    controller = NodeLifecycleController(store)
    kubelet.set_node_ready(False)
    controller.sync()
    pod = store.get("pods", "default", "orphan")
    assert pod["status"]["phase"] == "Running"
    assert "reason" not in pod["status"] and "message" not in pod["status"]
    assert _pod_condition(pod, "Ready")["status"] == "False"  # type: ignore[index]
    assert _pod_condition(pod, "ContainersReady")["status"] == "True"  # type: ignore[index]
    assert _pod_condition(pod, "DisruptionTarget") is None
    assert "deletionTimestamp" not in pod["metadata"]
    assert [
        (e["reason"], e["message"], e["source"]["component"])
        for e in events_for(store, "orphan")
        if e["type"] == "Warning"
    ] == [("NodeNotReady", "Node is not ready", "node-controller")]
    assert process_gone(pid)
    node_obj = store.get("nodes", None, "node-1")
    ready = next(c for c in node_obj["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown",
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
    )
    assert [(t["key"], t["effect"]) for t in node_obj["spec"]["taints"]] == [
        ("node.kubernetes.io/unreachable", "NoSchedule")
    ]
    kubelet.set_node_ready(True)
    assert "taints" not in store.get("nodes", None, "node-1")["spec"]
    # Deleting the lost pod completes once a kubelet is back.
    store.delete("pods", "default", "orphan")
    wait_for(lambda: not store.list("pods", field_selector="metadata.name=orphan")[0], what="gone")


def test_lost_node_pod_is_evicted_after_its_toleration_and_stays_terminating(
    node: tuple[Store, Kubelet],
) -> None:
    """Beside a Ready peer node the silent node gets the unreachable NoExecute taint; after
    tolerationSeconds the taint eviction controller adds DisruptionTarget
    (DeletionByTaintManager) and deletes the pod; no kubelet confirms, so it stays Running and
    Terminating until the kubelet is back."""
    store, kubelet = node
    body = pod_body("tolerant", ["sleep", "60"], memory_limit="128Mi")
    body["spec"]["tolerations"] = [
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 1,
        }
    ]
    store.create("pods", body)
    wait_pod(store, "tolerant", phases=("Running",))
    _wait_ready(store, "tolerant")
    controller = NodeLifecycleController(store, period=0.1)
    controller.start()
    try:
        with healthy_peer_node(store):
            kubelet.set_node_ready(False)
            wait_for(
                lambda: store.get("pods", "default", "tolerant")["metadata"].get(
                    "deletionTimestamp"
                ),
                timeout=10,
                what="the taint eviction",
            )
            time.sleep(0.5)  # no kubelet: the deletion is never confirmed
            pod = store.get("pods", "default", "tolerant")
            assert pod["status"]["phase"] == "Running"
            assert "reason" not in pod["status"]
            target = _pod_condition(pod, "DisruptionTarget")
            assert target is not None
            assert (target["status"], target["reason"], target["message"]) == (
                "True",
                "DeletionByTaintManager",
                "Taint manager: deleting due to NoExecute taint",
            )
            assert target["observedGeneration"] == 1
            assert pod["metadata"]["deletionGracePeriodSeconds"] == 30
            # Our classifier's real-tier fixture for this shape says the same (disrupted).
            assert classify(pod, node_lost_timeout=300).kind is OutcomeKind.DISRUPTED
            assert ("TaintManagerEviction", "Marking for deletion Pod default/tolerant") in {
                (e["reason"], e["message"]) for e in events_for(store, "tolerant")
            }
            kubelet.set_node_ready(True)  # the kubelet back confirms the deletion
            wait_for(
                lambda: not store.list("pods", field_selector="metadata.name=tolerant")[0],
                what="gone",
            )
    finally:
        controller.stop()


def test_evict_sets_disruption_target_and_evicted(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    _, pid = start_sleeper(store, "evictee")
    pod = kubelet.evict_pod("default", "evictee")
    status = pod["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "Evicted")
    assert status["message"].startswith("The node was low on resource: memory. ")
    assert "Container main was using " in status["message"]
    assert status["message"].endswith("has larger consumption of memory. ")
    target = next(c for c in status["conditions"] if c["type"] == "DisruptionTarget")
    assert (target["status"], target["reason"]) == ("True", "TerminationByKubelet")
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 137 and term["reason"] != "OOMKilled"
    assert process_gone(pid)
    assert any(e["reason"] == "Evicted" for e in events_for(store, "evictee"))


def test_image_pull_failure_alternates_and_stays_pending(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    body = pod_body("pull", ["true"])
    body["spec"]["containers"][0]["image"] = "registry.invalid/app:1"
    store.create("pods", body)
    seen: set[str] = set()

    def both() -> bool:
        status = store.get("pods", "default", "pull")["status"]
        state = (status.get("containerStatuses") or [{}])[0].get("state", {})
        seen.add(state.get("waiting", {}).get("reason", ""))
        assert status["phase"] == "Pending"
        return {"ErrImagePull", "ImagePullBackOff"} <= seen

    wait_for(both, timeout=5, what="ErrImagePull and ImagePullBackOff")
    reasons = {e["reason"] for e in events_for(store, "pull")}
    assert {"Pulling", "Failed", "BackOff"} <= reasons
    store.delete("pods", "default", "pull")
    wait_for(lambda: not store.list("pods", field_selector="metadata.name=pull")[0], what="gone")


def test_fail_image_pulls_at_runtime(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    kubelet.fail_image_pulls("broken:*")
    body = pod_body("later", ["true"])
    body["spec"]["containers"][0]["image"] = "broken:v2"
    store.create("pods", body)

    def reason() -> str:
        statuses = store.get("pods", "default", "later")["status"].get("containerStatuses")
        return str(statuses and statuses[0]["state"].get("waiting", {}).get("reason"))

    assert wait_for(lambda: reason() in ("ErrImagePull", "ImagePullBackOff"), what="pull error")
    assert os.path.isdir(kubelet.dir)


def test_missing_image_with_pull_policy_never_is_err_image_never_pull(
    node: tuple[Store, Kubelet],
) -> None:
    store, _ = node
    body = pod_body("never", ["true"])
    body["spec"]["containers"][0].update(image="registry.invalid/x:1", imagePullPolicy="Never")
    store.create("pods", body)

    def waiting() -> Any:
        pod = store.get("pods", "default", "never")
        statuses = pod["status"].get("containerStatuses")
        return pod if statuses and "waiting" in statuses[0]["state"] else None

    pod = wait_for(waiting, what="waiting")
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "ErrImageNeverPull",
        "message": 'Container image "registry.invalid/x:1" is not present with pull policy of Never',
    }
    reasons = {e["reason"] for e in events_for(store, "never")}
    assert "ErrImageNeverPull" in reasons and "Pulling" not in reasons


def test_relist_without_the_pod_stops_its_worker(node: tuple[Store, Kubelet]) -> None:
    """A pod deleted while the watch was down (410, re-list) must not run on forever."""
    store, kubelet = node
    _, pid = start_sleeper(store, "missed")
    kubelet._on_sync([])  # what the informer calls with a re-list that lacks the pod
    wait_for(lambda: process_gone(pid), what="process killed")
    assert not kubelet.workers
