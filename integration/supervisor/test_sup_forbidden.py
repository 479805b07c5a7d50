"""A ServiceAccount that lacks one rule: the first 403 ends the step at once, in the API
server's words (verb, resource, user) with what to change, and without the response headers
that ApiException prints. Before, the worker retried it with backoff for ~50 s and logged the
headers each time (found on the real tier with `patch` taken out of the Role).

On the local cluster the 403 is an injected fault worded as kube-apiserver's RBAC authorizer
words it; integration/realcluster/test_rbac_real.py checks the real Role allows a full run.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kubernetes import client as k8s
from sup_helpers import alloc_code, template

from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.supervisor import (
    RunSpec,
    RunStatus,
    StepSpec,
    Supervisor,
    SupervisorError,
    naming,
)
from zenml_oom_orchestrator.supervisor.spec import StepStatus

pytestmark = pytest.mark.cluster


@pytest.mark.local_only("injects a 403 into the local API server")
def test_a_missing_rule_fails_the_step_at_once_saying_which_and_what_to_change(
    local_cluster: Any,
    k8s_api_client: Any,
    cluster_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = RunSpec(
        run_id="forbidden",
        namespace=cluster_namespace,
        steps=[
            # OOM-killed at 128Mi: recording its result patches the pod, which is refused.
            StepSpec(
                name="grow",
                pod_template=template(alloc_code(300)),
                policy=OOMPolicy(initial_memory="128Mi", grow_in_place=False),
            )
        ],
    )
    faults = local_cluster.api_server.faults
    before = faults.injected["403"]
    faults.update(forbid_rate=1.0, verbs={"patch"}, resources={"pods"})
    caplog.set_level(logging.INFO, logger="zenml_oom_orchestrator")
    try:
        result = Supervisor(k8s_api_client, spec).run()
    finally:
        faults.clear()

    assert faults.injected["403"] - before == 1  # asked once: a 403 is not retried
    assert result.status is RunStatus.FAILED
    grow = result.steps["grow"]
    assert grow.status is StepStatus.FAILED
    assert 'cannot patch resource "pods"' in grow.message
    assert f"zenml_oom_orchestrator.rbac --namespace {cluster_namespace}" in grow.message
    assert "will retry" not in caplog.text
    assert "HTTP response headers" not in caplog.text


@pytest.mark.local_only("injects a 403 into the local API server")
def test_a_token_that_cannot_list_pods_stops_the_supervisor_before_anything_starts(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    spec = RunSpec(
        run_id="cannot-list",
        namespace=cluster_namespace,
        steps=[StepSpec(name="s", pod_template=template("print(1)"))],
    )
    faults = local_cluster.api_server.faults
    faults.update(forbid_rate=1.0, verbs={"list"}, resources={"pods"})
    try:
        with pytest.raises(SupervisorError) as refused:
            Supervisor(k8s_api_client, spec).run(sync_timeout=120)
    finally:
        faults.clear()
    message = str(refused.value)
    assert 'cannot list resource "pods"' in message and "zenml_oom_orchestrator.rbac" in message
    # nothing was started for the refused run
    pods = k8s.CoreV1Api(k8s_api_client).list_namespaced_pod(
        cluster_namespace, label_selector=naming.run_selector("cannot-list")
    )
    assert pods.items == []
