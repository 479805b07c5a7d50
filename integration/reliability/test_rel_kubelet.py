"""Issue 7 §2: the kubelet dies mid-run and its pods are lost (the node goes NotReady, its
processes die, pod GC deletes the pods, then a kubelet comes back). Every affected step is
retried at the same memory on the infrastructure budget; a step with no infrastructure budget
left gives up saying so; the OOM budget is untouched by the loss.

(test_sup_infra loses one pod of one step; this loses the whole node under several steps.)"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from rel_helpers import NEEDS, pods_of, sim, step

from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.supervisor import RunSpec, RunStatus, StepStatus, Supervisor

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.local_only("stops the local kubelet and deletes pods in its store"),
]
RUN = "nodeloss"
MI = 2**20


def _in_phase(store: Any, namespace: str, phase: str) -> set[str]:
    return {
        p["metadata"]["annotations"]["oom.zenml.io/step-name"]
        for p in pods_of(store, namespace, RUN)
        if (p.get("status") or {}).get("phase") == phase
    }


def test_kubelet_killed_mid_run_lost_steps_retry_on_infrastructure_budget(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    spec = RunSpec.model_validate(
        {
            "run_id": RUN,
            "namespace": cluster_namespace,
            "node_lost_timeout_seconds": 5,
            "steps": [
                step("quick", sim(0.1)),  # done before the node dies: untouched
                step("long-a", sim(2.5)),
                step("long-b", sim(2.5), max_infrastructure_retries=1),
                # Lost at 256Mi: retried at 256Mi (infra), then OOM, then 512Mi (OOM budget 1).
                step("grows", sim(2.5, NEEDS), max_oom_retries=1),
                step("fragile", sim(2.5), max_infrastructure_retries=0),
                step("after", sim(0.1), "long-a"),
            ],
        }
    )
    sup = Supervisor(k8s_api_client, spec)
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", sup.run()), daemon=True)
    thread.start()
    store, kubelet = local_cluster.store, local_cluster.kubelet
    in_flight = {"long-a", "long-b", "grows", "fragile"}
    wait_for(
        lambda: (
            in_flight <= _in_phase(store, cluster_namespace, "Running")
            and "quick" in _in_phase(store, cluster_namespace, "Succeeded")
        ),
        timeout=20,
        what="four steps running and `quick` done",
    )

    # The kubelet dies: the node stops reporting, the pods' processes die with it...
    kubelet.set_node_ready(False)
    try:
        # ...and pod GC removes the pods of the dead node, with no final status.
        for pod in pods_of(store, cluster_namespace, RUN):
            if pod["status"].get("phase") not in ("Succeeded", "Failed"):
                store.delete(
                    "pods", cluster_namespace, pod["metadata"]["name"], grace_period_seconds=0
                )
    finally:
        kubelet.set_node_ready(True)  # a new kubelet registers the node again
    thread.join(60)
    result = box["r"]

    steps = result.steps
    assert result.status is RunStatus.FAILED  # only because `fragile` had no budget
    assert steps["fragile"].status is StepStatus.FAILED
    assert "infrastructure" in steps["fragile"].message
    assert [a.outcome.kind for a in steps["fragile"].attempts if a.outcome] == [
        OutcomeKind.NODE_LOST
    ]
    for name in ("long-a", "long-b"):
        s = steps[name]
        assert s.status is StepStatus.SUCCEEDED, (name, s.message)
        assert [a.outcome.kind for a in s.attempts if a.outcome] == [
            OutcomeKind.NODE_LOST,
            OutcomeKind.SUCCEEDED,
        ]
        assert [a.budget for a in s.attempts] == [None, "infrastructure"]
        assert [a.memory_limit // MI for a in s.attempts] == [256, 256]
    grows = steps["grows"]
    assert grows.status is StepStatus.SUCCEEDED, grows.message
    assert [
        (a.outcome.kind if a.outcome else None, a.budget, a.memory_limit // MI)
        for a in grows.attempts
    ] == [
        (OutcomeKind.NODE_LOST, None, 256),
        (OutcomeKind.OOM_KILLED, "infrastructure", 256),
        (OutcomeKind.SUCCEEDED, "oom", 512),
    ]
    assert [len(steps[n].attempts) for n in ("quick", "after")] == [1, 1]
    assert all(s.status.terminal for s in steps.values())
