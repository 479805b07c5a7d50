"""The whole local cluster, end to end: Jobs through the kubernetes client, real processes."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from zenml_oom_orchestrator.localcluster.cluster import LocalCluster
from zenml_oom_orchestrator.localcluster.faults import FaultConfig
from zenml_oom_orchestrator.localcluster.kubelet.testing import allocate_command
from zenml_oom_orchestrator.localcluster.testing import pids_with, wait_for

pytestmark = pytest.mark.cluster


def job_body(name: str, command: list[str], memory: str | None = None, **spec: Any) -> dict:
    container: dict[str, Any] = {"name": "main", "image": "python:3.11", "command": command}
    if memory:
        container["resources"] = {"limits": {"memory": memory}}
    template = {"spec": {"restartPolicy": "Never", "containers": [container]}}
    return {"metadata": {"name": name}, "spec": {"template": template, **spec}}


def batch(api_client: Any) -> Any:
    return client.BatchV1Api(api_client)


def create_job(api_client: Any, namespace: str, body: dict) -> None:
    # Raw JSON both ways: client 25.x cannot deserialize a podFailurePolicy rule without
    # onPodConditions (ZenML monkey-patches the model for the same reason).
    batch(api_client).create_namespaced_job(namespace, body, _preload_content=False)


def read_job(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    raw = batch(api_client).read_namespaced_job(name, namespace, _preload_content=False)
    return dict(json.loads(raw.data))


def wait_job(
    api_client: Any, namespace: str, name: str, predicate: Any, timeout: float = 30
) -> dict[str, Any]:
    def check() -> Any:
        job = read_job(api_client, namespace, name)
        return job if predicate(job) else None

    return wait_for(check, timeout=timeout, what=f"job {name}")


def finished(job: dict[str, Any]) -> bool:
    """Complete or Failed (not the interim FailureTarget/SuccessCriteriaMet before them)."""
    return any(
        c["type"] in ("Complete", "Failed") and c["status"] == "True"
        for c in job["status"].get("conditions") or []
    )


def run_job(api_client: Any, namespace: str, body: dict, timeout: float = 30) -> dict[str, Any]:
    """Create the Job and wait until it is Complete or Failed; return it."""
    create_job(api_client, namespace, body)
    return wait_job(api_client, namespace, body["metadata"]["name"], finished, timeout)


def job_pods(api_client: Any, namespace: str, job: str) -> list[Any]:
    items = client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=f"job-name={job}"
    )
    return sorted(items.items, key=lambda p: p.metadata.creation_timestamp)


def condition(job: dict[str, Any], ctype: str) -> dict[str, Any]:
    conditions = job["status"]["conditions"]
    return next(c for c in conditions if c["type"] == ctype and c["status"] == "True")


def sleeper(marker: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import time, sys; print('up', flush=True); time.sleep(600)",
        marker,
    ]


def test_oom_killed_job_fails_with_the_evidence_kept(
    local_cluster: LocalCluster, k8s_api_client: Any, cluster_namespace: str
) -> None:
    assert local_cluster.kubelet is not None
    if not local_cluster.kubelet.backend.enforcing:
        pytest.skip("no memory cgroups here: limits are not enforced")
    body = job_body("oom", allocate_command(600), memory="256Mi", backoffLimit=0)
    job = run_job(k8s_api_client, cluster_namespace, body)
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert job["status"].get("failed") == 1
    (pod,) = job_pods(k8s_api_client, cluster_namespace, "oom")
    term = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, term.reason, term.exit_code) == ("Failed", "OOMKilled", 137)


def test_the_same_job_under_1gi_completes(k8s_api_client: Any, cluster_namespace: str) -> None:
    body = job_body("fits", allocate_command(600), memory="1Gi", backoffLimit=0)
    job = run_job(k8s_api_client, cluster_namespace, body)
    assert condition(job, "Complete") and job["status"]["succeeded"] == 1
    (pod,) = job_pods(k8s_api_client, cluster_namespace, "fits")
    term = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, term.reason, term.exit_code) == ("Succeeded", "Completed", 0)


def test_backoff_limit_retries_the_pod(k8s_api_client: Any, cluster_namespace: str) -> None:
    body = job_body("flaky", [sys.executable, "-c", "raise SystemExit(1)"], backoffLimit=1)
    job = run_job(k8s_api_client, cluster_namespace, body)
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    pods = job_pods(k8s_api_client, cluster_namespace, "flaky")
    assert job["status"].get("failed") == 2 and len(pods) == 2
    assert all(p.status.container_statuses[0].state.terminated.exit_code == 1 for p in pods)


def test_pod_failure_policy_fail_job_on_exit_code(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    rule = {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}
    body = job_body(
        "bug",
        [sys.executable, "-c", "raise SystemExit(3)"],
        backoffLimit=6,
        podFailurePolicy={"rules": [rule]},
    )
    job = run_job(k8s_api_client, cluster_namespace, body)
    cond = condition(job, "Failed")
    assert cond["reason"] == "PodFailurePolicy" and "exit code 3" in cond["message"]
    assert len(job_pods(k8s_api_client, cluster_namespace, "bug")) == 1


def test_eviction_is_ignored_by_pod_failure_policy(
    local_cluster: LocalCluster, k8s_api_client: Any, cluster_namespace: str, tmp_path: Path
) -> None:
    flag = tmp_path / "evicted"
    script = (
        "import os, sys, time\n"
        f"if os.path.exists({str(flag)!r}): sys.exit(0)\n"
        "print('waiting', flush=True)\n"
        "time.sleep(600)\n"
    )
    rules = [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    ]
    body = job_body(
        "evicted", [sys.executable, "-c", script], backoffLimit=0, podFailurePolicy={"rules": rules}
    )
    create_job(k8s_api_client, cluster_namespace, body)

    def running() -> Any:
        pods = job_pods(k8s_api_client, cluster_namespace, "evicted")
        return pods[0] if pods and pods[0].status.phase == "Running" else None

    first = wait_for(running, timeout=20, what="the first pod to run")
    flag.touch()
    assert local_cluster.kubelet is not None
    local_cluster.kubelet.evict_pod(cluster_namespace, first.metadata.name)
    # Complete comes a write after `succeeded` (SuccessCriteriaMet first): wait for the end.
    job = wait_job(k8s_api_client, cluster_namespace, "evicted", finished)
    assert job["status"].get("succeeded") == 1
    assert not job["status"].get("failed")
    assert condition(job, "Complete")
    evicted = client.CoreV1Api(k8s_api_client).read_namespaced_pod(
        first.metadata.name, cluster_namespace
    )
    assert evicted.status.reason == "Evicted"
    assert len(job_pods(k8s_api_client, cluster_namespace, "evicted")) == 2


def test_lost_pod_counts_as_a_failure(
    local_cluster: LocalCluster, k8s_api_client: Any, cluster_namespace: str
) -> None:
    marker = f"lost-{secrets.token_hex(4)}"
    body = job_body("lost", sleeper(marker), backoffLimit=0)
    create_job(k8s_api_client, cluster_namespace, body)
    pod = wait_for(
        lambda: pids_with(marker) and job_pods(k8s_api_client, cluster_namespace, "lost")
    )
    assert local_cluster.kubelet is not None
    local_cluster.kubelet.lose_pod(cluster_namespace, pod[0].metadata.name)
    job = wait_job(k8s_api_client, cluster_namespace, "lost", finished, timeout=10)
    assert (
        condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
        and job["status"].get("failed") == 1
    )
    wait_for(lambda: not pids_with(marker), what="the lost pod's process to die")


def test_deadline_kills_the_running_pod(k8s_api_client: Any, cluster_namespace: str) -> None:
    marker = f"deadline-{secrets.token_hex(4)}"
    body = job_body("slow", sleeper(marker), activeDeadlineSeconds=1)
    # The sleeper, as a container's PID 1, ignores SIGTERM: it dies at the end of its grace.
    body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    job = run_job(k8s_api_client, cluster_namespace, body, timeout=10)
    assert condition(job, "Failed")["reason"] == "DeadlineExceeded"
    wait_for(lambda: not pids_with(marker), what="the pod's process to be killed")
    wait_for(lambda: not job_pods(k8s_api_client, cluster_namespace, "slow"), what="pod gone")


def test_ttl_after_finished_deletes_job_and_pods(
    k8s_api_client: Any, cluster_namespace: str
) -> None:
    body = job_body("short", [sys.executable, "-c", "print('ok')"], ttlSecondsAfterFinished=0)
    create_job(k8s_api_client, cluster_namespace, body)
    jobs = batch(k8s_api_client)
    wait_for(
        lambda: (
            not jobs.list_namespaced_job(cluster_namespace, _preload_content=False).data.count(
                b'"uid"'
            )
            and not job_pods(k8s_api_client, cluster_namespace, "short")
        ),
        timeout=20,
        what="the TTL to delete the job and its pod",
    )


def test_stop_leaves_no_process_cgroup_or_temp_dir() -> None:
    marker = f"stop-{secrets.token_hex(4)}"
    cluster = LocalCluster(memory="1Gi", cpus=1)
    with cluster:
        assert cluster.store is not None and cluster.kubelet is not None
        work_dir = cluster.work_dir
        cgroups = cluster.kubelet.backend.root
        assert work_dir.is_dir() and cluster.kubeconfig_path and cluster.kubeconfig_path.exists()
        api = client.CoreV1Api(cluster.api_client())
        body = job_body("s", sleeper(marker))["spec"]["template"]
        body["metadata"] = {"name": "sleeper"}
        api.create_namespaced_pod("default", body)
        wait_for(lambda: pids_with(marker), what="the pod's process")
        # The status follows the start (the runtime's exec), as a real kubelet's does.
        wait_for(lambda: api.read_namespaced_pod("sleeper", "default").status.phase == "Running")
    assert not pids_with(marker)
    assert not work_dir.exists()
    assert not cgroups.exists()
    assert not cluster.running
    cluster.stop()  # idempotent


def test_options_reach_the_parts(tmp_path: Path) -> None:
    faults = FaultConfig(error_rate=1.0, resources=frozenset({"jobs"}))
    with LocalCluster(
        memory="3Gi",
        cpus=3,
        work_dir=tmp_path / "wd",
        faults=faults,
        image_pull_failures=["broken/*"],
        history_limit=50,
    ) as cluster:
        assert cluster.kubeconfig_path == tmp_path / "wd" / "kubeconfig"
        core = client.CoreV1Api(cluster.api_client())
        node = core.read_node("oom-local-node")
        assert (node.status.allocatable["memory"], node.status.allocatable["cpu"]) == ("3Gi", "3")
        with pytest.raises(client.ApiException) as err:  # faults: every jobs request fails
            client.BatchV1Api(cluster.api_client()).list_namespaced_job("default")
        assert err.value.status == 500
        assert cluster.store is not None and cluster.store.history_size == 50
        pod = {
            "metadata": {"name": "bad"},
            "spec": {"containers": [{"name": "main", "image": "broken/img", "command": ["true"]}]},
        }
        core.create_namespaced_pod("default", pod)

        def waiting_reason() -> Any:
            statuses = core.read_namespaced_pod("bad", "default").status.container_statuses
            state = statuses[0].state if statuses else None
            reason = state.waiting.reason if state and state.waiting else None
            return reason if reason in ("ErrImagePull", "ImagePullBackOff") else None

        wait_for(waiting_reason, what="the image pull to fail")
    assert not (tmp_path / "wd" / "kubeconfig").exists()
    assert not [p for p in (tmp_path / "wd").iterdir()]  # the kubelet's files went too


def test_an_interrupt_during_stop_still_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    marker = f"interrupt-{secrets.token_hex(4)}"
    cluster = LocalCluster(memory="1Gi", cpus=1).start()
    assert cluster.store is not None and cluster.job_controller is not None
    work_dir = cluster.work_dir
    cluster.store.create("jobs", job_body("nap", sleeper(marker)), namespace="default")
    wait_for(lambda: pids_with(marker), what="the job's pod process")

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    controller = cluster.job_controller
    real_stop = controller.stop
    monkeypatch.setattr(controller, "stop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cluster.stop()
    assert not pids_with(marker) and not work_dir.exists() and not cluster.running
    real_stop()  # its threads, which the interrupt skipped
