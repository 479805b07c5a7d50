"""Choosing a cgroup backend, and the systemd user scope for unprivileged users."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from .cgroups import (
    DEFAULT_PREFIX,
    CgroupBackend,
    CgroupError,
    CgroupV1,
    CgroupV2,
    NoCgroups,
    find_mounts,
    new_cluster_id,
    owner_alive,
)

log = logging.getLogger(__name__)

BACKENDS = ("auto", "v1", "v2", "systemd", "none")


def own_cgroup_v2_path(pid: int | str = "self") -> str | None:
    """The v2 (`0::`) cgroup path of a process from /proc/<pid>/cgroup."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


class SystemdScope(CgroupV2):
    """cgroup v2 without root: a delegated `systemd-run --user --scope` subtree.

    A holder process keeps the scope alive. It moves into a `holder` leaf, so the scope's own
    cgroup has no processes and can delegate the memory controller to the container cgroups.
    """

    name = "systemd"

    def __init__(self, mount: Path, prefix: str = DEFAULT_PREFIX, cluster_id: str = "") -> None:
        super().__init__(mount, prefix, cluster_id)
        self.unit = f"{prefix}-{self.cluster_id}"
        self._holder: subprocess.Popen[bytes] | None = None

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
            "sleep",
            "infinity",
        ]

    def setup(self) -> None:
        if shutil.which("systemd-run") is None:
            raise OSError("systemd-run not found")
        self._holder = subprocess.Popen(
            self.command(), start_new_session=True, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        path = None
        while time.monotonic() < deadline and self._holder.poll() is None:
            path = own_cgroup_v2_path(self._holder.pid)
            if path and path.endswith(f"/{self.unit}.scope"):
                break
            time.sleep(0.02)
        else:
            self._stop_holder()
            raise OSError(f"systemd-run --user --scope did not start (cgroup {path})")
        self.root = self.mount / path.lstrip("/")
        self.clean_stale()
        holder_leaf = self.root / "holder"
        holder_leaf.mkdir(exist_ok=True)
        (holder_leaf / "cgroup.procs").write_text(str(self._holder.pid))
        (self.root / "cgroup.subtree_control").write_text("+memory")

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
                self.kill(scope)
                removed.append(scope)
        return removed

    def teardown(self) -> None:
        for child in list(self.root.iterdir()) if self.root.is_dir() else []:
            if child.is_dir() and child.name != "holder":
                self.destroy(child)
        self._stop_holder()

    def _stop_holder(self) -> None:
        if self._holder is not None and self._holder.poll() is None:
            self._holder.kill()
            self._holder.wait()


def detect_backend(
    kind: str = "auto",
    prefix: str = DEFAULT_PREFIX,
    cluster_id: str | None = None,
    mountinfo: str | None = None,
) -> CgroupBackend:
    """The first backend that works here, already set up (stale trees cleaned, root made).

    Order for "auto": v2 with a memory controller, v1 memory, a systemd user scope, none (with
    a loud warning). An explicit kind that cannot work raises CgroupError.
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
    for backend in candidates:
        try:
            backend.setup()
        except OSError as e:
            log.info("cgroup backend %s unusable: %s", backend.name, e)
            with contextlib.suppress(OSError):
                backend.teardown()
            continue
        log.info("memory cgroups: %s at %s", backend.name, backend.root)
        return backend
    if kind not in ("auto", "none"):
        raise CgroupError(f"cgroup backend {kind!r} is not usable here")
    none = NoCgroups(Path("/nonexistent"), prefix, cluster_id)
    none.setup()
    return none


def _controllers(v2_mount: Path) -> list[str]:
    try:
        return (v2_mount / "cgroup.controllers").read_text().split()
    except OSError:
        return []
