"""Issue 11 §6: faults only a real cluster has, made on the real tier while a run is in flight.
The supervisor runs in this process against the tier's API server; the faults are real
processes of the tier stopped and started again (components.py), and every test brings them
back and waits for the node to be Ready, whatever happens.

- the kube-apiserver SIGKILLed and started again (its watch and writes recover);
- containerd restarted (the running containers survive in their shims);
- the kubelet stopped (the node goes NotReady, the taint manager evicts the attempt after a
  short tolerationSeconds): test_kubelet_stopped_*.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from components import NODE, healthy_peer_node, stopped, wait_for
from kubernetes import client as k8s

from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.supervisor import RunResult, RunSpec, StepStatus, Supervisor, naming
from zenml_oom_orchestrator.supervisor.testing import NEEDS, sim

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.real_only("stops and restarts processes of the real tier (API server, ...)"),
]
MI = 2**20
POLICY = {"initial_memory": "256Mi", "memory_multiplier": 2, "grow_in_place": False}


def _step(name: str, template: dict[str, Any], *upstream: str, **policy: Any) -> dict[str, Any]:
    return {
        "name": name,
        "pod_template": template,
        "upstream": list(upstream),
        "policy": {**POLICY, **policy},
    }


@pytest.fixture
def start_run(k8s_api_client: Any) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """`start_run(spec)`: the supervisor runs `spec` in a thread -> (supervisor, box, thread);
    the run's result lands in box["r"]. A run a failed test left going is stopped."""
    started: list[tuple[Supervisor, threading.Thread]] = []

    def start(spec: dict[str, Any]) -> tuple[Supervisor, dict[str, Any], threading.Thread]:
        sup = Supervisor(k8s_api_client, RunSpec.model_validate(spec))
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.setdefault("r", sup.run()), daemon=True)
        thread.start()
        started.append((sup, thread))
        return sup, box, thread

    yield start
    for sup, thread in started:
        if thread.is_alive():
            sup.stop()
            thread.join(30)


def _result(box: dict[str, Any], thread: Any, timeout: float) -> RunResult:
    thread.join(timeout)
    assert "r" in box, f"the run did not end within {timeout:g}s"
    result: RunResult = box["r"]
    return result


def _pods(core: k8s.CoreV1Api, namespace: str, run_id: str) -> dict[str, k8s.V1Pod]:
    found = core.list_namespaced_pod(namespace, label_selector=naming.run_selector(run_id))
    return {p.metadata.name: p for p in found.items}


def _phase(core: k8s.CoreV1Api, namespace: str, name: str) -> str | None:
    try:
        return str(core.read_namespaced_pod(name, namespace).status.phase)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _attempts_on_cluster(core: k8s.CoreV1Api, namespace: str, run_id: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for pod in _pods(core, namespace, run_id).values():
        ann = pod.metadata.annotations
        out.setdefault(ann[naming.ANN_STEP], []).append(int(ann[naming.ANN_ATTEMPT]))
    return {k: sorted(v) for k, v in out.items()}


def _our_events(core: k8s.CoreV1Api, namespace: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ev in core.list_namespaced_event(namespace).items:
        if ev.source and ev.source.component == naming.MANAGED_BY:
            out.setdefault(ev.involved_object.name, []).append(ev.reason)
    return out


def _finished_at(pod: k8s.V1Pod) -> datetime:
    (main,) = pod.status.container_statuses
    return main.state.terminated.finished_at  # type: ignore[no-any-return]


def _attempts(result: RunResult) -> dict[str, list[tuple[str, int]]]:
    """step -> [(outcome kind, memory limit MiB)] per attempt."""
    return {
        name: [
            (a.outcome.kind.value if a.outcome else "", a.memory_limit // MI) for a in s.attempts
        ]
        for name, s in result.steps.items()
    }


def _a_run_across_a_fault(run_id: str, namespace: str) -> dict[str, Any]:
    """`long` runs across the fault; `oom` is OOM-killed at 256Mi about 3 s after it starts
    (so while the component is down) and succeeds at 512Mi; `after` needs `long`."""
    return {
        "run_id": run_id,
        "namespace": namespace,
        "steps": [
            _step("long", sim(25)),
            _step("oom", sim(3, NEEDS), max_oom_retries=1),
            _step("after", sim(0.5), "long"),
        ],
    }


EXPECTED = {
    "long": [("succeeded", 256)],
    "oom": [("oom_killed", 256), ("succeeded", 512)],
    "after": [("succeeded", 256)],
}


def _both_running(core: k8s.CoreV1Api, namespace: str, run_id: str) -> bool:
    names = [naming.attempt_name(run_id, s, 1) for s in ("long", "oom")]
    return all(_phase(core, namespace, n) == "Running" for n in names)


def _check_no_duplicate(
    core: k8s.CoreV1Api, namespace: str, run_id: str, result: RunResult
) -> None:
    """Exactly the attempts the run made exist, each with one Event of ours."""
    made = {n: [a.number for a in s.attempts] for n, s in result.steps.items()}
    assert _attempts_on_cluster(core, namespace, run_id) == made
    events = _our_events(core, namespace)
    pods = _pods(core, namespace, run_id)
    assert sorted(events) == sorted(pods)
    assert all(len(reasons) == 1 for reasons in events.values()), events


def _check_hit_mid_run(core: k8s.CoreV1Api, namespace: str, run_id: str, back: float) -> None:
    """The fault hit mid-run: `oom` was OOM-killed before the component was back (the
    container's end is in whole seconds), `long` ran on across it. A container containerd lost
    while it was down (exit 255, Unknown) carries the time containerd, back, found it gone:
    that loss is the proof, not its time (CI at 2fae715 read 757.0 s against back at 756.93)."""
    pods = _pods(core, namespace, run_id)
    (oom,) = pods[naming.attempt_name(run_id, "oom", 1)].status.container_statuses
    ended = oom.state.terminated
    if (ended.exit_code, ended.reason) != (255, "Unknown"):
        assert ended.finished_at.timestamp() < back, (ended.finished_at, back)
    assert _finished_at(pods[naming.attempt_name(run_id, "long", 1)]).timestamp() > back


def test_api_server_killed_and_restarted_mid_run_watch_and_writes_recover(
    cluster: Any, k8s_api_client: Any, cluster_namespace: str, start_run: Any
) -> None:
    run_id = "apiserver-kill"
    core = k8s.CoreV1Api(k8s_api_client)
    sup, box, thread = start_run(_a_run_across_a_fault(run_id, cluster_namespace))
    wait_for(lambda: _both_running(core, cluster_namespace, run_id), 60, "`long` and `oom` running")

    with stopped(cluster, "kube-apiserver", signal.SIGKILL) as apiserver:
        time.sleep(5)  # `oom` is OOM-killed now, with nobody to tell
    assert apiserver.stopped_at and apiserver.ready_at
    back = apiserver.ready_at
    print(f"\nkube-apiserver down for {back - apiserver.stopped_at:.1f}s (SIGKILL, started again)")

    result = _result(box, thread, 120)
    assert result.status.value == "succeeded", {n: s.message for n, s in result.steps.items()}
    assert _attempts(result) == EXPECTED
    _check_hit_mid_run(core, cluster_namespace, run_id, back)
    _check_no_duplicate(core, cluster_namespace, run_id, result)


def test_containerd_restarted_mid_run_running_containers_survive(
    cluster: Any, k8s_api_client: Any, cluster_namespace: str, start_run: Any
) -> None:
    """containerd stopped for 5 s and started again. `long` runs across it in its shim and
    ends as the same container. `short` exits 0 while containerd is down: containerd, back,
    finds no task for it and reports exit 255, reason Unknown, whatever the step did. That is
    no application error (before the fix the step failed on it): it is retried at the same
    memory on the infrastructure budget. `oom` is OOM-killed while containerd is down: the
    kubelet sees 255/Unknown first, or 255/OOMKilled once the shim's OOM event got through;
    either way it ends escalated."""
    run_id = "containerd-restart"
    core = k8s.CoreV1Api(k8s_api_client)
    spec = _a_run_across_a_fault(run_id, cluster_namespace)
    spec["steps"].append(_step("short", sim(3)))
    sup, box, thread = start_run(spec)
    wait_for(lambda: _both_running(core, cluster_namespace, run_id), 60, "`long` and `oom` running")
    long_pod = naming.attempt_name(run_id, "long", 1)
    (before,) = core.read_namespaced_pod(long_pod, cluster_namespace).status.container_statuses

    with stopped(cluster, "containerd", signal.SIGTERM) as containerd:
        assert containerd.pid() is None
        time.sleep(5)  # `short` ends and `oom` is OOM-killed now, with no containerd to hear it
    assert containerd.stopped_at and containerd.ready_at
    back = containerd.ready_at
    print(f"\ncontainerd down for {back - containerd.stopped_at:.1f}s")

    result = _result(box, thread, 120)
    attempts = _attempts(result)
    print(attempts)
    assert result.status.value == "succeeded", {n: s.message for n, s in result.steps.items()}
    # The container that ran across the restart is the same one, never restarted.
    (after,) = core.read_namespaced_pod(long_pod, cluster_namespace).status.container_statuses
    assert after.container_id == before.container_id
    assert after.restart_count == 0
    assert after.state.terminated.exit_code == 0
    pods = _pods(core, cluster_namespace, run_id)
    lost = pods[naming.attempt_name(run_id, "short", 1)].status.container_statuses[0]
    assert (lost.state.terminated.exit_code, lost.state.terminated.reason) == (255, "Unknown")
    assert attempts["short"] == [("disrupted", 256), ("succeeded", 256)]
    assert [a.budget for a in result.steps["short"].attempts] == [None, "infrastructure"]
    assert attempts["oom"] in (EXPECTED["oom"], [("disrupted", 256), *EXPECTED["oom"]])
    assert (attempts["long"], attempts["after"]) == (EXPECTED["long"], EXPECTED["after"])
    _check_hit_mid_run(core, cluster_namespace, run_id, back)
    _check_no_duplicate(core, cluster_namespace, run_id, result)


# Attempt 1 sleeps for as long as it is let (the kubelet's stop strands it); later ones end.
SLEEPS_ONCE = (
    "import os, signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)); "
    "os.environ['OOM_ATTEMPT'] == '1' and time.sleep(600)"
)
TOLERATION_SECONDS = 5


def _tolerant_template() -> dict[str, Any]:
    """What a user sets through pod_settings.tolerations: evict after TOLERATION_SECONDS on a
    node that stopped reporting (the default, added by the API server, is 300 s)."""
    tolerations = [
        {
            "key": key,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": TOLERATION_SECONDS,
        }
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
    ]
    return {
        "spec": {
            "containers": [
                {"name": "main", "image": "python:3.11", "command": ["python", "-c", SLEEPS_ONCE]}
            ],
            "tolerations": tolerations,
            "terminationGracePeriodSeconds": 5,
        }
    }


def _node_not_ready(core: k8s.CoreV1Api) -> bool:
    node = core.read_node(NODE)
    ready = [c for c in node.status.conditions if c.type == "Ready"]
    return bool(ready and ready[0].status != "True")


def _being_deleted(core: k8s.CoreV1Api, namespace: str, name: str) -> bool:
    """Terminating, or gone already (the supervisor deletes what it judged on a lost node)."""
    try:
        return core.read_namespaced_pod(name, namespace).metadata.deletion_timestamp is not None
    except k8s.ApiException as exc:
        if exc.status == 404:
            return True
        raise


def test_kubelet_stopped_evicted_attempt_is_retried_on_the_infrastructure_budget(
    cluster: Any, k8s_api_client: Any, cluster_namespace: str, start_run: Any
) -> None:
    """The node stops reporting; after the pod's tolerationSeconds the taint manager deletes
    the attempt (it stays Terminating: no kubelet confirms it). The supervisor takes that as
    the end of the attempt at once (not after its own node_lost_timeout, 300 s by default) and
    starts attempt 2 at the same memory on the infrastructure budget, which runs once the
    kubelet is back. max_oom_retries=0: had the loss touched the OOM budget, the step fails."""
    run_id = "kubelet-stop"
    core = k8s.CoreV1Api(k8s_api_client)
    spec = {
        "run_id": run_id,
        "namespace": cluster_namespace,
        "steps": [_step("s", _tolerant_template(), max_oom_retries=0)],
    }
    sup, box, thread = start_run(spec)
    a1, a2 = (naming.attempt_name(run_id, "s", n) for n in (1, 2))
    wait_for(lambda: _phase(core, cluster_namespace, a1) == "Running", 60, "attempt 1 running")

    with healthy_peer_node(k8s_api_client), stopped(cluster, "kubelet", signal.SIGTERM):
        down = time.monotonic()
        wait_for(lambda: _node_not_ready(core), 120, "the node to go NotReady")
        not_ready = time.monotonic() - down
        wait_for(
            lambda: _being_deleted(core, cluster_namespace, a1),
            60,
            "the taint manager to evict attempt 1",
        )
        evicted = time.monotonic() - down
        # Attempt 2 exists (Pending: the node is tainted) while the kubelet is still down.
        wait_for(lambda: _phase(core, cluster_namespace, a2), 30, "attempt 2 to be created")
        retried = time.monotonic() - down
        assert _phase(core, cluster_namespace, a2) == "Pending"
    print(
        f"\nkubelet stopped: node NotReady after {not_ready:.0f}s, attempt 1 evicted after "
        f"{evicted:.0f}s, attempt 2 created after {retried:.0f}s; kubelet back and node Ready "
        f"after {time.monotonic() - down:.0f}s"
    )

    result = _result(box, thread, 120)
    step = result.steps["s"]
    assert step.status is StepStatus.SUCCEEDED, step.message
    first = step.attempts[0].outcome
    assert first is not None and first.kind is OutcomeKind.DISRUPTED, first
    assert first.reason == "DeletionByTaintManager"
    assert [a.outcome.kind for a in step.attempts[1:] if a.outcome] == [OutcomeKind.SUCCEEDED]
    assert [a.budget for a in step.attempts] == [None, "infrastructure"]
    assert [a.memory_limit // MI for a in step.attempts] == [256, 256]
    assert _our_events(core, cluster_namespace)[a1] == ["RetryInfrastructure"]
    # The kubelet, back, killed the evicted container and the pod went.
    wait_for(lambda: _phase(core, cluster_namespace, a1) is None, 60, "attempt 1's pod to go")
