"""Issue 7 §2: 10 % of API calls fail (429 with Retry-After, 500, dropped connections) and
every watch is forcibly expired several times, while three runs with mixed outcomes go on at
once: every run still ends with the right outcome for every step, and no attempt is doubled.

(The supervisor's own test_sup_resilience covers one run of real processes under faults; this
one is about many runs, many steps and server-side expiry of every open watch at once.)"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from rel_helpers import NEEDS, attempts_on_cluster, pods_of, sim, step, supervisor_events

from zenml_oom_orchestrator.supervisor import RunSpec, RunStatus, StepStatus, Supervisor
from zenml_oom_orchestrator.supervisor.naming import attempt_name

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.local_only("injects faults into the local API server"),
]


def _spec(run_id: str, namespace: str) -> RunSpec:
    return RunSpec.model_validate(
        {
            "run_id": run_id,
            "namespace": namespace,
            "watch_timeout_seconds": 2,
            "steps": [
                step("load", sim(0.3)),
                step("oom-a", sim(0.5, NEEDS), "load"),
                step("oom-b", sim(0.5, NEEDS), "load"),
                step("plain", sim(0.8), "load"),
                step("join", sim(0.3), "oom-a", "oom-b", "plain"),
                step("broken", sim(0.4, exit_code=3)),  # app error, no app retries: fails
                step("after-broken", sim(0.2), "broken"),  # so this is skipped
            ],
        }
    )


EXPECTED = {
    "load": (StepStatus.SUCCEEDED, [1]),
    "oom-a": (StepStatus.SUCCEEDED, [1, 2]),
    "oom-b": (StepStatus.SUCCEEDED, [1, 2]),
    "plain": (StepStatus.SUCCEEDED, [1]),
    "join": (StepStatus.SUCCEEDED, [1]),
    "broken": (StepStatus.FAILED, [1]),
    "after-broken": (StepStatus.SKIPPED, []),
}


def test_ten_percent_api_faults_and_expired_watches_three_runs_end_right(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    server = local_cluster.api_server
    faults = server.faults
    before = dict(faults.injected)
    runs = [f"faulty-{i}" for i in range(3)]
    results: dict[str, Any] = {}
    sups = {r: Supervisor(k8s_api_client, _spec(r, cluster_namespace)) for r in runs}
    threads = [
        threading.Thread(target=lambda r=r: results.setdefault(r, sups[r].run()), daemon=True)
        for r in runs
    ]
    faults.update(
        throttle_rate=0.034,
        retry_after_seconds=1,
        error_rate=0.033,
        drop_rate=0.033,
        seed=7,
    )
    try:
        for t in threads:
            t.start()
        expired = 0
        while any(t.is_alive() for t in threads) and expired < 4:
            time.sleep(1.0)
            server.expire_watches()  # every open watch ends with 410; history trimmed too
            expired += 1
        for t in threads:
            t.join(90)
    finally:
        faults.clear()
    injected = {k: v - before.get(k, 0) for k, v in faults.injected.items()}
    assert expired >= 2, "the runs ended before the watches could be expired twice"
    assert sum(injected.get(k, 0) for k in ("429", "500", "drop")) >= 5, injected
    assert sum(s.informer.relists for s in sups.values()) >= 2

    store = local_cluster.store
    for run_id in runs:
        result = results[run_id]
        assert result.status is RunStatus.FAILED  # `broken` failed; everything else is right
        got = {name: (s.status, [a.number for a in s.attempts]) for name, s in result.steps.items()}
        assert got == EXPECTED, run_id
        oom = result.steps["oom-a"].attempts
        assert [a.memory_limit for a in oom] == [256 * 2**20, 512 * 2**20]
        on_cluster = attempts_on_cluster(store, cluster_namespace, run_id)
        assert on_cluster == {k: v for k, (_s, v) in EXPECTED.items() if v}, run_id
    # One Event per judged attempt (a decision, or the success), however many times its
    # create or the Event itself was retried.
    events = supervisor_events(store, cluster_namespace)
    assert all(len(reasons) == 1 for reasons in events.values()), events
    every = {p["metadata"]["name"] for r in runs for p in pods_of(store, cluster_namespace, r)}
    assert set(events) == every
    decided = {attempt_name(r, s, 1) for r in runs for s in ("oom-a", "oom-b", "broken")}
    assert {n for n, reasons in events.items() if reasons != ["Succeeded"]} == decided
