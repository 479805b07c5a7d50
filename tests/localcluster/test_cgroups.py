"""Cgroup backends: detection, v1/v2 files, the join probe, the spawner, stale-tree cleanup.

The `real_` tests use the backend this machine has (v1 here as root; v2 as root and the
systemd scope as a user in the cgroup v2 VM tier, integration/cgroupv2).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from zenml_oom_orchestrator.localcluster.kubelet import cgroups, runner, spawner
from zenml_oom_orchestrator.localcluster.kubelet.cgroup_detect import (
    SystemdScope,
    detect_backend,
    own_cgroup_v2_path,
)
from zenml_oom_orchestrator.localcluster.kubelet.cgroup_probe import PROBE_POD, probe_join
from zenml_oom_orchestrator.localcluster.kubelet.cgroups import (
    CgroupError,
    CgroupV1,
    CgroupV2,
    NoCgroups,
    find_mounts,
    new_cluster_id,
    owner_alive,
)
from zenml_oom_orchestrator.localcluster.kubelet.spawner_client import SpawnerClient, spawner_argv
from zenml_oom_orchestrator.localcluster.kubelet.testing import allocate_command, process_gone
from zenml_oom_orchestrator.localcluster.testing import wait_for

from .real_cgroups import crashed_run, nothing_left, real_backend, refuse_joins, wait_joined

HYBRID = """\
25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
"""
PURE_V2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def mountinfo(v1: Path | None = None, v2: Path | None = None) -> str:
    lines = []
    if v2 is not None:
        lines.append(f"26 25 0:23 / {v2} rw - cgroup2 cgroup2 rw")
    if v1 is not None:
        lines.append(f"31 25 0:28 / {v1} rw - cgroup cgroup rw,memory")
    return "\n".join(lines) + "\n"


def prefix() -> str:
    return f"zenml-oom-test-{secrets.token_hex(4)}"


def test_find_mounts() -> None:
    assert find_mounts(HYBRID) == (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/unified"))
    assert find_mounts(PURE_V2) == (None, Path("/sys/fs/cgroup"))
    assert find_mounts("") == (None, None)


def test_cluster_ids_tell_live_owners_from_dead_ones() -> None:
    mine = new_cluster_id()
    assert mine.startswith(f"{os.getpid()}-") and owner_alive(mine) is True
    assert owner_alive("999999999-12-abc") is False  # no such pid
    start = mine.split("-")[1]
    assert owner_alive(f"{os.getpid()}-{int(start) + 1}-abc") is False  # pid reused since
    assert owner_alive("my-cluster") is None  # not ours to judge


def test_v2_writes_limits_swap_and_oom_group(tmp_path: Path) -> None:
    backend = CgroupV2(tmp_path, "pfx", "cid")
    backend.setup()
    path = backend.create("pod-uid", "main", 256 << 20)
    assert path == tmp_path / "pfx" / "cid" / "pod-uid" / "main"
    assert (path / "memory.max").read_text() == str(256 << 20)
    assert (path / "memory.oom.group").read_text() == "1"
    for p in (tmp_path, tmp_path / "pfx", backend.root, backend.root / "pod-uid"):
        assert (p / "cgroup.subtree_control").read_text() == "+memory"
    (path / "memory.swap.max").write_text("max")
    backend._configure(path, None)  # no limit: memory.max untouched, swap still off
    assert (path / "memory.swap.max").read_text() == "0"
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n")
    assert backend.oom_kill_count(path) == 2
    assert (path / "memory.oom.group").read_text() == "1"  # a real kubelet >= 1.28 on v2
    assert backend.wrap(path, ["python", "x.py"])[-3:] == [
        str(path / "cgroup.procs"),
        "python",
        "x.py",
    ]


def test_detect_prefers_v2_with_memory_then_v1_then_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu io pids\n")
    # No join probe: these mounts are plain directories, no process can join them.
    chosen = detect_backend("auto", "pfx", "cid", mountinfo(v1, v2), probe=False)
    assert isinstance(chosen, CgroupV1) and chosen.root == v1 / "pfx" / "cid"
    (v2 / "cgroup.controllers").write_text("cpu io memory pids\n")
    chosen = detect_backend("auto", "pfx", "cid", mountinfo(v1, v2), probe=False)
    assert isinstance(chosen, CgroupV2) and chosen.root == v2 / "pfx" / "cid"
    with caplog.at_level(logging.WARNING):
        chosen = detect_backend("auto", "pfx", "cid", mountinfo(), probe=False)
    assert isinstance(chosen, NoCgroups) and not chosen.enforcing
    assert "NOT enforced" in caplog.text
    with pytest.raises(CgroupError):
        detect_backend("v1", "pfx", "cid", mountinfo(None, v2), probe=False)
    with pytest.raises(ValueError):
        detect_backend("cgroup-v3")


def test_systemd_scope_command_delegates_a_user_scope(tmp_path: Path) -> None:
    scope = SystemdScope(tmp_path, "zenml-oom-local", "123-456-abc")
    cmd = scope.command()
    assert cmd[:3] == ["systemd-run", "--user", "--scope"]
    assert "Delegate=yes" in cmd and "--unit=zenml-oom-local-123-456-abc" in cmd
    # The scope's one process is the container spawner, run isolated (stdlib only).
    assert cmd[cmd.index("--") + 1 :] == [sys.executable, "-I", "-S", str(spawner.__file__)]
    assert own_cgroup_v2_path() is not None


def test_real_limits_join_before_exec_and_teardown_leaves_nothing(tmp_path: Path) -> None:
    backend = real_backend(prefix())
    backend.setup()
    try:
        probe_join(backend)
        path = backend.create("pod", "main", 256 << 20)
        limit = "memory.max" if backend.name != "v1" else "memory.limit_in_bytes"
        assert int((path / limit).read_text()) == 256 << 20
        if backend.name == "v1" and (path / "memory.memsw.limit_in_bytes").exists():
            assert int((path / "memory.memsw.limit_in_bytes").read_text()) == 256 << 20
        proc = runner.spawn(
            ["sleep", "30"], {"PATH": os.defpath}, "/", tmp_path / "log", backend, path
        )
        wait_joined(backend, path, proc.pid)
        backend.destroy(path)
        assert proc.wait(5) == -9 and not path.exists()
    finally:
        backend.teardown()
    assert nothing_left(backend)


def test_real_oom_kill_is_counted_and_the_limit_holds(tmp_path: Path) -> None:
    backend = real_backend(prefix())
    backend.setup()
    try:
        path = backend.create("pod", "main", 128 << 20)
        argv = allocate_command(400)
        proc = runner.spawn(argv, {"PATH": os.defpath}, "/", tmp_path / "log", backend, path)
        assert proc.wait(60) == -9  # the kernel's SIGKILL
        assert backend.oom_kill_count(path) >= 1
    finally:
        backend.teardown()
    assert nothing_left(backend)


def test_stale_trees_of_dead_owners_are_cleaned_live_ones_kept(tmp_path: Path) -> None:
    pfx = prefix()
    live = real_backend(pfx)
    live.setup()
    crashed, orphan = crashed_run(pfx, tmp_path)
    current = real_backend(pfx)
    try:
        current.setup()
        wait_for(lambda: process_gone(orphan.pid), what="the orphan killed")
        wait_for(lambda: not crashed.root.exists(), what="the crashed tree removed")
        assert live.root.exists() and current.root.exists()
    finally:
        for backend in (current, live, crashed):
            backend.teardown()
    assert nothing_left(current) and nothing_left(live)


def test_a_refused_join_is_found_by_the_probe_with_why_and_nothing_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = real_backend(prefix())
    backend.setup()
    refuse_joins(monkeypatch, backend)
    probe_dirs = set(Path(tempfile.gettempdir()).glob("zenml-oom-probe-*"))
    try:
        with pytest.raises(CgroupError) as err:
            probe_join(backend)
        assert "cannot move the container's process into its memory cgroup" in str(err.value)
        assert "gone/cgroup.procs" in str(err.value)  # the shim's own words
        assert not (backend.root / PROBE_POD).exists()
        assert set(Path(tempfile.gettempdir()).glob("zenml-oom-probe-*")) <= probe_dirs
    finally:
        backend.teardown()
    assert nothing_left(backend)


def test_spawner_reports_exits_start_errors_refused_joins_and_kills_on_end_of_input(
    tmp_path: Path,
) -> None:
    client = SpawnerClient(spawner_argv())  # here outside any scope: the protocol only
    env, log = {"PATH": os.defpath}, str(tmp_path / "log")
    try:
        proc, error = client.launch(["sh", "-c", "echo hi; exit 3"], env, "/", log, False)
        assert (error, proc.wait(10)) == ("", 3)
        assert (tmp_path / "log").read_text() == "hi\n"
        proc, _ = client.launch(["sleep", "60"], env, "/", log, False)
        runner.signal_group(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -9
        with pytest.raises(OSError):
            client.launch(["/nonexistent/program"], env, "/", log, False)
        shim = ["/bin/sh", "-c", cgroups._JOIN, str(tmp_path / "no" / "cgroup.procs"), "true"]
        proc, error = client.launch(shim, env, "/", log, True)
        assert proc.wait(10) == 125 and "no/cgroup.procs" in error
        sleeper, _ = client.launch(["sleep", "60"], env, "/", log, False)
    finally:
        client.close()
    assert process_gone(sleeper.pid)
    assert sleeper.wait(5) in (-9, 137)
