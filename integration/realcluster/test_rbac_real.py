"""Issue 11 §7: RBAC for real. The Role from zenml_oom_orchestrator/rbac.py is applied on the
real API server; the supervisor runs in a pod as that ServiceAccount, with the token the kubelet
gets for it from the TokenRequest API (not the admin's kubeconfig), through a full OOM run; the
API server's audit log and the supervisor's own log show no 403. Take a verb out of the Role
and this test fails on the audit log's 403 (tried once by hand with `patch` on pods)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from realtier_audit import AuditedApiServer, audited_api_server

from zenml_oom_orchestrator import rbac
from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.policy.attempts import AttemptRecord

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.real_only("reads the audit log of a real kube-apiserver and a kubelet's token"),
]

STEP_IMAGE = "localhost/zenml-oom:dev"  # zenml + this package (integration/realcluster/build.sh)
MI = 2**20


def _alloc(mib: int) -> str:
    return f"b = bytearray({mib} * 2**20); b[::4096] = b'\\x01' * ({mib} * 2**20 // 4096)"


def _step(name: str, code: str) -> dict[str, Any]:
    return {
        "name": name,
        "policy": {"initial_memory": "128Mi", "memory_multiplier": 2},
        "pod_template": {
            "spec": {
                "containers": [
                    {"name": "main", "image": "python:3.11", "command": ["python", "-c", code]}
                ],
                "terminationGracePeriodSeconds": 2,
            }
        },
    }


def _spec(namespace: str) -> dict[str, Any]:
    return {
        "run_id": "rbac-real",
        "namespace": namespace,
        "finished_ttl_seconds": 0,  # the supervisor deletes the finished pods at the end
        "steps": [
            _step(
                "oom", _alloc(200)
            ),  # OOM-killed at 128Mi, succeeds at 384Mi (+256Mi minimum growth)
            _step("app", "raise SystemExit(3)"),  # an application error: not retried
        ],
    }


@pytest.fixture
def audited(cluster: Any, tmp_path: Path) -> Iterator[AuditedApiServer]:
    with audited_api_server(Path(cluster.kubeconfig_path).parent, tmp_path) as server:
        yield server


@pytest.fixture
def role_applied(cluster: Any, cluster_namespace: str) -> Iterator[str]:
    yield cluster.apply_rbac(cluster_namespace)
    cluster.remove_rbac(cluster_namespace)


def _supervisor_pod(name: str, service_account: str, api: AuditedApiServer) -> dict[str, Any]:
    env = []
    if api.second:  # in-cluster config reads these; the Service leads to the tier's own server
        env = [
            {"name": "KUBERNETES_SERVICE_HOST", "value": api.host},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(api.port)},
        ]
    command = ["python", "-m", "zenml_oom_orchestrator.supervisor", "--in-cluster"]
    command += ["--spec", "/spec/run.json", "--events", "/dev/stdout"]
    return {
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": service_account,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "supervisor",
                    "image": STEP_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "env": env,
                    "resources": {"requests": {"memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                    "volumeMounts": [{"name": "spec", "mountPath": "/spec"}],
                }
            ],
            "volumes": [{"name": "spec", "configMap": {"name": name}}],
        },
    }


def _wait_finished(core: Any, namespace: str, name: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase in ("Succeeded", "Failed"):
            return pod
        time.sleep(1)
    raise AssertionError(f"supervisor pod {name} still {pod.status.phase} after {timeout:g}s")


def _audit_of(api: AuditedApiServer, offset: int, user: str) -> list[dict[str, Any]]:
    """The service account's requests; its open watch is logged when it closes, so wait a bit."""
    deadline = time.monotonic() + 30
    while True:
        mine = [e for e in api.entries_since(offset) if e["user"]["username"] == user]
        watches = [e for e in mine if e["verb"] == "watch"]
        if watches or time.monotonic() > deadline:
            return mine
        time.sleep(1)


def test_supervisor_with_the_roles_token_makes_a_full_oom_run_without_a_403(
    k8s_api_client: Any, cluster_namespace: str, role_applied: str, audited: AuditedApiServer
) -> None:
    core = k8s.CoreV1Api(k8s_api_client)
    name = f"supervisor-{secrets.token_hex(3)}"
    spec = json.dumps(_spec(cluster_namespace))
    core.create_namespaced_config_map(
        cluster_namespace, {"metadata": {"name": name}, "data": {"run.json": spec}}
    )
    offset = audited.size()
    core.create_namespaced_pod(cluster_namespace, _supervisor_pod(name, role_applied, audited))
    pod = _wait_finished(core, cluster_namespace, name, timeout=240)
    log = core.read_namespaced_pod_log(name, cluster_namespace)
    print(f"\nsupervisor log ({audited.log}):\n{log}")

    # What the API server saw from this service account: every call allowed, all in the Role.
    # Checked first: a verb missing from the Role shows here, before the run fails on it.
    user = f"system:serviceaccount:{cluster_namespace}:{role_applied}"
    entries = _audit_of(audited, offset, user)
    assert entries, f"no request of {user} in {audited.log}"
    denied = [
        (e["verb"], e["requestURI"], e["responseStatus"]["code"])
        for e in entries
        if e["responseStatus"]["code"] == 403
    ]
    assert denied == [], denied
    # The token is the pod's own: the kubelet got it through TokenRequest, bound to this pod.
    assert {
        tuple(e["user"]["extra"]["authentication.kubernetes.io/pod-name"]) for e in entries
    } == {(name,)}
    assert "403" not in log and "Forbidden" not in log
    used = {(e["verb"], e["objectRef"]["resource"]) for e in entries if "objectRef" in e}
    assert used <= rbac.granted(), sorted(used - rbac.granted())
    assert {("list", "pods"), ("watch", "pods"), ("create", "pods"), ("patch", "pods"),
            ("delete", "pods"), ("create", "events"), ("list", "nodes")} <= used, used  # fmt: skip

    # The run itself: escalated past the OOM kill, the application error not retried.
    assert pod.status.container_statuses[0].state.terminated.exit_code == 1, log  # run failed
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    result = next(e["result"] for e in lines if e["event"] == "run_finished")
    oom = [AttemptRecord.from_dict(a) for a in result["steps"]["oom"]["attempts"]]
    assert [(a.memory_limit // MI, a.outcome and a.outcome.kind) for a in oom] == [
        (128, OutcomeKind.OOM_KILLED),
        (384, OutcomeKind.SUCCEEDED),
    ]
    assert result["steps"]["oom"]["status"] == "succeeded"
    assert result["steps"]["app"]["status"] == "failed"
