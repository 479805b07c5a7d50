"""The near-the-limit readiness probe: on the machine's real memory cgroup (v1 here; v2 in the
cgroup v2 VM tier, integration/cgroupv2, as alice's systemd scope and as root), and on
fake /proc + /sys trees of both layouts (named as such: they stand in for a runc container's own
cgroup view, which this machine cannot give a test)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.localcluster.real_cgroups import real_backend
from tests.localcluster.test_cgroups import prefix
from zenml_oom_orchestrator.localcluster.kubelet import runner
from zenml_oom_orchestrator.supervisor.nearlimit import PROBE_SCRIPT, near_limit_probe, permille

MI = 2**20


def run_probe(root: Path, fraction: float = 0.8) -> int:
    argv = ["sh", "-c", PROBE_SCRIPT, "oom-near-limit", str(permille(fraction)), str(root)]
    return subprocess.run(argv, capture_output=True, timeout=10).returncode


def fake_v1(root: Path, proc_path: str, at: str, usage: int, limit: int, inactive: int) -> None:
    """A fake cgroup v1 tree: /proc/self/cgroup names `proc_path`; the memory files are at
    /sys/fs/cgroup/memory + `at` ("" for a container's own view of its cgroup)."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(
        f"12:pids:{proc_path}\n9:memory:{proc_path}\n1:name=systemd:{proc_path}\n0::/\n"
    )
    d = root / "sys/fs/cgroup/memory" / at.lstrip("/")
    d.mkdir(parents=True)
    (d / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (d / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (d / "memory.stat").write_text(f"inactive_file 1\ntotal_inactive_file {inactive}\n")


def fake_v2(root: Path, proc_path: str, at: str, current: int, limit: str, inactive: int) -> None:
    """A fake cgroup v2 tree, like fake_v1."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(f"0::{proc_path}\n")
    d = root / "sys/fs/cgroup" / at.lstrip("/")
    d.mkdir(parents=True)
    (d / "memory.current").write_text(f"{current}\n")
    (d / "memory.max").write_text(f"{limit}\n")
    (d / "memory.stat").write_text(f"anon {current}\ninactive_file {inactive}\nactive_file 0\n")


POD = "/kubepods/burstable/pod1234/abcd"


@pytest.mark.parametrize("at", [POD, ""], ids=["host-hierarchy", "own-cgroup-view"])
@pytest.mark.parametrize(
    ("usage", "inactive", "ready"),
    [(700 * MI, 0, True), (900 * MI, 0, False), (900 * MI, 300 * MI, True), (801 * MI, 0, False)],
)
def test_fake_v1_tree_working_set_against_the_limit(
    tmp_path: Path, at: str, usage: int, inactive: int, ready: bool
) -> None:
    fake_v1(tmp_path, POD, at, usage, 1000 * MI, inactive)
    assert run_probe(tmp_path) == (0 if ready else 1)


@pytest.mark.parametrize("at", [POD, ""], ids=["host-hierarchy", "own-cgroup-view"])
@pytest.mark.parametrize(
    ("current", "inactive", "limit", "ready"),
    [
        (700 * MI, 0, str(1000 * MI), True),
        (900 * MI, 0, str(1000 * MI), False),
        (900 * MI, 300 * MI, str(1000 * MI), True),
        (900 * MI, 0, "max", True),  # no limit: never near it
    ],
)
def test_fake_v2_tree_working_set_against_the_limit(
    tmp_path: Path, at: str, current: int, inactive: int, limit: str, ready: bool
) -> None:
    fake_v2(tmp_path, "/" if not at else POD, at, current, limit, inactive)
    assert run_probe(tmp_path) == (0 if ready else 1)


def test_fake_v2_tree_threshold_follows_the_fraction(tmp_path: Path) -> None:
    fake_v2(tmp_path, "/", "", 600 * MI, str(1000 * MI), 0)
    assert run_probe(tmp_path, 0.55) == 1 and run_probe(tmp_path, 0.65) == 0


def test_probe_spec_runs_every_five_seconds_by_default_and_flips_on_one_failure() -> None:
    probe = near_limit_probe(0.8)
    assert probe["exec"]["command"][:2] == ["sh", "-c"]
    assert probe["exec"]["command"][-1] == "800"
    assert probe["periodSeconds"] == 5 and probe["failureThreshold"] == 1
    assert near_limit_probe(0.8, 1)["periodSeconds"] == 1


CHILD = """
import os, subprocess, sys, time
script, flag = sys.argv[1], sys.argv[2]
probe = lambda: subprocess.run(["sh", "-c", script, "p", "800"]).returncode
first = probe()
b = bytearray(220 << 20); b[::4096] = b"\\x01" * len(range(0, len(b), 4096))
second = probe()
print("before", first, "after", second, flush=True)
while not os.path.exists(flag): time.sleep(0.05)
print("raised", probe(), flush=True)
"""


def test_real_cgroup_not_ready_above_the_fraction_and_ready_after_the_limit_grows(
    tmp_path: Path,
) -> None:
    backend = real_backend(prefix())
    backend.setup()
    try:
        path = backend.create("pod", "main", 256 * MI)
        flag, log = tmp_path / "raised", tmp_path / "log"
        argv = [sys.executable, "-c", CHILD, PROBE_SCRIPT, str(flag)]
        env = {"PATH": os.environ.get("PATH", os.defpath)}
        proc = runner.spawn(argv, env, str(tmp_path), log, backend, path)
        deadline = time.monotonic() + 60
        while "before" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.05)
        # 220 MiB of 256 MiB is above 0.8: not ready. Then grow the limit the way a resize
        # does (the cgroup's own limit file): the same probe reads the new limit.
        names = ["memory.max"]
        if backend.name == "v1":  # memsw first: memory may not be raised above it
            names = ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
        for name in names:
            if (path / name).exists():
                (path / name).write_text(str(512 * MI))
        flag.touch()
        assert proc.wait(60) == 0, log.read_text()
        assert log.read_text().split() == ["before", "0", "after", "1", "raised", "0"]
    finally:
        backend.teardown()
