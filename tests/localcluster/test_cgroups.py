"""Cgroup backends: detection, v1/v2 files, stale-tree cleanup, the systemd scope command."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from zenml_oom_orchestrator.localcluster.kubelet.cgroup_detect import (
    SystemdScope,
    detect_backend,
    own_cgroup_v2_path,
)
from zenml_oom_orchestrator.localcluster.kubelet.cgroups import (
    CgroupError,
    CgroupV1,
    CgroupV2,
    NoCgroups,
    find_mounts,
    new_cluster_id,
    owner_alive,
)

V1_MEMORY = Path("/sys/fs/cgroup/memory")
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
    chosen = detect_backend("auto", "pfx", "cid", mountinfo(v1, v2))
    assert isinstance(chosen, CgroupV1) and chosen.root == v1 / "pfx" / "cid"
    (v2 / "cgroup.controllers").write_text("cpu io memory pids\n")
    chosen = detect_backend("auto", "pfx", "cid", mountinfo(v1, v2))
    assert isinstance(chosen, CgroupV2) and chosen.root == v2 / "pfx" / "cid"
    with caplog.at_level(logging.WARNING):
        chosen = detect_backend("auto", "pfx", "cid", mountinfo())
    assert isinstance(chosen, NoCgroups) and not chosen.enforcing
    assert "NOT enforced" in caplog.text
    with pytest.raises(CgroupError):
        detect_backend("v1", "pfx", "cid", mountinfo(None, v2))
    with pytest.raises(ValueError):
        detect_backend("cgroup-v3")


def test_systemd_scope_command_delegates_a_user_scope(tmp_path: Path) -> None:
    scope = SystemdScope(tmp_path, "zenml-oom-local", "123-456-abc")
    cmd = scope.command()
    assert cmd[:3] == ["systemd-run", "--user", "--scope"]
    assert "Delegate=yes" in cmd and "--unit=zenml-oom-local-123-456-abc" in cmd
    assert own_cgroup_v2_path() is not None


needs_v1 = pytest.mark.skipif(
    not (V1_MEMORY / "memory.limit_in_bytes").exists() or not os.access(V1_MEMORY, os.W_OK),
    reason="needs a writable cgroup v1 memory controller",
)


@needs_v1
def test_v1_limits_and_process_join_before_exec() -> None:
    backend = CgroupV1(V1_MEMORY, prefix())
    backend.setup()
    try:
        path = backend.create("pod", "main", 256 << 20)
        assert int((path / "memory.limit_in_bytes").read_text()) == 256 << 20
        if (path / "memory.memsw.limit_in_bytes").exists():
            assert int((path / "memory.memsw.limit_in_bytes").read_text()) == 256 << 20
        proc = subprocess.Popen(backend.wrap(path, ["sleep", "30"]))
        deadline = time.monotonic() + 5
        while proc.pid not in backend.pids(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend.pids(path) == [proc.pid]  # the exec'd program itself, same pid
        backend.destroy(path)
        assert proc.wait(5) == -9 and not path.exists()
    finally:
        backend.teardown()
    assert not backend.root.parent.exists()


@needs_v1
def test_stale_trees_of_dead_owners_are_cleaned_live_ones_kept() -> None:
    pfx = prefix()
    live = CgroupV1(V1_MEMORY, pfx)
    live.setup()
    crashed = CgroupV1(V1_MEMORY, pfx, "999999999-1-dead")
    crashed.setup()
    leftover = crashed.create("pod", "main", None)
    orphan = subprocess.Popen(crashed.wrap(leftover, ["sleep", "30"]))
    deadline = time.monotonic() + 5
    while orphan.pid not in crashed.pids(leftover) and time.monotonic() < deadline:
        time.sleep(0.01)
    current = CgroupV1(V1_MEMORY, pfx)
    try:
        current.setup()
        assert not crashed.root.exists()
        assert orphan.wait(5) == -9
        assert live.root.exists() and current.root.exists()
    finally:
        for backend in (current, live, crashed):
            backend.teardown()
    assert not (V1_MEMORY / pfx).exists()
