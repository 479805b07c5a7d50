"""Helpers for the reliability tests: steps whose attempts the kubelet simulates and the
supervisor as a killable subprocess (both shared with integration/supervisor, so they live in
zenml_oom_orchestrator/supervisor/testing.py), and checks that the cluster holds exactly the
attempts a run should have made."""

from __future__ import annotations

from typing import Any

from zenml_oom_orchestrator.supervisor import naming
from zenml_oom_orchestrator.supervisor.testing import NEEDS, sim, start_supervisor

__all__ = ["NEEDS", "sim", "start_supervisor"]

MI = 2**20
POLICY = {"initial_memory": "256Mi", "memory_multiplier": 2, "max_oom_retries": 2}


def step(name: str, template: dict[str, Any], *upstream: str, **policy: Any) -> dict[str, Any]:
    return {
        "name": name,
        "pod_template": template,
        "upstream": list(upstream),
        "policy": {**POLICY, **policy},
    }


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
