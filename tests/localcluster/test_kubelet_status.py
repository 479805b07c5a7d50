"""Pod conditions and terminated states as kubelet 1.35 writes them (checked against the real
tier by integration/realcluster/test_conformance.py), with real processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.kubelet import Kubelet
from zenml_oom_orchestrator.localcluster.kubelet.testing import pod_body, running_node, wait_pod
from zenml_oom_orchestrator.localcluster.store import Store

pytestmark = pytest.mark.cluster

KILL_SELF = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Store, Kubelet]]:
    with running_node(tmp_path) as pair:
        yield pair


def conditions(pod: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {c["type"]: (c["status"], c.get("reason")) for c in pod["status"]["conditions"]}


def updates(store: Store, rv: int, name: str) -> list[dict[str, Any]]:
    """Every status the watch delivered for pod `name` since `rv`, in order."""
    seen = []
    with store.watch("pods", resource_version=rv, field_selector=f"metadata.name={name}") as w:
        while (got := w.next_shared(0.2)) is not None:
            seen.append(got[1].get("status") or {})
    return seen


def test_failed_pod_is_pod_failed_with_its_sandbox_gone_and_no_signal(
    node: tuple[Store, Kubelet],
) -> None:
    """Killed by SIGKILL: exit code 137 is the only trace of the signal, as containerd reports
    it (a real kubelet never fills `signal`); Ready/ContainersReady say PodFailed."""
    store, _ = node
    store.create("pods", pod_body("killed", KILL_SELF))
    pod = wait_pod(store, "killed")
    assert pod["status"]["phase"] == "Failed"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (137, "Error")
    assert "signal" not in term
    assert conditions(pod) == {
        "PodReadyToStartContainers": ("False", None),
        "Initialized": ("True", None),
        "Ready": ("False", "PodFailed"),
        "ContainersReady": ("False", "PodFailed"),
        "PodScheduled": ("True", None),
    }


def test_succeeded_pod_is_pod_completed_initialized_included(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    store.create("pods", pod_body("done", ["true"]))
    pod = wait_pod(store, "done")
    assert pod["status"]["phase"] == "Succeeded"
    assert conditions(pod) == {
        "PodReadyToStartContainers": ("False", None),
        "Initialized": ("True", "PodCompleted"),
        "Ready": ("False", "PodCompleted"),
        "ContainersReady": ("False", "PodCompleted"),
        "PodScheduled": ("True", None),
    }


def test_failed_init_container_is_pod_failed_and_not_initialized(
    node: tuple[Store, Kubelet],
) -> None:
    store, _ = node
    body = pod_body("init-fails", ["true"])
    body["spec"]["initContainers"] = [
        {"name": "init", "image": "python:3.11", "command": ["false"]}
    ]
    store.create("pods", body)
    pod = wait_pod(store, "init-fails")
    assert pod["status"]["phase"] == "Failed"
    found = conditions(pod)
    assert found["Initialized"] == ("False", "ContainersNotInitialized")
    assert found["Ready"] == found["ContainersReady"] == ("False", "PodFailed")
    assert found["PodReadyToStartContainers"] == ("False", None)


def test_sandbox_condition_and_reasons_follow_the_kubelet_through_a_pods_life(
    node: tuple[Store, Kubelet],
) -> None:
    """As the real tier's watch shows: the first kubelet write comes before the sandbox
    (PodReadyToStartContainers False, no pod IP, every container waiting PodInitializing when
    there are init containers); the write with the containers ended but the phase held back already says
    PodFailed, sandbox still up; the terminal phase comes with the sandbox gone."""
    store, _ = node
    rv = store.resource_version
    body = pod_body("life", KILL_SELF)
    body["spec"]["initContainers"] = [{"name": "init", "image": "python:3.11", "command": ["true"]}]
    store.create("pods", body)
    wait_pod(store, "life")
    seen = [s for s in updates(store, rv, "life") if s.get("containerStatuses")]
    first = seen[0]
    assert {c["type"]: c["status"] for c in first["conditions"]}["PodReadyToStartContainers"] == (
        "False"
    )
    waiting = [
        s["state"]["waiting"]["reason"]
        for s in first["initContainerStatuses"] + first["containerStatuses"]
    ]
    assert waiting == ["PodInitializing", "PodInitializing"]
    assert "podIP" not in first  # the pod's IP comes with its sandbox
    ended = [s for s in seen if "terminated" in s["containerStatuses"][0]["state"]]
    held, final = ended[0], ended[-1]
    assert held["phase"] not in ("Succeeded", "Failed") and final["phase"] == "Failed"
    assert conditions({"status": held})["PodReadyToStartContainers"] == ("True", None)
    assert conditions({"status": held})["Ready"] == ("False", "PodFailed")
    assert conditions({"status": final})["PodReadyToStartContainers"] == ("False", None)
    assert final["podIP"] == "127.0.0.1"  # and stays after the sandbox is gone
