"""Issue 14 (supervisor memory with thousands of attempts in flight): the pod cache keeps each
pod without `managedFields`, which the real API server sends with every pod and event (server-
side apply's bookkeeping, a large share of a pod's JSON) and nothing in the supervisor reads."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from kubernetes import client as k8s
from sup_helpers import one_step

from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.supervisor import RunStatus, Supervisor

pytestmark = pytest.mark.cluster


@pytest.mark.real_only("the local API server keeps no managedFields (it serves no apply)")
def test_the_pod_cache_holds_running_pods_without_managed_fields(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    spec = one_step(
        "cache",
        cluster_namespace,
        "hold",
        "import time; time.sleep(6)",
        OOMPolicy(initial_memory="64Mi", grow_in_place=False),
    )
    sup = Supervisor(k8s_api_client, spec)
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.append(sup.run()), daemon=True)
    runner.start()

    def running() -> list[dict[str, Any]]:
        return [
            p
            for p in sup.informer.items()
            if any(
                "running" in (s.get("state") or {})
                for s in p["status"].get("containerStatuses") or []
            )
        ]

    wait_for(running, timeout=90)
    cached = running()[0]
    served = json.loads(
        k8s.CoreV1Api(k8s_api_client)
        .read_namespaced_pod(cached["metadata"]["name"], cluster_namespace, _preload_content=False)
        .data
    )
    assert served["metadata"].get("managedFields"), "the server sent none: nothing was tested"
    assert all("managedFields" not in p["metadata"] for p in sup.informer.items())
    size = len(json.dumps(cached))
    print(f"cached pod: {size} bytes; as served: {len(json.dumps(served))} bytes")

    runner.join(120)
    assert results and results[0].status is RunStatus.SUCCEEDED
