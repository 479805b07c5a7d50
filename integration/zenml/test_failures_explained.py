"""A failed synchronous run says why in the output the user is looking at, and raises.

ZenML's local orchestrator raises when a step fails, so `python my_pipeline.py` exits non-zero;
ZenML 0.98's stock Kubernetes orchestrator returns normally (its orchestrator pod exits 0
after failed steps). This flavor raises ``PipelineRunFailedError`` after the attempt table.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.utils import parse_quantity
from zenml.client import Client
from zenml.enums import ExecutionStatus

from zenml_oom_orchestrator.flavors import (
    OOMKubernetesOrchestratorSettings,
    PipelineRunFailedError,
)
from zenml_oom_orchestrator.quantity import format_memory
from zenml_oom_orchestrator.testing.pipelines import over_the_cap
from zenml_oom_orchestrator.testing.stack import no_build_docker_settings

pytestmark = [pytest.mark.zenml, pytest.mark.cluster]

TOO_BIG = "64Gi"  # more than any node of either cluster has (local 2Gi, real 8Gi)


def test_a_step_no_node_can_hold_fails_the_synchronous_run_with_its_reason(
    oom_stack: str, run_cluster: tuple[Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, namespace = run_cluster
    nodes = k8s.CoreV1Api(api).list_node().items
    largest = max(int(parse_quantity(n.status.allocatable["memory"])) for n in nodes)
    settings = {
        "docker": no_build_docker_settings(),
        "orchestrator": OOMKubernetesOrchestratorSettings(initial_memory=TOO_BIG),
    }
    active_before = Client().active_stack_model.id
    Client().activate_stack(oom_stack)
    try:
        with pytest.raises(PipelineRunFailedError) as failed:
            over_the_cap.with_options(settings=settings)(mib=10)
    finally:  # test_store_sync, next in the session, compiles on the active stack
        Client().activate_stack(active_before)
    out = capsys.readouterr().out
    print(out)
    why = failed.value.failed_steps["greedy"]
    assert TOO_BIG in why and f"largest node has {format_memory(largest)} allocatable" in why
    assert list(failed.value.failed_steps) == ["greedy"]
    assert f"zenml-oom explain {failed.value.run_name}" in str(failed.value)
    # The attempt table printed before it: the step that never got a pod says why.
    (row,) = [line for line in out.splitlines() if line.startswith("greedy ")]
    assert "failed" in row and f"the step starts with {TOO_BIG}" in row
    run = Client().get_pipeline_run(failed.value.run_id)
    assert run.status is ExecutionStatus.FAILED
    # The orchestrator pod, whose log the client streams line by line, writes unbuffered:
    # block-buffered, a line cut at an 8 KiB flush boundary was printed half and never ended.
    jobs = k8s.BatchV1Api(api).list_namespaced_job(namespace, label_selector=f"run_id={run.id}")
    (job,) = jobs.items
    env = {(e.name, e.value) for e in job.spec.template.spec.containers[0].env or []}
    assert ("PYTHONUNBUFFERED", "1") in env
