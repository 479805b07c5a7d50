"""Helpers for tests on this machine's real memory cgroups (v1, v2, or the systemd scope)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.kubelet import Kubelet, runner
from zenml_oom_orchestrator.localcluster.kubelet.cgroup_detect import SystemdScope, detect_backend
from zenml_oom_orchestrator.localcluster.kubelet.cgroups import CgroupBackend
from zenml_oom_orchestrator.localcluster.kubelet.testing import running_node
from zenml_oom_orchestrator.localcluster.store import Store


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Store, Kubelet]]:
    """A Store with a scheduler and a kubelet on this machine's memory cgroups (import it
    into a test module: `from .real_cgroups import node`)."""
    with running_node(tmp_path) as pair:
        if not pair[1].backend.enforcing:
            pytest.skip("no memory cgroups on this machine")
        yield pair


def real_backend(pfx: str, cluster_id: str = "") -> CgroupBackend:
    """A backend of the kind this machine uses (v1, v2 or the systemd scope), not yet set up.

    Skips without memory cgroups; the cgroup v2 VM tier (integration/cgroupv2) fails on such
    a skip, so there it always runs.
    """
    found = detect_backend("auto", pfx, probe=False)
    found.teardown()
    if not found.enforcing:
        pytest.skip("no memory cgroups on this machine")
    return type(found)(found.mount, pfx, cluster_id)


def wait_joined(backend: CgroupBackend, path: Path, pid: int) -> None:
    deadline = time.monotonic() + 10
    while pid not in backend.pids(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.pids(path) == [pid]  # the exec'd program itself, same pid


def nothing_left(backend: CgroupBackend) -> bool:
    """No cgroup of `backend` remains: its root, and its prefix dir (or its systemd scope)."""
    gone = [backend.root] if backend.name == "systemd" else [backend.root, backend.root.parent]
    return not any(p.exists() for p in gone)


def refuse_joins(monkeypatch: pytest.MonkeyPatch, backend: CgroupBackend) -> None:
    """Make every join of `backend` fail the way the join shim fails for real: the cgroup.procs
    it must write cannot be opened (it is in a directory that does not exist)."""
    real_wrap = backend.wrap

    def refused(path: Path | None, argv: Sequence[str]) -> list[str]:
        return real_wrap(None if path is None else path / "gone", argv)

    monkeypatch.setattr(backend, "wrap", refused)


def crashed_run(pfx: str, log_dir: Path) -> tuple[CgroupBackend, Any]:
    """A crashed run's leftovers (its owner pid is gone): a cgroup tree with a process in it,
    and, for the systemd scope, no spawner any more (killed as a crash would)."""
    crashed = real_backend(pfx, "999999999-1-crashed")
    crashed.setup()
    leftover = crashed.create("pod", "main", 64 << 20)
    env = {"PATH": os.defpath}
    orphan = runner.spawn(["sleep", "60"], env, "/", log_dir / "log", crashed, leftover)
    wait_joined(crashed, leftover, orphan.pid)
    if isinstance(crashed, SystemdScope):
        assert crashed.spawner is not None
        crashed.spawner.kill()  # the orphan lives on in the scope
    return crashed, orphan
