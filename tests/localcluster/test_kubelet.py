"""The kubelet with real processes and real kernel OOM kills in memory cgroups."""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.demo import start_failures
from zenml_oom_orchestrator.localcluster.kubelet import Kubelet
from zenml_oom_orchestrator.localcluster.kubelet.cgroups import CgroupError
from zenml_oom_orchestrator.localcluster.kubelet.testing import (
    allocate_command,
    events_for,
    pod_body,
    process_gone,
    running_node,
    wait_pod,
)
from zenml_oom_orchestrator.localcluster.store import Store
from zenml_oom_orchestrator.localcluster.testing import pids_with, wait_for

from .real_cgroups import crashed_run, node, nothing_left, real_backend, refuse_joins

__all__ = ["node"]  # fixture

pytestmark = pytest.mark.cluster


def main_status(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["status"]["containerStatuses"][0])


def test_oom_under_256mi_is_failed_oomkilled_137_without_event(node: tuple[Store, Kubelet]) -> None:
    """As a real kubelet 1.35: the container's state is the only record of its OOM kill (its
    OOM watcher reports system OOMs only), and the events carry the reporting fields."""
    store, _ = node
    store.create("pods", pod_body("hog", allocate_command(600), "256Mi"))
    pod = wait_pod(store, "hog")
    term = main_status(pod)["state"]["terminated"]
    assert pod["status"]["phase"] == "Failed"
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137)
    assert term["startedAt"] and term["finishedAt"]
    assert "reason" not in pod["status"]
    events = events_for(store, "hog")
    assert [e["reason"] for e in events] == ["Scheduled", "Pulled", "Created", "Started"]
    scheduled, *kubelet_events = events
    assert (scheduled["reportingComponent"], scheduled["source"]) == ("default-scheduler", {})
    for e in kubelet_events:
        assert (e["reportingComponent"], e["reportingInstance"]) == ("kubelet", "node-1")
        assert e["source"] == {"component": "kubelet", "host": "node-1"}


def test_terminated_state_is_written_one_update_before_the_phase(
    node: tuple[Store, Kubelet],
) -> None:
    """A watcher first sees the container terminated while the phase is still Running."""
    store, _ = node
    rv = store.resource_version
    store.create("pods", pod_body("quick", ["true"]))
    wait_pod(store, "quick")
    seen = []
    with store.watch("pods", resource_version=rv, field_selector="metadata.name=quick") as w:
        while (got := w.next_shared(0.2)) is not None:
            status = got[1].get("status") or {}
            state = (status.get("containerStatuses") or [{}])[0].get("state") or {}
            seen.append((status.get("phase"), next(iter(state), None)))
    ended = [phase for phase, state in seen if state == "terminated"]
    assert ended[0] == "Running" and ended[-1] == "Succeeded", seen


def test_same_allocation_under_1gi_succeeds(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    store.create("pods", pod_body("fits", allocate_command(600), "1Gi"))
    pod = wait_pod(store, "fits")
    assert pod["status"]["phase"] == "Succeeded"
    term = main_status(pod)["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("Completed", 0)
    assert "allocated 600 MiB" in kubelet.read_log("default", "fits")
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "PodCompleted"
    assert conditions["PodScheduled"]["status"] == "True"
    assert (pod["status"]["podIP"], pod["status"]["hostIP"]) == ("127.0.0.1", "127.0.0.1")


# A child OOM-killed while PID 1 lives on, as a real kubelet shows it on each cgroup version:
# on v1 the kernel kills only the child, PID 1 exits 1 and containerd still says OOMKilled (the
# cgroup's OOM event); on v2 the kubelet (>= 1.28, singleProcessOOMKill off) sets
# memory.oom.group=1, so the kernel kills the whole container: 137.
CHILD_OOM = {"v1": ("OOMKilled", 1), "v2": ("OOMKilled", 137), "systemd": ("OOMKilled", 137)}


def test_child_oom_killed_while_pid1_lives_is_what_a_kubelet_on_this_cgroup_version_shows(
    node: tuple[Store, Kubelet],
) -> None:
    store, kubelet = node
    script = (
        "import subprocess, sys; "
        f"r = subprocess.run({allocate_command(600)!r}); "
        "print('child returned', r.returncode, flush=True); sys.exit(1)"
    )
    store.create("pods", pod_body("child", [sys.executable, "-c", script], "256Mi"))
    term = main_status(wait_pod(store, "child"))["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == CHILD_OOM[kubelet.backend.name]
    # v1: PID 1 saw its child die of SIGKILL; v2: PID 1 died with it before it could say so.
    said = "child returned -9" in kubelet.read_log("default", "child")
    assert said == (kubelet.backend.name == "v1")


def test_env_field_refs_secrets_and_working_dir(
    node: tuple[Store, Kubelet], tmp_path: Path
) -> None:
    store, kubelet = node
    secret = {
        "metadata": {"name": "creds"},
        "data": {"token": base64.b64encode(b"s3cr3t").decode()},
    }
    store.create("secrets", secret, namespace="default")
    env: list[dict[str, Any]] = [
        {"name": "PLAIN", "value": "v1"},
        {"name": "EXPANDED", "value": "$(PLAIN)-x"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    ]
    names = [e["name"] for e in env]
    script = f"import os; print(os.getcwd()); print(*[os.environ[n] for n in {names!r}], sep='|')"
    body = pod_body("envy", ["python3", "-c", script])
    body["metadata"]["labels"] = {"app": "demo"}
    body["spec"]["containers"][0].update(env=env, workingDir=str(tmp_path / "wd"))
    created = store.create("pods", body)
    assert wait_pod(store, "envy")["status"]["phase"] == "Succeeded"
    cwd, values = kubelet.read_log("default", "envy").splitlines()
    assert cwd == str(tmp_path / "wd")
    uid = created["metadata"]["uid"]
    assert values.split("|") == [
        "v1",
        "v1-x",
        "envy",
        "default",
        uid,
        "demo",
        "node-1",
        "127.0.0.1",
        "s3cr3t",
    ]


def test_missing_secret_is_create_container_config_error(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    body = pod_body("nosecret", ["true"])
    ref = {"secretKeyRef": {"name": "absent", "key": "k"}}
    body["spec"]["containers"][0]["env"] = [{"name": "X", "valueFrom": ref}]
    store.create("pods", body)

    def waiting() -> Any:
        statuses = store.get("pods", "default", "nosecret")["status"].get("containerStatuses")
        return statuses and statuses[0]["state"].get("waiting", {}).get("reason")

    # The kubelet's first write says ContainerCreating (as a real one does); wait past it.
    assert wait_for(
        lambda: waiting() == "CreateContainerConfigError", what="CreateContainerConfigError"
    )
    assert store.get("pods", "default", "nosecret")["status"]["phase"] == "Pending"


def test_init_containers_run_first_in_order(node: tuple[Store, Kubelet], tmp_path: Path) -> None:
    store, _ = node
    trace = tmp_path / "trace"

    def step(word: str) -> list[str]:
        return ["sh", "-c", f"echo {word} >> {trace}"]

    body = pod_body("inits", step("main"))
    body["spec"]["initContainers"] = [
        {"name": "first", "image": "busybox", "command": step("first")},
        {"name": "second", "image": "busybox", "command": step("second")},
    ]
    pod = wait_pod(store, store.create("pods", body)["metadata"]["name"])
    assert pod["status"]["phase"] == "Succeeded"
    assert trace.read_text().split() == ["first", "second", "main"]
    inits = pod["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]


def test_on_failure_restarts_with_last_state_and_restart_count(
    node: tuple[Store, Kubelet], tmp_path: Path
) -> None:
    store, kubelet = node
    marker = tmp_path / "marker"
    script = f"test -e {marker} && echo second || {{ touch {marker}; echo first; exit 3; }}"
    store.create("pods", pod_body("flaky", ["sh", "-c", script], restart_policy="OnFailure"))
    pod = wait_pod(store, "flaky")
    status = main_status(pod)
    assert pod["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert kubelet.read_log("default", "flaky").strip() == "second"
    assert kubelet.read_log("default", "flaky", previous=True).strip() == "first"
    assert any(e["reason"] == "BackOff" for e in events_for(store, "flaky"))


def test_never_reports_error_exit_code(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    store.create("pods", pod_body("bad", ["sh", "-c", "seq 1 5; echo oops >&2; exit 3"]))
    pod = wait_pod(store, "bad")
    term = main_status(pod)["state"]["terminated"]
    assert (pod["status"]["phase"], term["reason"], term["exitCode"]) == ("Failed", "Error", 3)
    assert kubelet.read_log("default", "bad", tail_lines=2) == "5\noops\n"


def test_missing_executable_is_start_error(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    store.create("pods", pod_body("nocmd", ["definitely-not-a-command"]))
    term = main_status(wait_pod(store, "nocmd"))["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("StartError", 128)
    assert "executable file not found" in term["message"]


def test_active_deadline_fails_pod(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    store.create("pods", pod_body("slow", ["sleep", "30"], activeDeadlineSeconds=1))
    pod = wait_pod(store, "slow", timeout=10)
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    assert main_status(pod)["state"]["terminated"]["exitCode"] == 137


def test_sigterm_without_a_handler_is_ignored_as_by_a_containers_pid1(
    node: tuple[Store, Kubelet],
) -> None:
    """A container's command is PID 1: SIGTERM at deletion only ends it if it handles it;
    otherwise SIGKILL ends it at the end of the grace period."""
    store, kubelet = node
    nap = [sys.executable, "-c", "import time; time.sleep(60)"]
    handled = [
        sys.executable,
        "-c",
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
        "print('ready', flush=True); time.sleep(60)",
    ]
    store.create("pods", pod_body("deaf", nap, terminationGracePeriodSeconds=3))
    store.create("pods", pod_body("polite", handled, terminationGracePeriodSeconds=30))
    pids = {}
    for name in ("deaf", "polite"):
        pod = wait_pod(store, name, phases=("Running",))
        pids[name] = int(main_status(pod)["containerID"].split("//")[1])
    wait_for(lambda: kubelet.read_log("default", "polite") == "ready\n", what="its handler")
    for name in pids:
        store.delete("pods", "default", name)
    wait_for(lambda: process_gone(pids["polite"]), timeout=5, what="the handler to end it")
    assert not process_gone(pids["deaf"])  # still running: SIGTERM was ignored
    wait_for(lambda: process_gone(pids["deaf"]), timeout=10, what="SIGKILL after the grace")


def test_delete_kills_process_group_and_removes_cgroup(node: tuple[Store, Kubelet]) -> None:
    store, kubelet = node
    # A child that ignores SIGTERM: only the group SIGKILL after the grace period ends it.
    script = "trap '' TERM; sleep 60 & echo $!; wait"
    store.create("pods", pod_body("victim", ["sh", "-c", script], terminationGracePeriodSeconds=1))
    pod = wait_pod(store, "victim", phases=("Running",))
    child = int(wait_for(lambda: kubelet.read_log("default", "victim").strip(), what="child pid"))
    cgroup = kubelet.backend.root / pod["metadata"]["uid"]
    assert cgroup.is_dir()
    store.delete("pods", "default", "victim")

    def gone() -> bool:
        return not store.list("pods", field_selector="metadata.name=victim")[0]

    wait_for(gone, timeout=10, what="pod removed")
    assert process_gone(child)
    assert not cgroup.exists()
    assert any(e["reason"] == "Killing" for e in events_for(store, "victim"))


def test_stop_leaves_nothing(tmp_path: Path) -> None:
    with running_node(tmp_path) as (store, kubelet):
        store.create("pods", pod_body("long", ["sleep", "60"]))
        pod = wait_pod(store, "long", phases=("Running",))
        pid = int(main_status(pod)["containerID"].split("//")[1])
        backend, work = kubelet.backend, kubelet.dir
        assert work.is_dir()
    assert process_gone(pid)
    assert nothing_left(backend)  # the cluster's cgroups, and its prefix dir or systemd scope
    assert not work.exists()


def test_init_container_oom_fails_pod_under_never(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    body = pod_body("init-oom", ["true"])
    init: dict[str, Any] = {"name": "prep", "image": "x", "command": allocate_command(600)}
    init["resources"] = {"limits": {"memory": "256Mi"}}
    body["spec"]["initContainers"] = [init]
    store.create("pods", body)
    pod = wait_pod(store, "init-oom")
    term = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    # The same on v1 and v2: the allocating process is PID 1, the kernel's SIGKILL ends it.
    assert (pod["status"]["phase"], term["reason"], term["exitCode"]) == (
        "Failed",
        "OOMKilled",
        137,
    )
    assert main_status(pod)["state"]["waiting"]["reason"] == "PodInitializing"
    assert "reason" not in pod["status"]  # no pod-level reason, as on a real kubelet


def test_sidecar_keeps_pod_running_after_main_oom(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    body = pod_body("withside", allocate_command(600), "256Mi")
    body["spec"]["containers"].append({"name": "side", "image": "x", "command": ["sleep", "60"]})
    store.create("pods", body)

    def main_oom() -> Any:
        statuses = store.get("pods", "default", "withside")["status"].get("containerStatuses")
        term = statuses and statuses[0]["state"].get("terminated")
        return term and term["reason"] == "OOMKilled"

    wait_for(main_oom, what="main OOMKilled")
    pod = store.get("pods", "default", "withside")
    assert pod["status"]["phase"] == "Running"
    assert "running" in pod["status"]["containerStatuses"][1]["state"]


def test_start_cleans_a_crashed_runs_cgroups(tmp_path: Path) -> None:
    pfx = f"zenml-oom-test-{os.urandom(4).hex()}"
    crashed, orphan = crashed_run(pfx, tmp_path)  # of the kind this machine uses
    try:
        with running_node(tmp_path, cgroup_prefix=pfx, cgroup_backend=crashed.name):
            wait_for(lambda: process_gone(orphan.pid), what="the orphan killed")
            wait_for(lambda: not crashed.root.exists(), what="the crashed run's cgroups removed")
    finally:
        crashed.teardown()
    assert nothing_left(crashed)


def test_a_container_that_cannot_join_its_cgroup_is_a_start_error(
    node: tuple[Store, Kubelet], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, kubelet = node
    refuse_joins(monkeypatch, kubelet.backend)  # after the start probe passed
    nap = f"60.{secrets.randbelow(10**6)}"  # a command line no other process has
    created = store.create("pods", pod_body("nojoin", ["sleep", nap], "64Mi"))
    pod = wait_pod(store, "nojoin")
    term = main_status(pod)["state"]["terminated"]
    assert (pod["status"]["phase"], term["reason"], term["exitCode"]) == (
        "Failed",
        "StartError",
        128,
    )
    assert "cannot move the container's process into its memory cgroup" in term["message"]
    assert "gone/cgroup.procs" in term["message"]  # the join shim's own words
    # What the demo's report prints for it (for any pod: the orchestrator's too).
    assert start_failures([pod]) == [
        f"Pod nojoin: container main could not start (StartError): {term['message']}"
    ]
    failed = [e for e in events_for(store, "nojoin") if e["reason"] == "Failed"]
    assert failed and failed[0]["message"].startswith("Error: cannot move")
    assert "Started" not in [e["reason"] for e in events_for(store, "nojoin")]
    cgroup = kubelet.backend.root / created["metadata"]["uid"]
    wait_for(lambda: not cgroup.exists(), what="the pod's cgroup removed")  # after the status
    assert not pids_with(nap)


def test_kubelet_start_fails_before_any_pod_if_joining_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = real_backend(f"zenml-oom-test-{os.urandom(4).hex()}")
    refuse_joins(monkeypatch, backend)
    store = Store()
    kubelet = Kubelet(store, "node-1", work_dir=tmp_path, cgroup_backend=backend)
    with pytest.raises(CgroupError, match="cannot move the container's process"):
        kubelet.start()
    assert nothing_left(backend)
    assert not store.list("nodes")[0]  # never Ready: no pod was ever bound to it
    assert not (tmp_path / "kubelet-node-1").exists()
