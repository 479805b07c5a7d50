"""Issue 7 §2: the supervisor process is SIGKILLed and started again three times during one
run. No attempt is duplicated or lost, every step ends terminal with the attempts it should
have had, each failed attempt carries its result, and every attempt exactly one Event holding
its result (a decision, or the success).

(test_sup_resilience kills once at a chosen moment; this kills three times at moments chosen
by progress, including while attempts finish with nobody watching.)"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from rel_helpers import (
    NEEDS,
    ApiReader,
    attempts_on_cluster,
    pods_of,
    sim,
    start_supervisor,
    step,
    supervisor_events,
)

from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.supervisor import naming

pytestmark = pytest.mark.cluster
RUN = "thrice"


def _spec(namespace: str) -> dict[str, Any]:
    # Three waves of steps so the run lasts long enough for three kills; a third of the steps
    # are OOMKilled once and escalate.
    steps = []
    for wave in range(3):
        up = [f"w{wave - 1}-{i}" for i in range(4)] if wave else []
        for i in range(4):
            needs = NEEDS if i % 3 == 0 else None
            steps.append(step(f"w{wave}-{i}", sim(0.8 + 0.2 * i, needs), *up))
    return {"run_id": RUN, "namespace": namespace, "steps": steps}


def _expected() -> dict[str, list[int]]:
    return {f"w{w}-{i}": [1, 2] if i % 3 == 0 else [1] for w in range(3) for i in range(4)}


def _finished_attempts(store: Any, namespace: str) -> int:
    return sum(
        1
        for p in pods_of(store, namespace, RUN)
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    )


def test_supervisor_killed_three_times_no_attempt_duplicated_or_lost(
    cluster: Any, k8s_api_client: Any, cluster_namespace: str, tmp_path: Path
) -> None:
    store = ApiReader(k8s_api_client)
    spec_file = tmp_path / "run.json"
    spec_file.write_text(json.dumps(_spec(cluster_namespace)))
    kubeconfig = cluster.kubeconfig_path

    # Kill once the run has made this much progress (finished attempts), then stay down a
    # while, so attempts finish (and OOMs happen) with no supervisor watching.
    for kill_after in (2, 7, 12):
        sup = start_supervisor(tmp_path, kubeconfig, spec_file)
        wait_for(
            lambda n=kill_after: _finished_attempts(store, cluster_namespace) >= n,
            timeout=60,
            interval=0.05,
            what=f"{kill_after} finished attempts",
        )
        sup.send_signal(signal.SIGKILL)
        sup.wait(10)
        assert not (tmp_path / "result.json").exists()
        time.sleep(1.2)

    last = start_supervisor(tmp_path, kubeconfig, spec_file)
    _, err = last.communicate(timeout=90)
    assert last.returncode == 0, err.decode()[-2000:]

    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "succeeded"
    expected = _expected()
    got = {n: [a["number"] for a in s["attempts"]] for n, s in result["steps"].items()}
    assert got == expected  # nothing lost from the records...
    assert all(s["status"] == "succeeded" for s in result["steps"].values())
    for name, s in result["steps"].items():
        limits = [a["memory_limit"] // 2**20 for a in s["attempts"]]
        assert limits == ([256, 512] if len(expected[name]) == 2 else [256]), name

    # ...nor from the cluster, and nothing doubled: exactly these pods; each OOM-killed one
    # with its result, and each attempt with one Event holding its result (a decision or the
    # success), however often the supervisor restarted around it.
    assert attempts_on_cluster(store, cluster_namespace, RUN) == expected
    pods = pods_of(store, cluster_namespace, RUN)
    oom = {(n, 1) for n, numbers in expected.items() if len(numbers) == 2}
    failed, with_result = [], []
    for p in pods:
        meta = p["metadata"]
        if (meta["annotations"][naming.ANN_STEP], int(meta["labels"]["attempt"])) in oom:
            failed.append(meta["name"])
        if naming.ANN_RESULT in meta["annotations"]:
            with_result.append(meta["name"])
    assert len(failed) == len(oom) == 6 and sorted(with_result) == sorted(failed)
    events = supervisor_events(store, cluster_namespace)
    assert sorted(events) == sorted(p["metadata"]["name"] for p in pods)
    assert all(len(reasons) == 1 for reasons in events.values()), events
    assert sorted(n for n, reasons in events.items() if reasons != ["Succeeded"]) == sorted(failed)
