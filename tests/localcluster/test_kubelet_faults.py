"""Node faults: a lost pod, a NotReady node, node-pressure eviction, failing image pulls."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.kubelet import Kubelet
from zenml_oom_orchestrator.localcluster.kubelet.testing import (
    events_for,
    pod_body,
    process_gone,
    running_node,
    wait_pod,
)
from zenml_oom_orchestrator.localcluster.store import Store
from zenml_oom_orchestrator.localcluster.testing import wait_for

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


def test_node_not_ready_marks_pods_node_lost(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    _, pid = start_sleeper(store, "orphan")
    kubelet.set_node_ready(False)
    pod = store.get("pods", "default", "orphan")
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Unknown", "NodeLost")
    assert pod["status"]["message"] == "Node node-1 which was running pod orphan is unresponsive"
    assert process_gone(pid)
    node_obj = store.get("nodes", None, "node-1")
    ready = next(c for c in node_obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown"
    assert {t["effect"] for t in node_obj["spec"]["taints"]} == {"NoSchedule", "NoExecute"}
    kubelet.set_node_ready(True)
    assert "taints" not in store.get("nodes", None, "node-1")["spec"]
    # The lost pod stays as the node controller left it; deleting it still completes.
    store.delete("pods", "default", "orphan")
    wait_for(lambda: not store.list("pods", field_selector="metadata.name=orphan")[0], what="gone")


def test_node_not_ready_can_fail_pods(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    start_sleeper(store, "doomed")
    kubelet.set_node_ready(False, pod_phase="Failed")
    pod = store.get("pods", "default", "doomed")
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "NodeLost")


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
