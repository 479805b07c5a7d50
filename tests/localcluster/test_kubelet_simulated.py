"""Simulated containers: scripted outcomes through the real kubelet paths, no processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.kubelet import Kubelet
from zenml_oom_orchestrator.localcluster.kubelet.simulated import ANNOTATION
from zenml_oom_orchestrator.localcluster.kubelet.testing import (
    events_for,
    pod_body,
    running_node,
    wait_pod,
)
from zenml_oom_orchestrator.localcluster.store import Store
from zenml_oom_orchestrator.localcluster.testing import wait_for


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Store, Kubelet]]:
    with running_node(tmp_path, memory="64Gi", cpus=64) as pair:
        yield pair


def simulated(name: str, script: dict[str, Any], policy: str = "Never") -> dict[str, Any]:
    body = pod_body(name, ["no-such-binary"], "256Mi", restart_policy=policy)
    body["metadata"]["annotations"] = {ANNOTATION: json.dumps(script)}
    return body


def test_simulated_oom_is_reported_like_a_real_one(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    script = {"afterMs": 30, "exitCode": 137, "reason": "OOMKilled", "log": "allocating\n"}
    created = store.create("pods", simulated("sim-oom", script))
    pod = wait_pod(store, "sim-oom")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], term["reason"], term["exitCode"]) == (
        "Failed",
        "OOMKilled",
        137,
    )
    assert not any(e["reason"] == "OOMKilling" for e in events_for(store, "sim-oom"))
    assert kubelet.read_log("default", "sim-oom") == "allocating\n"
    assert not (kubelet.backend.root / created["metadata"]["uid"]).exists()


def test_scripted_runs_restart_on_failure(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    runs = [{"exitCode": 137, "reason": "OOMKilled"}, {"exitCode": 0}]
    store.create("pods", simulated("sim-retry", {"afterMs": 10, "runs": runs}, "OnFailure"))
    status = wait_pod(store, "sim-retry")["status"]
    main = status["containerStatuses"][0]
    assert status["phase"] == "Succeeded" and main["restartCount"] == 1
    assert main["lastState"]["terminated"]["reason"] == "OOMKilled"


def test_deleting_a_long_simulated_pod_is_quick(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    store.create("pods", simulated("sim-long", {"afterMs": 600_000}))
    wait_pod(store, "sim-long", phases=("Running",))
    store.delete("pods", "default", "sim-long")
    wait_for(
        lambda: not store.list("pods", field_selector="metadata.name=sim-long")[0], what="gone"
    )


def test_many_simulated_pods(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    for i in range(100):
        store.create("pods", simulated(f"sim-{i}", {"afterMs": 20, "exitCode": i % 2}))

    def all_done() -> bool:
        pods, _ = store.list("pods")
        return all(p["status"]["phase"] in ("Succeeded", "Failed") for p in pods)

    wait_for(all_done, timeout=20, what="100 simulated pods")
    phases = [store.get("pods", "default", f"sim-{i}")["status"]["phase"] for i in range(4)]
    assert phases == ["Succeeded", "Failed", "Succeeded", "Failed"]
