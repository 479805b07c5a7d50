"""Issue 7 §1 on the local cluster, at a scale a test can afford: what one attempt costs in
API writes, that the informer keeps no finished pod in full, and who gets a freed
max_parallelism slot first (a zero-delay retry keeps the one its attempt freed)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sup_helpers import Recorder

from zenml_oom_orchestrator.policy import AppRetryConfig, OOMPolicy
from zenml_oom_orchestrator.supervisor import RunSpec, RunStatus, StepSpec, Supervisor
from zenml_oom_orchestrator.supervisor.testing import NEEDS, sim

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.local_only("counts the requests the local API server served"),
]
ESCALATE = OOMPolicy(initial_memory="256Mi", memory_multiplier=2, grow_in_place=False)
READS = {"get", "list", "watch"}


def _writes(server: Any) -> Counter[tuple[str, str]]:
    return Counter({k: n for k, n in server.request_counts.items() if k[0] not in READS})


def test_a_success_costs_two_writes_a_failure_three(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    spec = RunSpec(
        run_id="costs",
        namespace=cluster_namespace,
        steps=[
            StepSpec(name="ok-1", pod_template=sim(0.3), policy=ESCALATE),
            StepSpec(name="ok-2", pod_template=sim(0.3), policy=ESCALATE),
            StepSpec(name="oom", pod_template=sim(0.3, NEEDS), policy=ESCALATE),
        ],
    )
    server = local_cluster.api_server
    before = _writes(server)  # tests run one at a time: only this run writes meanwhile
    sup = Supervisor(k8s_api_client, spec)
    result = sup.run()
    spent = _writes(server) - before
    assert result.status is RunStatus.SUCCEEDED
    assert [len(s.attempts) for s in result.steps.values()] == [1, 1, 2]
    # 4 attempts created; the OOM-killed one has a result written on its pod; each judged
    # attempt one Event holding its result (it outlives the pod); plus the run's one
    # RunStarted marker Event. No pod is deleted: all of them ended by themselves.
    assert spent == Counter({("create", "pods"): 4, ("patch", "pods"): 1, ("create", "events"): 5})
    # The informer holds no finished pod in full, only the names (for expiry at run end).
    assert sup.informer.items() == []
    assert len(sup.informer.names()) == 4


def test_a_freed_slot_goes_to_retries_before_steps_not_started(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    # One slot. `oom` starts first and is OOM-killed: its zero-delay retry takes the slot it
    # freed, in the same reconcile. `flaky` fails and retries after 0.3 s, while `fresh-1`
    # holds the slot: when that ends, `flaky` (a retry) gets the slot, not `fresh-2`.
    spec = RunSpec(
        run_id="slots",
        namespace=cluster_namespace,
        max_parallelism=1,
        steps=[
            StepSpec(name="oom", pod_template=sim(0.3, NEEDS), policy=ESCALATE),
            StepSpec(
                name="flaky",
                pod_template=sim(0.3, exit_code=3),
                policy=ESCALATE,
                app_retry=AppRetryConfig(max_retries=1, delay=0.3),
            ),
            StepSpec(name="fresh-1", pod_template=sim(1.0), policy=ESCALATE),
            StepSpec(name="fresh-2", pod_template=sim(0.3), policy=ESCALATE),
        ],
    )
    rec = Recorder()
    result = Supervisor(k8s_api_client, spec, rec).run()
    assert result.status is RunStatus.FAILED  # flaky fails twice: exit 3 is an app error
    started = [(args[0], args[1].number) for args in rec.names("started")]
    assert started == [
        ("oom", 1),
        ("oom", 2),
        ("flaky", 1),
        ("fresh-1", 1),
        ("flaky", 2),
        ("fresh-2", 1),
    ]
