"""Choosing a cgroup backend, and the systemd user scope for unprivileged users."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cgroup_probe import probe_join
from .cgroups import (
    DEFAULT_PREFIX,
    CgroupBackend,
    CgroupError,
    CgroupV1,
    CgroupV2,
    NoCgroups,
    find_mounts,
    new_cluster_id,
    own_cgroup_v2_path,
    owner_alive,
)
from .spawner_client import SpawnerClient, spawner_argv

log = logging.getLogger(__name__)

BACKENDS = ("auto", "v1", "v2", "systemd", "none")
__all__ = ["BACKENDS", "SystemdScope", "detect_backend", "own_cgroup_v2_path"]


class SystemdScope(CgroupV2):
    """cgroup v2 without root: a delegated `systemd-run --user --scope` subtree.

    Its one process is the container spawner (`spawner.py`), moved into a `holder` leaf so the
    scope's own cgroup has no processes and can delegate the memory controller to the container
    cgroups. Containers start from the spawner, inside the scope: a process in the user's login
    session may create cgroups here but not move a process into them (the common ancestor,
    `user-UID.slice`, is root's), while the spawner's moves stay inside the user's subtree.
    """

    name = "systemd"

    def __init__(self, mount: Path, prefix: str = DEFAULT_PREFIX, cluster_id: str = "") -> None:
        super().__init__(mount, prefix, cluster_id)
        self.unit = f"{prefix}-{self.cluster_id}"
        self.spawner: SpawnerClient | None = None

    def command(self) -> list[str]:
        return [
            "systemd-run",
            "--user",
            "--scope",
            "--quiet",
            "--collect",
            "-p",
            "Delegate=yes",
            f"--unit={self.unit}",
            "--",
            *spawner_argv(),
        ]

    def setup(self) -> None:
        if shutil.which("systemd-run") is None:
            raise OSError("systemd-run not found")
        with tempfile.TemporaryFile() as errors:  # systemd-run's complaints, if it fails
            self.spawner = SpawnerClient(self.command(), stderr=errors)
            proc = self.spawner.proc
            deadline = time.monotonic() + 10
            path = None
            while time.monotonic() < deadline and proc.poll() is None:
                path = own_cgroup_v2_path(proc.pid)
                if path and path.endswith(f"/{self.unit}.scope"):
                    break
                time.sleep(0.02)
            else:
                self._stop_spawner()
                errors.seek(0)
                said = errors.read().decode(errors="replace").strip() or f"cgroup {path}"
                raise OSError(f"systemd-run --user --scope did not start: {said}")
        self.root = self.mount / path.lstrip("/")
        self.clean_stale()
        holder_leaf = self.root / "holder"
        holder_leaf.mkdir(exist_ok=True)
        (holder_leaf / "cgroup.procs").write_text(str(proc.pid))
        (self.root / "cgroup.subtree_control").write_text("+memory")
        self.spawner.tell_scope(self.root)

    def start_process(
        self, argv: list[str], env: Mapping[str, str], cwd: str, log: str, cgroup: Path | None
    ) -> tuple[Any, str]:
        if self.spawner is None:
            raise OSError("the systemd scope is not set up")
        return self.spawner.launch(argv, env, cwd, log, joins=cgroup is not None)

    def launcher_cgroup(self) -> Path | None:
        return self.root / "holder"

    def _enable_controllers(self, path: Path) -> None:
        # Only below the delegated scope: the slices above belong to systemd.
        if path != self.root:
            control = path / "cgroup.subtree_control"
            if "memory" not in control.read_text().split():
                control.write_text("+memory")

    def clean_stale(self) -> list[Path]:
        """Kill the processes of crashed runs' scopes; systemd then removes the scopes."""
        removed = []
        for scope in self.root.parent.glob(f"{self.prefix}-*.scope"):
            cluster_id = scope.name[len(self.prefix) + 1 : -len(".scope")]
            if scope != self.root and owner_alive(cluster_id) is False:
                log.warning("killing stale systemd scope %s (its owner is gone)", scope)
                self.kill(scope)  # systemd removes the scope once it is empty
                with contextlib.suppress(OSError):  # systemd may be removing it already
                    for child in [c for c in scope.iterdir() if c.is_dir()]:
                        self.destroy(child)
                removed.append(scope)
        return removed

    def teardown(self) -> None:
        for child in list(self.root.iterdir()) if self.root.is_dir() else []:
            if child.is_dir() and child.name != "holder":
                self.destroy(child)
        self._stop_spawner()
        # systemd removes the scope once its last process is gone: wait, so nothing is left.
        deadline = time.monotonic() + 10
        while self.root.name.endswith(".scope") and self.root.exists():
            if time.monotonic() > deadline:
                log.warning("systemd did not remove the scope %s within 10 s", self.root)
                break
            time.sleep(0.05)

    def _stop_spawner(self) -> None:
        if self.spawner is not None:
            self.spawner.close()
            self.spawner = None


def detect_backend(
    kind: str = "auto",
    prefix: str = DEFAULT_PREFIX,
    cluster_id: str | None = None,
    mountinfo: str | None = None,
    probe: bool = True,
) -> CgroupBackend:
    """The first backend that works here, already set up (stale trees cleaned, root made) and,
    with `probe`, proven: a process really joined one of its cgroups (`cgroup_probe`).

    Order for "auto": v2 with a memory controller, v1 memory, a systemd user scope, none (with
    a loud warning that says why each one failed). An explicit kind that cannot work raises
    CgroupError with the reason.
    """
    if kind not in BACKENDS:
        raise ValueError(f"cgroup backend must be one of {BACKENDS}, not {kind!r}")
    cluster_id = cluster_id or new_cluster_id()
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1_mount, v2_mount = find_mounts(mountinfo)
    v2_memory = v2_mount is not None and "memory" in _controllers(v2_mount)
    candidates: list[CgroupBackend] = []
    if kind in ("auto", "v2") and v2_mount is not None and (v2_memory or kind == "v2"):
        candidates.append(CgroupV2(v2_mount, prefix, cluster_id))
    if kind in ("auto", "v1") and v1_mount is not None:
        candidates.append(CgroupV1(v1_mount, prefix, cluster_id))
    # Root writes cgroups directly; the scope is for users without that right.
    wants_scope = kind == "systemd" or (kind == "auto" and v2_memory and os.geteuid() != 0)
    if wants_scope and v2_mount is not None:
        candidates.append(SystemdScope(v2_mount, prefix, cluster_id))
    reasons = []
    for backend in candidates:
        try:
            backend.setup()
            if probe:
                probe_join(backend)
        except (OSError, CgroupError) as e:
            # A backend that sets up but cannot join is the surprise worth a warning.
            level = logging.WARNING if isinstance(e, CgroupError) else logging.INFO
            log.log(level, "cgroup backend %s unusable: %s", backend.name, e)
            reasons.append(f"{backend.name}: {e}")
            with contextlib.suppress(OSError):
                backend.teardown()
            continue
        log.info("memory cgroups: %s at %s", backend.name, backend.root)
        return backend
    if kind not in ("auto", "none"):
        raise CgroupError(f"cgroup backend {kind!r} is not usable here: {'; '.join(reasons)}")
    none = NoCgroups(Path("/nonexistent"), prefix, cluster_id)
    none.reasons = reasons
    none.setup()
    return none


def _controllers(v2_mount: Path) -> list[str]:
    try:
        return (v2_mount / "cgroup.controllers").read_text().split()
    except OSError:
        return []
