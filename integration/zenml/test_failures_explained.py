"""A failed synchronous run says why in the output the user is looking at, and raises.

ZenML's local orchestrator raises when a step fails, so `python my_pipeline.py` exits non-zero;
ZenML 0.98's stock Kubernetes orchestrator returns normally (its orchestrator pod exits 0
after failed steps). This flavor raises ``PipelineRunFailedError`` after the attempt table.
"""

from __future__ import annotations

import pytest
from zenml.client import Client
from zenml.enums import ExecutionStatus

from zenml_oom_orchestrator.flavors import (
    OOMKubernetesOrchestratorSettings,
    PipelineRunFailedError,
)
from zenml_oom_orchestrator.localcluster.cluster import LocalCluster
from zenml_oom_orchestrator.testing.pipelines import over_the_cap
from zenml_oom_orchestrator.testing.stack import NAMESPACE

pytestmark = [pytest.mark.zenml, pytest.mark.cluster]


def test_a_step_no_node_can_hold_fails_the_synchronous_run_with_its_reason(
    oom_stack: str, small_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # 4Gi on the 2Gi node: it can never be scheduled. No Docker settings: the local stack
    # needs none.
    settings = {"orchestrator": OOMKubernetesOrchestratorSettings(initial_memory="4Gi")}
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
    assert "4Gi" in why and "largest node has 2Gi allocatable" in why
    assert list(failed.value.failed_steps) == ["greedy"]
    assert f"zenml-oom explain {failed.value.run_name}" in str(failed.value)
    # The attempt table printed before it: the step that never got a pod says why.
    (row,) = [line for line in out.splitlines() if line.startswith("greedy ")]
    assert "failed" in row and "the step starts with 4Gi" in row
    run = Client().get_pipeline_run(failed.value.run_id)
    assert run.status is ExecutionStatus.FAILED
    # The orchestrator pod, whose log the client streams line by line, writes unbuffered:
    # block-buffered, a line cut at an 8 KiB flush boundary was printed half and never ended.
    assert small_cluster.store is not None
    selector = f"run_id={run.id}"
    (job,) = small_cluster.store.list("jobs", NAMESPACE, label_selector=selector)[0]
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PYTHONUNBUFFERED", "value": "1"} in env
