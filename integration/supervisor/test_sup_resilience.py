"""Issue 4 §2/§6/§8: a misbehaving API server (429 + Retry-After, 500, dropped connections,
watches expired with 410 mid-run), idempotent creates, and a supervisor killed with SIGKILL
mid-run and started again: the run finishes right, with no duplicate or lost attempt."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from sup_helpers import MI, alloc_code, events_by_pod, pod_name, run_pods, template

from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.supervisor import (
    ClusterApi,
    RunSpec,
    RunStatus,
    StepSpec,
    Supervisor,
    naming,
)
from zenml_oom_orchestrator.supervisor.cluster import Conflict
from zenml_oom_orchestrator.supervisor.manifests import build_attempt_pod
from zenml_oom_orchestrator.supervisor.testing import start_supervisor

pytestmark = pytest.mark.cluster
# The kill-and-retry path: growing in place (test_sup_grow.py) is off, or a burst that thrashes
# at its limit for a second could be grown instead of killed.
ESCALATE = OOMPolicy(initial_memory="256Mi", memory_multiplier=2, grow_in_place=False)


@pytest.mark.local_only("injects faults into the local API server")
def test_api_faults_and_watch_expiry_mid_run_still_end_right(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    spec = RunSpec(
        run_id="chaos",
        namespace=cluster_namespace,
        watch_timeout_seconds=1,  # re-watch every second, so 410s land mid-run
        steps=[
            StepSpec(name="grow", pod_template=template(alloc_code(600)), policy=ESCALATE),
            StepSpec(
                name="after",
                pod_template=template("import time; time.sleep(1)"),
                upstream=["grow"],
                policy=OOMPolicy(initial_memory="64Mi"),
            ),
        ],
    )
    faults = local_cluster.api_server.faults
    before = dict(faults.injected)
    faults.update(
        throttle_rate=0.05,
        retry_after_seconds=1,
        error_rate=0.05,
        drop_rate=0.05,
        watch_expire_rate=0.5,
        seed=4,
    )
    try:
        sup = Supervisor(k8s_api_client, spec)
        result = sup.run()
    finally:
        faults.clear()
    injected = {k: v - before.get(k, 0) for k, v in faults.injected.items()}
    assert injected.get("410", 0) >= 1 and sum(injected.values()) >= 3, injected
    assert sup.informer.relists >= 1

    assert result.status is RunStatus.SUCCEEDED
    grow = result.steps["grow"]
    assert [a.memory_limit // MI for a in grow.attempts] == [256, 512, 1024]
    assert [a.outcome.kind for a in grow.attempts if a.outcome] == [
        OutcomeKind.OOM_KILLED,
        OutcomeKind.OOM_KILLED,
        OutcomeKind.SUCCEEDED,
    ]
    pods = run_pods(k8s_api_client, cluster_namespace, "chaos")
    assert sorted(p.metadata.name for p in pods) == sorted(
        [pod_name("chaos", "grow", n) for n in (1, 2, 3)] + [pod_name("chaos", "after", 1)]
    )


def test_create_is_idempotent_409_on_our_name_adopts(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    cluster = ClusterApi(k8s_api_client, cluster_namespace)
    args = dict(
        name="adopt-me-a1",
        namespace=cluster_namespace,
        step_name="s",
        attempt=1,
        memory_request=64 * MI,
        memory_limit=64 * MI,
    )
    manifest = build_attempt_pod(template("print(1)"), run_id="r1", **args)  # type: ignore[arg-type]
    first, adopted1 = cluster.create_pod(manifest)
    again, adopted2 = cluster.create_pod(manifest)
    assert (adopted1, adopted2) == (False, True)
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    other = build_attempt_pod(template("print(1)"), run_id="r2", **args)  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="run_id"):
        cluster.create_pod(other)


def test_supervisor_killed_mid_run_and_restarted_finishes_without_duplicates(
    cluster: Any, k8s_api_client: Any, cluster_namespace: str, tmp_path: Path
) -> None:
    run_id = "restart"
    # Each attempt of `grow` runs 1.5 s before allocating, so the kill lands mid-attempt and
    # attempt 2 is OOM-killed while no supervisor is running; `steady` finishes meanwhile.
    spec = RunSpec(
        run_id=run_id,
        namespace=cluster_namespace,
        steps=[
            StepSpec(
                name="grow",
                pod_template=template("import time; time.sleep(1.5); " + alloc_code(600)),
                policy=ESCALATE,
            ),
            StepSpec(
                name="steady",
                pod_template=template("import time; time.sleep(2.5)"),
                policy=OOMPolicy(initial_memory="64Mi"),
            ),
            StepSpec(
                name="last",
                pod_template=template("print('done')"),
                upstream=["grow", "steady"],
                policy=OOMPolicy(initial_memory="64Mi"),
            ),
        ],
    )
    spec_file = tmp_path / "run.json"
    spec_file.write_text(spec.model_dump_json())
    kubeconfig = cluster.kubeconfig_path
    core = k8s.CoreV1Api(k8s_api_client)

    first = start_supervisor(tmp_path, kubeconfig, spec_file, events=True, capture_stderr=False)
    a2 = pod_name(run_id, "grow", 2)

    def a2_running() -> bool:
        pods = core.list_namespaced_pod(cluster_namespace, field_selector=f"metadata.name={a2}")
        return bool(pods.items) and pods.items[0].status.phase == "Running"

    wait_for(a2_running, timeout=30, interval=0.05, what="attempt 2 running")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # Down long enough for attempt 2 to be OOM-killed and `steady` to finish unobserved.
    wait_for(
        lambda: core.read_namespaced_pod(a2, cluster_namespace).status.phase == "Failed",
        timeout=20,
        what="attempt 2 to end while the supervisor is down",
    )
    assert not (tmp_path / "result.json").exists()

    second = start_supervisor(tmp_path, kubeconfig, spec_file, events=True, capture_stderr=False)
    assert second.wait(60) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "succeeded"
    grow = result["steps"]["grow"]
    assert [a["number"] for a in grow["attempts"]] == [1, 2, 3]
    assert [a["memory_limit"] // MI for a in grow["attempts"]] == [256, 512, 1024]
    assert [a["outcome"]["kind"] for a in grow["attempts"]] == [
        "oom_killed",
        "oom_killed",
        "succeeded",
    ]
    assert len(result["steps"]["steady"]["attempts"]) == 1
    assert result["steps"]["last"]["status"] == "succeeded"

    # No duplicate and no lost attempt: exactly these pods; each failed one carries its
    # result, and each attempt one Event holding its result (a decision or the success).
    pods = run_pods(k8s_api_client, cluster_namespace, run_id)
    expected = {pod_name(run_id, "grow", n) for n in (1, 2, 3)}
    expected |= {pod_name(run_id, "steady", 1), pod_name(run_id, "last", 1)}
    assert sorted(p.metadata.name for p in pods) == sorted(expected)
    failed = {pod_name(run_id, "grow", n) for n in (1, 2)}
    assert {p.metadata.name for p in pods if naming.ANN_RESULT in p.metadata.annotations} == failed
    for p in pods:
        if p.metadata.name not in failed:
            assert p.status.container_statuses[0].state.terminated.exit_code == 0
    events = events_by_pod(k8s_api_client, cluster_namespace)
    assert {name: len(evs) for name, evs in events.items()} == dict.fromkeys(expected, 1)
    assert [r for r, _ in events[a2]] == ["OOMRetry"]
    assert {n for n, evs in events.items() if evs[0][0] == "Succeeded"} == expected - failed
    markers = [
        e for e in core.list_namespaced_event(cluster_namespace).items if e.reason == "RunStarted"
    ]
    assert len(markers) == 1 and run_id in markers[0].message  # the second start saw it
    started = [
        json.loads(line)
        for line in (tmp_path / "events.jsonl").read_text().splitlines()
        if '"attempt_started"' in line
    ]
    grow3 = [e for e in started if e["step"] == "grow" and e["attempt"]["number"] == 3]
    assert len(grow3) == 1  # created once, by the second supervisor


def test_attempt_lost_while_no_supervisor_runs_is_judged_on_restart(
    cluster: Any, k8s_api_client: Any, cluster_namespace: str, tmp_path: Path, lose_pod: Any
) -> None:
    run_id = "lost-while-down"
    code = "import os, time; os.environ['OOM_ATTEMPT'] == '1' and time.sleep(60)"
    spec = RunSpec(
        run_id=run_id,
        namespace=cluster_namespace,
        steps=[
            StepSpec(
                name="s",
                pod_template=template(code),
                policy=OOMPolicy(initial_memory="96Mi", max_oom_retries=0, grow_in_place=False),
            )
        ],
    )
    spec_file = tmp_path / "run.json"
    spec_file.write_text(spec.model_dump_json())
    core = k8s.CoreV1Api(k8s_api_client)
    a1 = pod_name(run_id, "s", 1)

    first = start_supervisor(
        tmp_path, cluster.kubeconfig_path, spec_file, events=True, capture_stderr=False
    )
    wait_for(
        lambda: any(
            p.status.phase == "Running"
            for p in core.list_namespaced_pod(
                cluster_namespace, field_selector=f"metadata.name={a1}"
            ).items
        ),
        timeout=30,
        what="attempt 1 running",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    lose_pod(cluster_namespace, a1)  # gone, with no final status

    second = start_supervisor(
        tmp_path, cluster.kubeconfig_path, spec_file, events=True, capture_stderr=False
    )
    assert second.wait(60) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    attempts = result["steps"]["s"]["attempts"]
    assert [a["outcome"]["kind"] for a in attempts] == ["node_lost", "succeeded"]
    assert [a["budget"] for a in attempts] == [None, "infrastructure"]
    assert {a["memory_limit"] // MI for a in attempts} == {96}
    assert [r for r, _ in events_by_pod(k8s_api_client, cluster_namespace)[a1]] == [
        "RetryInfrastructure"
    ]
