"""Issue 4 §7/§8: DAG semantics on the cluster: a failing branch, failure modes, stop, TTL
and the ownerReference cascade."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client as k8s
from sup_helpers import Recorder, pod_name, run, run_in_thread, run_pods, template

from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.supervisor import (
    FailureMode,
    RunSpec,
    RunStatus,
    StepSpec,
    StepStatus,
)

pytestmark = pytest.mark.cluster
SMALL = OOMPolicy(initial_memory="64Mi")


def step(name: str, code: str = "print('ok')", upstream: tuple[str, ...] = ()) -> StepSpec:
    return StepSpec(name=name, pod_template=template(code), upstream=list(upstream), policy=SMALL)


def sleeper(name: str) -> StepSpec:
    """A step that runs 60 s. Its Python, a container's PID 1, ignores SIGTERM, so a stopped
    attempt lives until its grace period ends (30 s by default): 1 s here."""
    spec = step(name, "import time; time.sleep(60)")
    spec.pod_template["spec"]["terminationGracePeriodSeconds"] = 1
    return spec


def test_parallel_dag_with_a_failing_branch_leaves_every_step_terminal(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    #        root
    #       /    \
    #   good1    bad1 (exit 3)
    #     |        |
    #   good2    bad2     join(good2, bad2)
    spec = RunSpec(
        run_id="dag",
        namespace=cluster_namespace,
        max_parallelism=2,
        steps=[
            step("root"),
            step("good1", "import time; time.sleep(0.5)", ("root",)),
            step("good2", upstream=("good1",)),
            step("bad1", "import sys; sys.exit(3)", ("root",)),
            step("bad2", upstream=("bad1",)),
            step("join", upstream=("good2", "bad2")),
        ],
    )
    rec = Recorder()
    result = run(k8s_api_client, spec, rec)
    status = {n: s.status for n, s in result.steps.items()}
    assert status == {
        "root": StepStatus.SUCCEEDED,
        "good1": StepStatus.SUCCEEDED,
        "good2": StepStatus.SUCCEEDED,
        "bad1": StepStatus.FAILED,
        "bad2": StepStatus.SKIPPED,
        "join": StepStatus.SKIPPED,
    }
    assert result.status is RunStatus.FAILED
    assert "upstream step 'bad1' failed" in result.steps["bad2"].message
    assert not result.steps["bad2"].attempts and not result.steps["join"].attempts
    # Every step reported terminal exactly once; the run last.
    assert sorted(args[0] for args in rec.names("step")) == sorted(status)
    assert rec.calls[-1][0] == "run"


def test_fail_fast_stops_in_flight_and_skips_the_rest(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    spec = RunSpec(
        run_id="ff",
        namespace=cluster_namespace,
        failure_mode=FailureMode.FAIL_FAST,
        steps=[
            sleeper("slow"),
            step("bad", "import time, sys; time.sleep(0.5); sys.exit(3)"),
            step("after_slow", upstream=("slow",)),
        ],
    )
    t0 = time.monotonic()
    result = run(k8s_api_client, spec)
    assert time.monotonic() - t0 < 20
    status = {n: s.status for n, s in result.steps.items()}
    assert status == {
        "slow": StepStatus.STOPPED,
        "bad": StepStatus.FAILED,
        "after_slow": StepStatus.SKIPPED,
    }
    assert result.status is RunStatus.FAILED
    slow = pod_name("ff", "slow", 1)
    wait_for(  # deleted (gracefully), after its record was kept
        lambda: (
            slow not in {p.metadata.name for p in run_pods(k8s_api_client, cluster_namespace, "ff")}
        ),
        timeout=20,
        what="the stopped attempt to go",
    )
    assert result.steps["slow"].attempts[0].message


def test_stop_deletes_in_flight_keeps_finished_then_ttl_and_owner_cascade(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    core = k8s.CoreV1Api(k8s_api_client)
    # Stand-in for the supervisor's own pod: deleting it must remove every attempt.
    owner_pod = core.create_namespaced_pod(
        cluster_namespace,
        {
            "metadata": {"name": "orchestrator"},
            "spec": template("import time; time.sleep(60)")["spec"],
        },
    )
    owner = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "orchestrator",
        "uid": owner_pod.metadata.uid,
    }
    spec = RunSpec(
        run_id="stop",
        namespace=cluster_namespace,
        owner=owner,
        steps=[
            step("quick"),
            sleeper("long"),
            step("later", upstream=("long",)),
        ],
    )
    sup, box, thread = run_in_thread(k8s_api_client, spec)
    long_pod = pod_name("stop", "long", 1)
    wait_for(
        lambda: (
            sup.status()["quick"][0] is StepStatus.SUCCEEDED
            and sup.status()["long"][0] is StepStatus.RUNNING
        ),
        timeout=20,
        what="quick done and long running",
    )
    sup.stop()
    thread.join(20)
    result = box["result"]
    assert result.status is RunStatus.STOPPED
    assert {n: s.status for n, s in result.steps.items()} == {
        "quick": StepStatus.SUCCEEDED,
        "long": StepStatus.STOPPED,
        "later": StepStatus.STOPPED,
    }
    pods = {p.metadata.name: p for p in run_pods(k8s_api_client, cluster_namespace, "stop")}
    assert long_pod not in pods or pods[long_pod].metadata.deletion_timestamp
    quick = pods[pod_name("stop", "quick", 1)]  # finished: kept for inspection
    assert quick.metadata.owner_references[0].uid == owner_pod.metadata.uid

    core.delete_namespaced_pod("orchestrator", cluster_namespace, grace_period_seconds=0)
    wait_for(
        lambda: not run_pods(k8s_api_client, cluster_namespace, "stop"),
        timeout=20,
        what="attempts removed with their owner",
    )


def test_finished_ttl_zero_deletes_finished_attempts(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    spec = RunSpec(
        run_id="ttl",
        namespace=cluster_namespace,
        finished_ttl_seconds=0,
        steps=[step("one")],
    )
    assert run(k8s_api_client, spec).status is RunStatus.SUCCEEDED
    wait_for(lambda: not run_pods(k8s_api_client, cluster_namespace, "ttl"), timeout=10, what="ttl")
