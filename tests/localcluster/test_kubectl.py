"""kubectl (the Debian kubernetes-client) against the local API server: get, describe, logs,
delete (graceful, cascades), create/apply/replace from files, label/annotate/patch, get -w."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .apiserver_fixtures import Api, api, job_manifest, pod_manifest

__all__ = ["api"]  # fixture

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
Kubectl = Callable[..., str]


@pytest.fixture
def kubectl(api: Api, tmp_path: Path) -> Kubectl:
    env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "HOME": str(tmp_path)}

    def run(*args: str, ok: bool = True) -> str:
        proc = subprocess.run(
            [str(KUBECTL), *args], env=env, capture_output=True, text=True, timeout=30
        )
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr

    run.env = env  # type: ignore[attr-defined]
    return run


def running(api: Api, name: str, node: str = "node-1") -> None:
    """What the scheduler and kubelet would do: bind and report a running container."""
    api.store.mutate("pods", "default", name, lambda o: o["spec"].update(nodeName=node))
    api.store.mutate(
        "pods",
        "default",
        name,
        lambda o: o["status"].update(
            phase="Running",
            podIP="10.0.0.7",
            containerStatuses=[
                {"name": "main", "ready": True, "restartCount": 2, "state": {"running": {}}}
            ],
        ),
    )


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_get_prints_server_side_tables(api: Api, kubectl: Kubectl) -> None:
    api.store.create("pods", pod_manifest("web", {"app": "x"}))
    api.store.create("pods", pod_manifest("batch", {"app": "y"}))
    running(api, "web")
    table = rows(kubectl("get", "pods"))
    assert table[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table[1][:4] == ["batch", "0/1", "Pending", "0"]
    assert table[2][:4] == ["web", "1/1", "Running", "2"]
    wide = kubectl("get", "pods", "-o", "wide", "-l", "app=x")
    assert "10.0.0.7" in wide and "node-1" in wide and "batch" not in wide
    items = json.loads(kubectl("get", "pods", "-o", "json"))["items"]
    assert [i["metadata"]["name"] for i in items] == ["batch", "web"]
    assert kubectl("get", "pod", "web", "-o", "jsonpath={.status.phase}") == "Running"
    assert "kube-system" in kubectl("get", "ns")
    assert "NAMESPACE" in kubectl("get", "pods", "-A")
    api.store.create("jobs", job_manifest())
    assert rows(kubectl("get", "jobs"))[1][:3] == ["j", "Running", "0/1"]
    assert "No resources found" in kubectl("get", "nodes")


def test_describe_pod_lists_its_events(api: Api, kubectl: Kubectl) -> None:
    pod = api.store.create("pods", pod_manifest("web"))
    running(api, "web")
    for i, (reason, msg, uid) in enumerate(
        [
            ("Scheduled", "assigned default/web to node-1", pod["metadata"]["uid"]),
            ("Started", "Started container main", pod["metadata"]["uid"]),
            ("Started", "an older pod of the same name", "another-uid"),
        ]
    ):
        api.store.create(
            "events",
            {
                "metadata": {"name": f"web.{i}"},
                "involvedObject": {
                    "kind": "Pod",
                    "name": "web",
                    "namespace": "default",
                    "uid": uid,
                    "apiVersion": "v1",
                },
                "reason": reason,
                "message": msg,
                "type": "Normal",
                "source": {"component": "kubelet"},
                "count": 1,
            },
        )
    out = kubectl("describe", "pod", "web")
    assert "Status:           Running" in out and "memory:  256Mi" in out
    assert "assigned default/web to node-1" in out and "Started container main" in out
    assert "an older pod" not in out  # selected by involvedObject.uid
    assert api.server.request_counts[("list", "events")] >= 1
    api.store.create(
        "nodes", {"metadata": {"name": "node-1"}, "status": {"capacity": {"memory": "8Gi"}}}
    )
    assert "memory:" in kubectl("describe", "node", "node-1")


def test_logs(api: Api, kubectl: Kubectl) -> None:
    api.store.create("pods", pod_manifest("web"))
    api.logs[("default", "web", "main")] = "a\nb\nc\n"
    assert kubectl("logs", "web") == "a\nb\nc\n"
    assert kubectl("logs", "web", "--tail=1", "-c", "main") == "c\n"
    api.store.mutate("pods", "default", "web", lambda o: o["status"].update(phase="Succeeded"))
    assert kubectl("logs", "-f", "web") == "a\nb\nc\n"
    assert "NotFound" in kubectl("logs", "nope", ok=False)


def test_delete_pods_graceful_and_forced(api: Api, kubectl: Kubectl) -> None:
    api.store.create("pods", pod_manifest("free"))
    assert 'pod "free" deleted' in kubectl("delete", "pod", "free")
    api.store.create("pods", pod_manifest("bound"))
    running(api, "bound")

    def kubelet_final_delete() -> None:
        time.sleep(0.5)
        api.store.delete("pods", "default", "bound", grace_period_seconds=0)

    threading.Thread(target=kubelet_final_delete).start()
    start = time.monotonic()
    kubectl("delete", "pod", "bound")  # waits until the pod is really gone
    assert time.monotonic() - start >= 0.4

    api.store.create("pods", pod_manifest("stuck"))
    running(api, "stuck")
    kubectl("delete", "pod", "stuck", "--wait=false")
    assert "Terminating" in kubectl("get", "pod", "stuck")
    kubectl("delete", "pod", "stuck", "--grace-period=0", "--force")
    assert "No resources found" in kubectl("get", "pods")


def _job_and_pods(api: Api) -> None:
    job = api.store.create("jobs", job_manifest())
    for name in ("j-1", "j-2"):
        manifest = pod_manifest(name)
        manifest["metadata"]["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job["metadata"]["uid"]}
        ]
        api.store.create("pods", manifest)


@pytest.mark.parametrize("cascade", ["background", "foreground", "orphan"])
def test_delete_job_cascades(api: Api, kubectl: Kubectl, cascade: str) -> None:
    _job_and_pods(api)
    kubectl("delete", "job", "j", f"--cascade={cascade}")
    pods, _ = api.store.list("pods")
    assert api.store.list("jobs")[0] == []
    if cascade == "orphan":
        assert [p["metadata"].get("ownerReferences") for p in pods] == [None, None]
    else:
        assert pods == []


def test_create_apply_replace_from_files(api: Api, kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "job.json"
    manifest.write_text(json.dumps(job_manifest("from-file")))
    assert "job.batch/from-file created" in kubectl("create", "-f", str(manifest))
    assert "configured" in kubectl("apply", "-f", str(manifest))
    assert "replaced" in kubectl("replace", "-f", str(manifest))
    kubectl("delete", "-f", str(manifest))
    bad = job_manifest("Bad_Name")
    manifest.write_text(json.dumps(bad))
    assert "is invalid" in kubectl("create", "-f", str(manifest), ok=False)


def test_label_annotate_patch(api: Api, kubectl: Kubectl) -> None:
    api.store.create("pods", pod_manifest("web"))
    kubectl("label", "pod", "web", "tier=front")
    kubectl("annotate", "pod", "web", "note=hi")
    kubectl("patch", "pod", "web", "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}')
    kubectl(
        "patch", "pod", "web", "--type=json", "-p", '[{"op":"remove","path":"/metadata/labels/m"}]'
    )
    kubectl(
        "patch",
        "pod",
        "web",
        "-p",
        '{"spec":{"containers":[{"name":"main","image":"python:3.12"}]}}',
    )
    pod = api.store.get("pods", "default", "web")
    assert pod["metadata"]["labels"] == {"tier": "front"}
    assert pod["metadata"]["annotations"] == {"note": "hi"}
    main = pod["spec"]["containers"][0]
    assert (main["image"], [e["name"] for e in main["env"]]) == ("python:3.12", ["A"])
    # as on a real cluster, other spec fields (here env) are immutable
    refused = kubectl(
        "patch",
        "pod",
        "web",
        "-p",
        '{"spec":{"containers":[{"name":"main","env":[{"name":"B","value":"2"}]}]}}',
        ok=False,
    )
    assert "pod updates may not change fields other than" in refused
    assert "must be no more than 63" in kubectl("label", "pod", "web", "x=" + "v" * 64, ok=False)


def test_get_watch(api: Api, kubectl: Kubectl) -> None:
    env = kubectl.env  # type: ignore[attr-defined]
    proc = subprocess.Popen(
        [str(KUBECTL), "get", "pods", "-w"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.7)
        api.store.create("pods", pod_manifest("late"))
        time.sleep(0.7)
    finally:
        proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert "late" in out and "Pending" in out


def test_generators_that_send_protobuf_create_what_they_say(api: Api, kubectl: Kubectl) -> None:
    """kubectl 1.32 sends these as protobuf and does not fall back to JSON on a 415."""
    assert "namespace/zenml created" in kubectl("create", "namespace", "zenml")
    kubectl("create", "secret", "generic", "s", "--from-literal=a=b", "-n", "zenml")
    kubectl("create", "serviceaccount", "robot", "-n", "zenml")
    kubectl("create", "role", "r", "--verb=get,list", "--resource=pods", "-n", "zenml")
    kubectl(
        "create", "rolebinding", "rb", "--role=r", "--serviceaccount=zenml:robot", "-n", "zenml"
    )
    kubectl("create", "clusterrole", "cr", "--verb=list", "--resource=nodes")
    kubectl("create", "clusterrolebinding", "crb", "--clusterrole=cr", "--user=bob")
    assert api.store.get("secrets", "zenml", "s")["data"] == {"a": "Yg=="}
    assert api.store.get("serviceaccounts", "zenml", "robot")["metadata"]["namespace"] == "zenml"
    assert api.store.get("roles", "zenml", "r")["rules"] == [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}
    ]
    binding = api.store.get("rolebindings", "zenml", "rb")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "r",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "robot", "namespace": "zenml"}
    ]
    assert api.store.get("clusterroles", None, "cr")["rules"][0]["resources"] == ["nodes"]
    subject = api.store.get("clusterrolebindings", None, "crb")["subjects"][0]
    assert subject == {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"}
    assert "generateName" not in api.store.get("namespaces", None, "zenml")["metadata"]
    # A kind whose protobuf is not read says so and names the JSON way round.
    refused = kubectl("create", "job", "j", "--image=x", "--", "true", ok=False)
    assert "protobuf bodies only for Namespace" in refused and "kubectl apply -f -" in refused
    assert api.store.list("jobs")[0] == []


def test_apply_of_the_packages_rbac_manifests(api: Api, kubectl: Kubectl) -> None:
    """The README's `python -m zenml_oom_orchestrator.rbac ... | kubectl apply -f -`."""
    from zenml_oom_orchestrator import rbac

    env = kubectl.env  # type: ignore[attr-defined]
    kubectl("create", "namespace", "zenml")
    for verb in ("created", "unchanged"):  # applying again changes nothing
        done = subprocess.run(
            [str(KUBECTL), "apply", "-f", "-"],
            input=rbac.to_yaml("zenml"),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.count(verb) == 5, done.stdout
    for manifest in rbac.manifests("zenml"):
        plural = {"ServiceAccount": "serviceaccounts"}.get(manifest["kind"])
        plural = plural or manifest["kind"].lower() + "s"
        meta = manifest["metadata"]
        stored = api.store.get(plural, meta.get("namespace"), meta["name"])
        for key in ("rules", "roleRef", "subjects"):
            assert stored.get(key) == manifest.get(key)


def test_auth_can_i_says_yes_and_why(api: Api, kubectl: Kubectl) -> None:
    assert kubectl("auth", "can-i", "create", "pods").strip() == "yes"
    assert kubectl("auth", "can-i", "list", "nodes").startswith("yes\n")
    assert kubectl("auth", "can-i", "get", "/healthz").strip() == "yes"
    assert "*.*" in kubectl("auth", "can-i", "--list")
    code, _, review = api.raw(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {"spec": {"resourceAttributes": {"verb": "delete", "resource": "secrets"}}},
    )
    assert code == 201
    assert review["status"] == {
        "allowed": True,
        "reason": "the local cluster has no authorization: every request is allowed",
    }
    assert api.store.list("selfsubjectaccessreviews")[0] == []  # asked, never stored


def test_one_kubernetes_version_everywhere(api: Api, kubectl: Kubectl) -> None:
    """`kubectl version` and `kubectl get nodes` agree: the kubelet 1.35 we emulate."""
    from zenml_oom_orchestrator.localcluster.kubelet.node import register_node
    from zenml_oom_orchestrator.localcluster.version import GIT_VERSION

    assert GIT_VERSION.startswith("v1.35.")
    register_node(api.store, "node-1", {"memory": "8Gi", "cpu": "2"}, "v1")
    server = json.loads(kubectl("version", "-o", "json", ok=False).split("\nWARNING")[0])
    assert server["serverVersion"]["gitVersion"] == GIT_VERSION
    assert rows(kubectl("get", "nodes"))[1][-1] == GIT_VERSION
