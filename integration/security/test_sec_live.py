"""Issue 7 §3 on the local cluster: what the supervisor really asks the API server for stays
inside the Role, and hostile step, pipeline and run names make valid objects end to end."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest
from kubernetes import client as k8s
from zenml.integrations.kubernetes import kube_utils

from zenml_oom_orchestrator import rbac
from zenml_oom_orchestrator.localcluster.kubelet.simulated import ANNOTATION
from zenml_oom_orchestrator.supervisor import RunSpec, RunStatus, StepStatus, Supervisor, naming

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.local_only("checks every request against the Role at the local API server"),
]

HOSTILE_STEPS = [
    "Train Model ünïcödé 🚀",
    "x" * 300,
    "a.b..c.",
    "a-b-c",  # slugs like the one above: the hash keeps them apart
    "UPPERCASE_STEP",
    "--leading-dashes",
    "$(rm -rf /); `id` | & > < ' \" \\",
    "-",
    "日本語のステップ",
    "step\nwith\tcontrol",
]
HOSTILE_PIPELINE = "My Pipeline!! 🚀 --" + "p" * 200
HOSTILE_RUN = "Run/ID with spaces & ünïcode " + "r" * 100


def _template(seconds: float, needs: str | None = None, exit_code: int = 0) -> dict[str, Any]:
    script: dict[str, Any] = {"afterMs": int(seconds * 1000), "exitCode": exit_code}
    if needs:
        script["needsMemory"] = needs
    return {
        # As the flavor's step pods carry them (step_pods.base_labels, ZenML's sanitiser).
        "metadata": {
            "labels": {"pipeline": kube_utils.sanitize_label_value(HOSTILE_PIPELINE)},
            "annotations": {ANNOTATION: json.dumps(script)},
        },
        "spec": {"containers": [{"name": "main", "image": "sec/sim", "command": ["true"]}]},
    }


def _run(api_client: Any, spec: RunSpec, stop_after: float | None = None) -> Any:
    sup = Supervisor(api_client, spec)
    if stop_after is None:
        return sup.run()
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", sup.run()), daemon=True)
    thread.start()
    time.sleep(stop_after)
    sup.stop()
    thread.join(30)
    return box["r"]


def test_requests_the_supervisor_makes_stay_inside_the_role(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    server = local_cluster.api_server
    before = Counter(server.request_counts)
    policy = {"initial_memory": "256Mi", "memory_multiplier": 2}
    spec = RunSpec.model_validate(
        {
            "run_id": "rbac-live",
            "namespace": cluster_namespace,
            "finished_ttl_seconds": 0,  # deletes finished pods at the end
            "steps": [
                {"name": "oom", "pod_template": _template(0.2, "300Mi"), "policy": policy},
                {"name": "app", "pod_template": _template(0.2, exit_code=3), "policy": policy},
                {"name": "slow", "pod_template": _template(30), "policy": policy},
            ],
        }
    )
    result = _run(k8s_api_client, spec, stop_after=2.0)  # the stop deletes `slow`'s pod
    assert result.steps["slow"].status is StepStatus.STOPPED
    used = {
        (verb, resource)
        for (verb, resource), n in (Counter(server.request_counts) - before).items()
        if n and resource != "discovery"
    }
    assert used <= rbac.granted(), sorted(used - rbac.granted())
    assert {("watch", "pods"), ("create", "pods"), ("patch", "pods"), ("delete", "pods"),
            ("create", "events"), ("list", "events"), ("list", "nodes")} <= used  # fmt: skip


def test_hostile_names_make_valid_objects_end_to_end(
    local_cluster: Any, k8s_api_client: Any, cluster_namespace: str
) -> None:
    policy = {"initial_memory": "256Mi", "memory_multiplier": 2}
    steps = [
        {
            "name": n,
            "pod_template": _template(0.2, "300Mi" if i % 3 == 0 else None),
            "policy": policy,
        }
        for i, n in enumerate(HOSTILE_STEPS)
    ]
    spec = RunSpec.model_validate(
        {
            "run_id": HOSTILE_RUN,
            "namespace": cluster_namespace,
            "name_prefix": HOSTILE_PIPELINE,
            "steps": steps,
        }
    )
    result = _run(k8s_api_client, spec)
    # The API server validated every name and label: a refusal would have failed the step.
    assert result.status is RunStatus.SUCCEEDED, {
        n: s.message for n, s in result.steps.items() if s.status is not StepStatus.SUCCEEDED
    }

    core = k8s.CoreV1Api(k8s_api_client)
    pods = core.list_namespaced_pod(
        cluster_namespace, label_selector=naming.run_selector(HOSTILE_RUN)
    ).items
    names = [p.metadata.name for p in pods]
    assert len(names) == len(set(names)) == sum(len(s.attempts) for s in result.steps.values())
    assert all(len(n) <= 63 and n[0].isalnum() and n[-1].isalnum() for n in names)
    for i, step in enumerate(HOSTILE_STEPS):
        # The label is the sanitised form; selecting by it finds exactly this step's attempts,
        # and the annotation keeps the exact name for people and for resume.
        found = core.list_namespaced_pod(
            cluster_namespace,
            label_selector=f"{naming.LABEL_STEP}={naming.label_value(step)},"
            f"{naming.LABEL_RUN}={naming.label_value(HOSTILE_RUN)}",
        ).items
        expected = 2 if i % 3 == 0 else 1
        assert len(found) == expected, step
        assert {p.metadata.annotations[naming.ANN_STEP] for p in found} == {step}
