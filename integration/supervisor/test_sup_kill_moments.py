"""The supervisor SIGKILLed at each moment of an attempt's life (issue 11 §3), then started
again with the same spec: the restarted one has the whole history with every budget, never
runs a succeeded step again, never exceeds a budget, and the attempt pods stay as records.

The kill moments come from what the cluster and the first supervisor's hooks show, so the
test talks to the cluster through the kubernetes client only.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from sup_helpers import MI, pod_name

from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.supervisor import naming
from zenml_oom_orchestrator.supervisor.testing import sim, start_supervisor

pytestmark = pytest.mark.cluster
# The kill-and-retry path: growing in place (test_sup_grow.py) is off, or a burst that thrashes
# at its limit for a second could be grown instead of killed.
CAP = {
    "initial_memory": "256Mi",
    "memory_multiplier": 2,
    "max_oom_retries": 2,
    "grow_in_place": False,
}


def _spec(run_id: str, namespace: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "namespace": namespace,
        "steps": [
            # OOM-killed at 256Mi, 512Mi and 1Gi: the budget (2 OOM retries) ends it.
            {"name": "cap", "pod_template": sim(1.0, "4Gi"), "policy": CAP},
            {"name": "quick", "pod_template": sim(0.2), "policy": CAP},
            # Fails, retried after 2 s on the app budget, fails again.
            {
                "name": "flaky",
                "pod_template": sim(0.3, exit_code=1),
                "policy": CAP,
                "app_retry": {"max_retries": 1, "delay": 2},
            },
        ],
    }


def _hooks(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _hooked(tmp: Path, event: str, step: str, number: int) -> bool:
    return any(
        h["event"] == event and h["step"] == step and h["attempt"]["number"] == number
        for h in _hooks(tmp)
    )


def _main_state(core: k8s.CoreV1Api, namespace: str, name: str) -> str | None:
    found = core.list_namespaced_pod(namespace, field_selector=f"metadata.name={name}").items
    if not found or not found[0].status.container_statuses:
        return None
    state = found[0].status.container_statuses[0].state
    return "terminated" if state.terminated else "running" if state.running else "waiting"


@pytest.mark.parametrize("moment", ["created", "running", "just-ended", "between-attempts"])
def test_sigkill_at_any_moment_then_restart_keeps_history_budget_and_successes(
    cluster: Any, k8s_api_client: Any, cluster_namespace: str, tmp_path: Path, moment: str
) -> None:
    run_id = f"kill-{moment}"
    spec_file = tmp_path / "run.json"
    spec_file.write_text(json.dumps(_spec(run_id, cluster_namespace)))
    core = k8s.CoreV1Api(k8s_api_client)
    cap2 = pod_name(run_id, "cap", 2)
    when = {
        "created": lambda: _hooked(tmp_path, "attempt_started", "cap", 2),
        "running": lambda: _main_state(core, cluster_namespace, cap2) == "running",
        # The container has ended; the kubelet writes the phase one update later.
        "just-ended": lambda: _main_state(core, cluster_namespace, cap2) == "terminated",
        "between-attempts": lambda: _hooked(tmp_path, "attempt_finished", "flaky", 1),
    }[moment]

    first = start_supervisor(
        tmp_path, cluster.kubeconfig_path, spec_file, events=True, capture_stderr=False
    )
    wait_for(when, timeout=30, interval=0.02, what=moment)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    time.sleep(1.0)  # attempts end unobserved meanwhile

    second = start_supervisor(
        tmp_path, cluster.kubeconfig_path, spec_file, events=True, capture_stderr=False
    )
    assert second.wait(60) == 1  # cap and flaky failed
    steps = json.loads((tmp_path / "result.json").read_text())["steps"]

    cap = steps["cap"]["attempts"]
    assert [(a["number"], a["memory_limit"] // MI, a["budget"]) for a in cap] == [
        (1, 256, None),
        (2, 512, "oom"),
        (3, 1024, "oom"),
    ]
    assert {a["outcome"]["kind"] for a in cap} == {"oom_killed"}
    assert steps["cap"]["status"] == "failed"
    assert [(a["number"], a["budget"]) for a in steps["flaky"]["attempts"]] == [
        (1, None),
        (2, "app"),
    ]
    assert steps["quick"]["status"] == "succeeded"
    assert [a["outcome"]["kind"] for a in steps["quick"]["attempts"]] == ["succeeded"]

    # Nothing run twice, no attempt past a budget, every attempt pod kept as its record.
    pods = core.list_namespaced_pod(cluster_namespace, label_selector=f"run_id={run_id}").items
    expected = {pod_name(run_id, "cap", n) for n in (1, 2, 3)}
    expected |= {pod_name(run_id, "flaky", n) for n in (1, 2)} | {pod_name(run_id, "quick", 1)}
    assert sorted(p.metadata.name for p in pods) == sorted(expected)
    failed = expected - {pod_name(run_id, "quick", 1)}
    assert {p.metadata.name for p in pods if naming.ANN_RESULT in p.metadata.annotations} == failed
    # Start times are the supervisor's own sub-second stamps, adopted attempts' included.
    stamps = {p.metadata.name: p.metadata.annotations[naming.ANN_STARTED_AT] for p in pods}
    for a in cap:
        assert a["started_at"] == pytest.approx(
            float(stamps[pod_name(run_id, "cap", a["number"])]), abs=0.002
        )

    hooks = _hooks(tmp_path)
    created = Counter(
        (h["step"], h["attempt"]["number"]) for h in hooks if h["event"] == "attempt_started"
    )
    assert set(created) == {
        ("cap", 1),
        ("cap", 2),
        ("cap", 3),
        ("quick", 1),
        ("flaky", 1),
        ("flaky", 2),
    }
    assert [h["event"] for h in hooks].count("run_finished") == 1
    last_status = {h["step"]: h["result"]["status"] for h in hooks if h["event"] == "step_finished"}
    assert last_status == {"cap": "failed", "quick": "succeeded", "flaky": "failed"}


def test_finished_run_whose_pods_are_gone_is_not_run_again(
    cluster: Any, k8s_api_client: Any, cluster_namespace: str, tmp_path: Path
) -> None:
    """The result Events outlive the pods (deleted by a TTL, by hand): a supervisor started
    again on the finished run rebuilds it from them, and judges nothing `node_lost`."""
    run_id = "pods-gone"
    spec_file = tmp_path / "run.json"
    spec_file.write_text(json.dumps(_spec(run_id, cluster_namespace)))
    core = k8s.CoreV1Api(k8s_api_client)
    first = start_supervisor(tmp_path, cluster.kubeconfig_path, spec_file)
    first.communicate(timeout=60)
    before = json.loads((tmp_path / "result.json").read_text())
    core.delete_collection_namespaced_pod(cluster_namespace, label_selector=f"run_id={run_id}")
    wait_for(
        lambda: (
            not core.list_namespaced_pod(cluster_namespace, label_selector=f"run_id={run_id}").items
        ),
        what="the run's pods deleted",
    )
    (tmp_path / "result.json").unlink()

    again = start_supervisor(tmp_path, cluster.kubeconfig_path, spec_file)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 1, err.decode()[-2000:]
    after = json.loads((tmp_path / "result.json").read_text())
    assert b"vanished" not in err
    for name in ("cap", "quick", "flaky"):
        keys = ("number", "memory_limit", "budget", "outcome")
        assert [{k: a[k] for k in keys} for a in after["steps"][name]["attempts"]] == [
            {k: a[k] for k in keys} for a in before["steps"][name]["attempts"]
        ], name
        assert after["steps"][name]["status"] == before["steps"][name]["status"]
    assert not core.list_namespaced_pod(cluster_namespace, label_selector=f"run_id={run_id}").items
    # The run's marker Event names an object that exists (no owner given: the namespace).
    (marker,) = [
        e
        for e in core.list_namespaced_event(cluster_namespace).items
        if e.reason == "RunStarted" and run_id in (e.message or "")
    ]
    assert (marker.involved_object.kind, marker.involved_object.name) == (
        "Namespace",
        cluster_namespace,
    )
    assert core.read_namespace(cluster_namespace).metadata.name == cluster_namespace
