"""Helpers for the reliability tests: steps whose attempts the kubelet simulates and the
supervisor as a killable subprocess (both shared with integration/supervisor, so they live in
zenml_oom_orchestrator/supervisor/testing.py), and checks that the cluster holds exactly the
attempts a run should have made."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from zenml_oom_orchestrator.supervisor import naming
from zenml_oom_orchestrator.supervisor.testing import NEEDS, sim, start_supervisor

__all__ = ["NEEDS", "sim", "start_supervisor"]

MI = 2**20
# The kill-and-retry path: growing in place (test_sup_grow.py) is off, or a burst that thrashes
# at its limit for a second could be grown instead of killed.
POLICY = {
    "initial_memory": "256Mi",
    "memory_multiplier": 2,
    "max_oom_retries": 2,
    "grow_in_place": False,
}


def step(name: str, template: dict[str, Any], *upstream: str, **policy: Any) -> dict[str, Any]:
    return {
        "name": name,
        "pod_template": template,
        "upstream": list(upstream),
        "policy": {**POLICY, **policy},
    }


class ApiReader:
    """Reads like the local cluster's store (`list(kind, namespace, label_selector=)`), but
    through the API server: what the tests that run on either cluster read with."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)

    def list(
        self, kind: str, namespace: str, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        lister = {"pods": self.core.list_namespaced_pod, "events": self.core.list_namespaced_event}
        found = lister[kind](namespace, label_selector=label_selector or "")
        items = self.api_client.sanitize_for_serialization(found.items)
        return items, found.metadata.resource_version


def pods_of(store: Any, namespace: str, run_id: str) -> list[dict[str, Any]]:
    """The run's attempt pods, read from the store (no API request, so no injected fault)."""
    pods, _ = store.list("pods", namespace, label_selector=naming.run_selector(run_id))
    return pods


def attempts_on_cluster(store: Any, namespace: str, run_id: str) -> dict[str, list[int]]:
    """step -> sorted attempt numbers of the pods that exist."""
    out: dict[str, list[int]] = {}
    for pod in pods_of(store, namespace, run_id):
        ann = pod["metadata"]["annotations"]
        out.setdefault(ann[naming.ANN_STEP], []).append(int(ann[naming.ANN_ATTEMPT]))
    return {k: sorted(v) for k, v in out.items()}


def supervisor_events(store: Any, namespace: str) -> dict[str, list[str]]:
    """pod name -> reasons of the Events the supervisor wrote on it."""
    events, _ = store.list("events", namespace)
    out: dict[str, list[str]] = {}
    for ev in events:
        if (ev.get("source") or {}).get("component") == naming.MANAGED_BY:
            out.setdefault(ev["involvedObject"]["name"], []).append(ev["reason"])
    return out
