"""The scheduler: binding by requests, Unschedulable pods, retries when capacity frees."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.kubelet.node import node_object
from zenml_oom_orchestrator.localcluster.kubelet.podresources import pod_requests
from zenml_oom_orchestrator.localcluster.kubelet.testing import (
    events_for,
    pod_body,
    running_node,
    wait_pod,
)
from zenml_oom_orchestrator.localcluster.scheduler import Scheduler, unschedulable_message
from zenml_oom_orchestrator.localcluster.store import Store
from zenml_oom_orchestrator.localcluster.testing import wait_for

GI = 1 << 30
MI = 1 << 20
# kube-scheduler 1.35's text, as the real tier wrote it: the filters' histogram, then the
# PostFilter plugins (DynamicResources, DefaultPreemption). A request above the node's whole
# allocatable is unresolvable, so preemption "is not helpful"...
INSUFFICIENT = (
    "0/1 nodes are available: 1 Insufficient memory. no new claims to deallocate, preemption: "
    "0/1 nodes are available: 1 Preemption is not helpful for scheduling."
)
# ...one that fits an empty node waits for memory other pods hold: no pod has a lower priority.
WAITS_FOR_MEMORY = (
    "0/1 nodes are available: 1 Insufficient memory. no new claims to deallocate, preemption: "
    "0/1 nodes are available: 1 No preemption victims found for incoming pod."
)


@pytest.fixture
def store() -> Iterator[Store]:
    """A scheduler and a Node object, no kubelet: pods are only bound, never run."""
    store = Store()
    store.create("nodes", node_object("n1", {"cpu": "2", "memory": "4Gi", "pods": "110"}, "none"))
    scheduler = Scheduler(store)
    scheduler.start()
    yield store
    scheduler.stop()


def sleeper(name: str, memory: str | None = None, **res: Any) -> dict[str, Any]:
    body = pod_body(name, ["sleep", "60"])
    resources = {"requests": {"memory": memory}} if memory else {}
    resources.update(res)
    body["spec"]["containers"][0]["resources"] = resources
    return body


def scheduled(store: Store, name: str) -> dict[str, Any]:
    """Wait for the PodScheduled condition the scheduler decides (bound, or why not)."""

    def decided() -> dict[str, Any] | None:
        cond = condition(store.get("pods", "default", name), "PodScheduled")
        return cond if cond and (cond["status"] == "True" or cond.get("reason")) else None

    found = wait_for(decided, what=f"scheduling of {name}")
    assert found is not None
    return found


def condition(pod: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == type_), None)


def test_requests_default_to_limits_and_init_containers_take_max() -> None:
    pod = sleeper("p", limits={"memory": "1Gi", "cpu": "500m"})
    pod["spec"]["initContainers"] = [
        {"name": "i", "image": "x", "resources": {"requests": {"memory": "3Gi"}}}
    ]
    assert pod_requests(pod) == {"memory": Fraction(3 * GI), "cpu": Fraction(1, 2)}
    pod["spec"]["overhead"] = {"memory": "64Mi"}
    assert pod_requests(pod)["memory"] == 3 * GI + 64 * MI


def test_binds_pod_with_scheduled_condition_and_event(store: Store) -> None:
    store.create("pods", sleeper("fits", "1Gi"))
    cond = scheduled(store, "fits")
    pod = store.get("pods", "default", "fits")
    assert (pod["spec"]["nodeName"], cond["status"]) == ("n1", "True")
    event = next(e for e in events_for(store, "fits") if e["reason"] == "Scheduled")
    assert event["message"] == "Successfully assigned default/fits to n1"
    # Written through events.k8s.io/v1, as the real scheduler does: no `source`.
    assert (event["source"], event["reportingComponent"]) == ({}, "default-scheduler")
    assert event["action"] == "Binding" and event["eventTime"]


def test_oversized_request_stays_unschedulable(store: Store) -> None:
    store.create("pods", sleeper("huge", "5Gi"))
    cond = scheduled(store, "huge")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False",
        "Unschedulable",
        INSUFFICIENT,
    )
    pod = store.get("pods", "default", "huge")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    failed = [e for e in events_for(store, "huge") if e["reason"] == "FailedScheduling"]
    assert failed and failed[0]["type"] == "Warning" and failed[0]["message"] == INSUFFICIENT


def test_cpu_and_memory_reasons_are_counted(store: Store) -> None:
    store.create("pods", sleeper("both", "5Gi", limits={"cpu": "3"}))
    cond = scheduled(store, "both")
    assert cond["message"].startswith(
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
    )


def test_preemption_policy_never_is_named_in_the_message(store: Store) -> None:
    body = sleeper("modest", "5Gi")
    body["spec"]["preemptionPolicy"] = "Never"
    store.create("pods", body)
    assert scheduled(store, "modest")["message"] == (
        "0/1 nodes are available: 1 Insufficient memory. no new claims to deallocate, "
        "preemption: not eligible due to preemptionPolicy=Never."
    )


def test_unschedulable_message_counts_nodes_as_kube_scheduler_sorts_them() -> None:
    """Sorted as the strings "<count> <reason>" sort (kube's FitError), so counts lead."""
    reasons = Counter({"Insufficient cpu": 2, "Insufficient memory": 1})
    message = unschedulable_message(sleeper("p"), 3, reasons, unresolvable=1)
    assert message == (
        "0/3 nodes are available: 1 Insufficient memory, 2 Insufficient cpu. no new claims to "
        "deallocate, preemption: 0/3 nodes are available: 1 Preemption is not helpful for "
        "scheduling, 2 No preemption victims found for incoming pod."
    )
    assert unschedulable_message(sleeper("p"), 0, Counter(), 0) == (
        "no nodes available to schedule pods"
    )


def test_unschedulable_pod_is_bound_once_capacity_frees(store: Store) -> None:
    store.create("pods", sleeper("holder", "3Gi"))
    wait_for(lambda: store.get("pods", "default", "holder")["spec"].get("nodeName"), what="bind")
    store.create("pods", sleeper("waiter", "2Gi"))
    cond = scheduled(store, "waiter")
    assert (cond["reason"], cond["message"]) == ("Unschedulable", WAITS_FOR_MEMORY)

    def finish(pod: dict[str, Any]) -> None:
        pod["status"]["phase"] = "Succeeded"  # plays the kubelet: a finished pod frees its node

    store.mutate("pods", "default", "holder", finish, subresource="status")
    wait_for(lambda: store.get("pods", "default", "waiter")["spec"].get("nodeName"), what="bind")
    assert scheduled(store, "waiter")["status"] == "True"


def test_not_ready_node_is_tainted_until_ready(tmp_path: Path) -> None:
    with running_node(tmp_path) as (store, kubelet):
        kubelet.set_node_ready(False)
        store.create("pods", pod_body("later", ["true"]))
        cond = scheduled(store, "later")
        assert "untolerated taint {node.kubernetes.io/unreachable: }" in cond["message"]
        kubelet.set_node_ready(True)
        assert wait_pod(store, "later")["status"]["phase"] == "Succeeded"


def test_real_pod_of_oversized_request_stays_pending_with_kubelet(tmp_path: Path) -> None:
    with running_node(tmp_path, memory="1Gi") as (store, _):
        body = pod_body("big", ["true"], memory_limit="2Gi")
        store.create("pods", body)
        cond = scheduled(store, "big")
        assert cond["message"] == INSUFFICIENT
        assert store.get("pods", "default", "big")["status"]["phase"] == "Pending"
