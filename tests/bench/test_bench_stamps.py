"""The benchmark's server-side stamps, the Store write hook they ride on, and the simulated
`needsMemory` outcome the workload uses (pure or in-process: no cluster)."""

from __future__ import annotations

import json
from typing import Any

from zenml_oom_orchestrator.bench.stamps import Stamps, percentile
from zenml_oom_orchestrator.localcluster.kubelet.simulated import ANNOTATION, outcome_for
from zenml_oom_orchestrator.localcluster.store import Store


def _pod(name: str, attempt: int, limit: str = "256Mi", **script: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"run_id": "r", "step_name": "s", "attempt": str(attempt)},
            "annotations": {ANNOTATION: json.dumps(script)},
        },
        "spec": {
            "containers": [
                {"name": "main", "image": "x", "resources": {"limits": {"memory": limit}}}
            ]
        },
    }


def test_needs_memory_ooms_below_the_limit_and_succeeds_at_or_above() -> None:
    assert outcome_for(_pod("a", 1, "256Mi", needsMemory="300Mi"), "main", 0)["reason"] == (
        "OOMKilled"
    )
    ok = outcome_for(_pod("a", 2, "512Mi", needsMemory="300Mi", exitCode=0), "main", 0)
    assert ok is not None and ok.get("reason") is None and ok["exitCode"] == 0


def test_store_write_hook_stamps_oom_and_next_attempt() -> None:
    store = Store()
    stamps = Stamps()
    store.write_hooks.append(stamps.hook)
    store.create("pods", _pod("a1", 1), namespace="default")
    oom = {
        "phase": "Failed",
        "containerStatuses": [{"name": "main", "state": {"terminated": {"reason": "OOMKilled"}}}],
    }
    store.mutate("pods", "default", "a1", lambda p: p.update(status=oom), subresource="status")
    store.create("pods", _pod("a2", 2, "512Mi"), namespace="default")
    (latency,) = stamps.oom_to_next("r", "pods")
    assert 0 <= latency < 1
    assert stamps.attempts_created("r") == 2 and stamps.attempts_finished("r") == 1


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile([], 50)) == (50, 99, None)
    assert percentile([3.0], 99) == 3.0
