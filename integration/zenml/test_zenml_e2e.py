"""End to end: real ZenML server, real local cluster, step code really running in attempt pods.

The scenario that started the project (ZenML issue #3440: parallel steps OOM-killed on a node too
small for all of them, left hanging) scaled to this machine, the cap case, and the same pipeline
on ZenML's stock ``kubernetes`` flavor, side by side.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from zenml.client import Client
from zenml.enums import ExecutionStatus
from zenml_runs import Outcome, run_oom, run_stock

from zenml_oom_orchestrator import rbac
from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY
from zenml_oom_orchestrator.testing.pipelines import fan_out, oom_in_teardown, over_the_cap

# The first test's setup starts the ZenML server and runs the fan-out pipeline; on the real tier
# (a ZenML import in every pod, on 2 shared cores) that alone took 10 min under heavy load.
pytestmark = [pytest.mark.zenml, pytest.mark.cluster, pytest.mark.timeout(1500)]

WIDTH = 4
NEED_MIB = 300  # + ZenML's ~135 MB: more than the 320Mi start, less than the 640Mi retry
START, RAISED, CAP = "320Mi", "640Mi", "640Mi"
STOCK_DEADLINE = 150.0  # seconds the stock flavor gets before its run counts as hanging


def _run_oom(pipeline: Any, **params: Any) -> Outcome:
    return run_oom(
        pipeline,
        {"initial_memory": START, "max_memory": CAP, "max_oom_retries": 3},
        **params,
    )


@pytest.fixture(scope="module")
def oom_fan_out(oom_stack: str) -> Iterator[Outcome]:
    yield _run_oom(fan_out, mib=NEED_MIB, width=WIDTH)


def test_parallel_steps_over_their_start_all_complete_with_escalation(
    oom_fan_out: Outcome,
) -> None:
    outcome = oom_fan_out
    print("\n" + outcome.row())
    assert outcome.run.status is ExecutionStatus.COMPLETED
    assert outcome.open_step_runs == 0
    for i in range(WIDTH):
        name = f"allocate_{i}"
        # The OOM-killed attempt's step run was finished (RETRIED) when the next one came.
        assert outcome.step_runs[name] == ["retried", "completed"], name
        history = outcome.run.steps[name].run_metadata[HISTORY_KEY]
        assert [(h["attempt"], h["memory_limit"], h["outcome"]) for h in history] == [
            (1, START, "oom_killed"),
            (2, RAISED, "succeeded"),
        ], name
        assert history[0]["exit_code"] == 137
    assert outcome.step_runs["report"] == ["completed"]


@pytest.mark.real_only("only a real API server enforces the Role")
def test_orchestrator_pod_ran_as_the_roles_service_account_without_a_403(
    oom_fan_out: Outcome, real_namespace: str, cluster: Any
) -> None:
    """Issue 11 §7 through ZenML: the orchestrator pod (entrypoint and supervisor) with the
    token of rbac.py's ServiceAccount, which the kubelet got from the TokenRequest API."""
    api = cluster.api_client()
    try:
        core = k8s.CoreV1Api(api)
        pods = core.list_namespaced_pod(real_namespace, label_selector="job-name").items
        ours = [p for p in pods if p.spec.service_account_name == rbac.NAME]
        assert ours, [(p.metadata.name, p.spec.service_account_name) for p in pods]
        for pod in ours:
            log = core.read_namespaced_pod_log(pod.metadata.name, real_namespace)
            assert not re.search(r"\b403\b|Forbidden", log), log
    finally:
        api.close()


def test_step_over_its_cap_fails_with_the_cap_message_and_downstream_never_starts(
    oom_stack: str,
) -> None:
    outcome = _run_oom(over_the_cap, mib=700)
    print("\n" + outcome.row())
    assert outcome.run.status is ExecutionStatus.FAILED
    assert outcome.open_step_runs == 0
    greedy = Client().zen_store.get_run_step(outcome.run.steps["greedy"].id)
    assert greedy.status is ExecutionStatus.FAILED
    assert greedy.exception_info is not None
    assert "max_memory" in greedy.exception_info.message
    history = greedy.run_metadata[HISTORY_KEY]
    assert [(h["memory_limit"], h["outcome"]) for h in history] == [
        (START, "oom_killed"),
        (CAP, "oom_killed"),
    ]
    assert outcome.step_runs["after_greedy"] == []  # skipped: never started


def test_a_step_oom_killed_after_it_completed_is_not_run_again(oom_stack: str) -> None:
    """Its step run is COMPLETED, then its pod is OOMKilled while the process exits: another
    attempt would redo done work, and ZenML would refuse its step run (409)."""
    outcome = _run_oom(oom_in_teardown, mib=700)
    print("\n" + outcome.row())
    assert outcome.run.status is ExecutionStatus.COMPLETED
    assert outcome.open_step_runs == 0
    assert outcome.step_runs["finish_then_oom"] == ["completed"]
    history = outcome.run.steps["finish_then_oom"].run_metadata[HISTORY_KEY]
    assert [(h["attempt"], h["memory_limit"], h["outcome"]) for h in history] == [
        (1, START, "oom_killed")
    ]
    assert "after the step had reported success: not run again" in history[0]["message"]
    assert outcome.step_runs["report"] == ["completed"]


def test_same_pipeline_on_zenmls_stock_kubernetes_flavor_side_by_side(
    stock_stack: str, oom_fan_out: Outcome, cluster_kind: str
) -> None:
    # Memory given the only way the stock flavor honours it (pod settings), with one retry.
    resources = {"requests": {"memory": START}, "limits": {"memory": START}}
    stock = run_stock(
        fan_out,
        {"pod_settings": {"resources": resources}},
        STOCK_DEADLINE,
        retry={"max_retries": 1},
        mib=NEED_MIB,
        width=WIDTH,
    )
    print(f"\nSame pipeline, same {cluster_kind} cluster (4 steps each needing ~435 MB):")
    print(stock.row())
    print(oom_fan_out.row())
    assert oom_fan_out.run.status is ExecutionStatus.COMPLETED
    assert stock.run.status is not ExecutionStatus.COMPLETED  # fails or hangs
