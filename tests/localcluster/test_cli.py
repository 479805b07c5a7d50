"""`zenml-oom cluster up` as a real subprocess: kubectl against it, clean stop, crash recovery."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from zenml_oom_orchestrator.cli import cli
from zenml_oom_orchestrator.localcluster.cluster import TEMP_PREFIX
from zenml_oom_orchestrator.localcluster.kubeconfig import lock_path
from zenml_oom_orchestrator.localcluster.kubelet.cgroups import DEFAULT_PREFIX, find_mounts
from zenml_oom_orchestrator.localcluster.testing import pids_with, wait_for

pytestmark = pytest.mark.cluster
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def test_help_and_bad_arguments() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["cluster", "up", "--help"])
    assert result.exit_code == 0
    assert "--kubeconfig" in result.output and "--memory" in result.output
    result = runner.invoke(cli, ["cluster", "up", "--kubeconfig", "k", "--memory", "lots"])
    assert result.exit_code == 2 and "not a Kubernetes quantity" in result.output
    assert "256Mi to 64Ti" in result.output  # what is accepted
    result = runner.invoke(cli, ["cluster", "up", "--memory", "1Gi"])
    assert result.exit_code == 2 and "--kubeconfig" in result.output


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--memory", "-1Gi", "'-1Gi' is negative"),
        ("--memory", "0", "'0' is zero"),
        ("--memory", "100m", "'100m' is 0.1 bytes, not a whole number"),
        ("--memory", "1e30", "'1e30' is 1000000000000000000000000000000 bytes, out of range"),
        ("--memory", "128Mi", "out of range"),
        ("--cpus", "nan", "'nan' is not a finite number"),
        ("--cpus", "inf", "'inf' is not a finite number"),
        ("--cpus", "0", "'0' is out of range"),
        ("--cpus", "0.0001", "finer than 0.001 CPU"),
        ("--cpus", "two", "'two' is not a number"),
    ],
)
def test_every_option_is_refused_in_one_line_before_anything_starts(
    tmp_path: Path, option: str, value: str, says: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    result = CliRunner().invoke(
        cli, ["cluster", "up", "--kubeconfig", str(kubeconfig), f"{option}={value}"]
    )
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and option in error[0] and says in error[0], result.output
    assert "256Mi to 64Ti" in error[0] or "at most 1024" in error[0]  # what is accepted
    assert not kubeconfig.exists() and not list(tmp_path.iterdir())  # nothing started


def test_a_kubeconfig_that_cannot_be_written_is_refused_before_start(tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    result = CliRunner().invoke(cli, ["cluster", "up", "--kubeconfig", str(folder)])
    assert result.exit_code == 2 and "directory" in result.output
    result = CliRunner().invoke(cli, ["cluster", "up", "--kubeconfig", "/proc/no/such"])
    assert result.exit_code == 2 and "cannot create" in result.output, result.output


def test_demo_refuses_a_bad_memory_before_starting_the_zenml_server() -> None:
    result = CliRunner().invoke(cli, ["demo", "--memory", "lots"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--memory': 'lots' is not a Kubernetes quantity" in result.output
    assert "Starting" not in result.output and "Traceback" not in result.output
    assert len(result.output.splitlines()) == 4  # usage, hint, blank, the error


def test_refuses_to_overwrite_a_kubeconfig_that_is_not_ours(tmp_path: Path) -> None:
    theirs = tmp_path / "config"
    theirs.write_text("apiVersion: v1\nclusters:\n- name: prod\n  cluster: {server: https://k8s}\n")
    result = CliRunner().invoke(cli, ["cluster", "up", "--kubeconfig", str(theirs)])
    assert result.exit_code == 2 and "not a local-cluster kubeconfig" in result.output
    assert "prod" in theirs.read_text()


class Up:
    """A `zenml-oom cluster up` process and the kubeconfig it writes."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.kubeconfig = tmp_path / "kubeconfig"
        # A crashed run's file may be there: ready means a new one (a new port).
        self._stale = self.kubeconfig.read_text() if self.kubeconfig.exists() else None
        command = [sys.executable, "-m", "zenml_oom_orchestrator.cli", "cluster", "up"]
        self.proc = subprocess.Popen(
            [*command, "--kubeconfig", str(self.kubeconfig), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for(self._ready, timeout=30, what="the kubeconfig")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"cluster up exited early:\n{self.proc.stdout.read()}")  # type: ignore[union-attr]
        try:
            return self.kubeconfig.read_text() != self._stale
        except FileNotFoundError:
            return False

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        assert KUBECTL is not None
        done = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def leftovers(self) -> list[Path]:
        """Temp dirs and cgroup trees named after this process (cluster ids start with pid)."""
        pid = self.proc.pid
        found = list(Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}{pid}-*"))
        v1, v2 = find_mounts(Path("/proc/self/mountinfo").read_text())
        for mount in (v1, v2):
            if mount is not None:
                found += (mount / DEFAULT_PREFIX).glob(f"{pid}-*")
        return found


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    process = Up(tmp_path, "--memory", "2Gi", "--cpus", "1")
    yield process
    if process.proc.poll() is None:  # a failed test: still stop it cleanly
        process.proc.terminate()
        try:
            process.proc.wait(30)
        except subprocess.TimeoutExpired:
            process.proc.kill()
            process.proc.wait()


def pod_manifest(name: str, code: str, memory: str | None = None, marker: str = "") -> str:
    container: dict[str, Any] = {
        "name": "main",
        "image": "python:3.11",
        "command": ["python", "-c", code, *([marker] if marker else [])],
    }
    if memory:
        container["resources"] = {"limits": {"memory": memory}}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }
    return json.dumps(pod)


OOM = (
    "print('hello from the pod', flush=True)\n"
    "b = bytearray(600 * 1024 * 1024)\n"
    "b[::4096] = b'x' * len(range(0, len(b), 4096))\n"
)
SLEEP = "import time; print('sleeping', flush=True); time.sleep(600)"


@needs_kubectl
def test_kubectl_get_describe_logs_delete_then_sigterm_leaves_nothing(up: Up) -> None:
    assert "oom-local-node" in up.kubectl("get", "nodes")
    jsonpath = "jsonpath={.metadata.annotations.zenml-oom\\.local/memory-cgroups}"
    if up.kubectl("get", "node", "oom-local-node", "-o", jsonpath) == "none":
        pytest.skip("no memory cgroups here: limits are not enforced")
    context = up.kubectl("config", "current-context", "--kubeconfig", str(up.kubeconfig))
    assert context.strip() == "oom-local"
    # --validate=false: the local API server serves no OpenAPI schema for kubectl to check.
    up.kubectl("create", "--validate=false", "-f", "-", input=pod_manifest("oom", OOM, "256Mi"))
    marker = f"cli-{secrets.token_hex(4)}"
    up.kubectl(
        "create", "--validate=false", "-f", "-", input=pod_manifest("nap", SLEEP, None, marker)
    )
    wait_for(lambda: "OOMKilled" in up.kubectl("get", "pods"), timeout=20, what="kubectl get pods")
    table = up.kubectl("get", "pods")
    assert "nap" in table and "Running" in table
    # The phase follows the container's terminated state in a later update, as on a real
    # kubelet: wait for both.
    wait_for(lambda: "Failed" in up.kubectl("describe", "pod", "oom"), timeout=20, what="Failed")
    described = up.kubectl("describe", "pod", "oom")
    for expected in ("OOMKilled", "137", "256Mi", "Failed"):
        assert expected in described
    assert "hello from the pod" in up.kubectl("logs", "oom")
    wait_for(lambda: "sleeping" in up.kubectl("logs", "nap"), what="kubectl logs nap")
    up.kubectl("delete", "pod", "oom", "--wait=true")
    assert "oom" not in up.kubectl("get", "pods", "-o", "name")

    wait_for(lambda: pids_with(marker), what="the sleeping pod's process")
    assert up.leftovers()  # its temp dir and cgroup tree while it runs
    up.proc.send_signal(signal.SIGTERM)
    output, _ = up.proc.communicate(timeout=30)
    assert up.proc.returncode == 0, output
    assert "Local cluster stopped." in output
    assert not up.kubeconfig.exists()
    assert not pids_with(marker)
    assert not up.leftovers()


def test_sigint_stops_it_cleanly(up: Up) -> None:
    up.proc.send_signal(signal.SIGINT)
    output, _ = up.proc.communicate(timeout=30)
    assert up.proc.returncode == 0, output
    assert not up.kubeconfig.exists() and not up.leftovers()


def _version(kubeconfig_text: str) -> dict[str, Any]:
    server = yaml.safe_load(kubeconfig_text)["clusters"][0]["cluster"]["server"]
    with urllib.request.urlopen(f"{server}/version", timeout=10) as response:
        return dict(json.load(response))


def test_a_second_cluster_on_the_same_kubeconfig_is_refused_and_leaves_it_alone(up: Up) -> None:
    first = up.kubeconfig.read_text()
    second = subprocess.run(
        [sys.executable, "-m", "zenml_oom_orchestrator.cli", "cluster", "up"]
        + ["--kubeconfig", str(up.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"in use by the local cluster of pid {up.proc.pid}" in second.stderr
    assert "choose another --kubeconfig" in second.stderr
    assert up.kubeconfig.read_text() == first  # neither overwritten nor deleted
    assert _version(first)["gitVersion"]  # the first cluster still answers on it
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(30) == 0
    assert not up.kubeconfig.exists() and not lock_path(up.kubeconfig).exists()


def test_closed_output_pipe_then_ctrl_c_still_removes_the_kubeconfig(up: Up) -> None:
    """`cluster up 2>&1 | head`, then Ctrl+C: head dies first, so every write after it fails."""
    assert up.proc.stdout is not None
    up.proc.stdout.close()
    up.proc.send_signal(signal.SIGINT)
    up.proc.wait(30)
    assert not up.kubeconfig.exists() and not up.leftovers()


@needs_kubectl
def test_start_after_a_crash_cleans_what_the_crashed_run_left(up: Up) -> None:
    marker = f"crash-{secrets.token_hex(4)}"
    up.kubectl(
        "create", "--validate=false", "-f", "-", input=pod_manifest("nap", SLEEP, None, marker)
    )
    wait_for(lambda: pids_with(marker), what="the sleeping pod's process")
    up.proc.send_signal(signal.SIGKILL)
    up.proc.wait()
    stale = up.leftovers()
    assert stale, "a SIGKILLed cluster leaves its temp dir and cgroups behind"
    assert up.kubeconfig.exists()
    assert lock_path(up.kubeconfig).read_text().strip() == str(up.proc.pid)  # a stale lock
    again = Up(up.kubeconfig.parent)  # same kubeconfig path: ours, so it may be replaced
    try:
        assert not [p for p in stale if p.exists()]
        wait_for(lambda: not pids_with(marker), what="the stale pod process to be killed")
        assert "oom-local-node" in again.kubectl("get", "nodes")
        assert lock_path(up.kubeconfig).read_text().strip() == str(again.proc.pid)
    finally:
        again.proc.terminate()
        output, _ = again.proc.communicate(timeout=30)
        assert again.proc.returncode == 0
    assert f"Took over the lock left by pid {up.proc.pid}" in output
