"""Memory cgroups for containers: v1, v2, a delegated systemd user scope, or none.

Layout: `<mount>/<prefix>/<cluster-id>/<pod-uid>/<container>`. The cluster id starts with the
owner's pid and start time, so a later run can tell a crashed run's tree (owner gone) from a
live sibling cluster and clean only the former.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import spawner

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "zenml-oom-local"
# Joins the cgroup from inside the child before exec, so every allocation of the real program
# counts (preexec_fn is not safe in a threaded process). $0 is the cgroup.procs file; stdin is
# the status pipe (`spawner.launch`): a failed join says why there, the program gets /dev/null.
_JOIN = 'echo $$ 2>&0 > "$0" || exit 125; exec "$@" </dev/null'


class CgroupError(RuntimeError):
    """A cgroup could not be created or configured."""


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    return int(stat.rsplit(")", 1)[1].split()[19])


def new_cluster_id() -> str:
    """`<pid>-<start ticks>-<random>`: unique, and tells whether its owner still runs."""
    pid = os.getpid()
    return f"{pid}-{process_start_ticks(pid) or 0}-{secrets.token_hex(3)}"


def owner_alive(cluster_id: str) -> bool | None:
    """Whether the process that made `cluster_id` still runs; None if the id has no owner."""
    parts = cluster_id.split("-")
    if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    ticks = process_start_ticks(int(parts[0]))
    return ticks is not None and (int(parts[1]) == 0 or ticks == int(parts[1]))


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


def find_mounts(mountinfo: str) -> tuple[Path | None, Path | None]:
    """(cgroup v1 memory mount, cgroup v2 mount) from /proc/self/mountinfo text."""
    v1 = v2 = None
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, tail = pre.split(), post.split()
        fstype, mount = tail[0], Path(fields[4])
        if fstype == "cgroup" and "memory" in tail[2].split(",") and v1 is None:
            v1 = mount
        elif fstype == "cgroup2" and v2 is None:
            v2 = mount
    return v1, v2


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _read_counter(path: Path, key: str) -> int:
    """`key N` from a flat-keyed cgroup file (memory.events, memory.oom_control)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


class CgroupBackend:
    """Base: one memory cgroup per container under a per-cluster root."""

    name = "base"
    enforcing = True

    def __init__(self, mount: Path, prefix: str = DEFAULT_PREFIX, cluster_id: str = "") -> None:
        self.mount = Path(mount)
        self.prefix = prefix
        self.cluster_id = cluster_id or new_cluster_id()
        self.root = self.mount / prefix / self.cluster_id

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Clean what crashed runs left, then create this cluster's root (OSError if we can't)."""
        self.clean_stale()
        self.root.mkdir(parents=True, exist_ok=True)
        self._enable_controllers(self.root)

    def teardown(self) -> None:
        """Kill every process in this cluster's cgroups and remove them all."""
        self.destroy(self.root)
        with contextlib.suppress(OSError):  # still holds other live clusters: keep it
            self.root.parent.rmdir()

    def clean_stale(self) -> list[Path]:
        """Remove sibling cluster trees whose owner process is dead, and our own leftovers."""
        parent = self.root.parent
        removed = []
        if parent.is_dir():
            for child in parent.iterdir():
                if child.is_dir() and (child == self.root or owner_alive(child.name) is False):
                    log.warning("removing stale cgroup tree %s (its owner is gone)", child)
                    self.destroy(child)
                    removed.append(child)
        return removed

    # -- containers --------------------------------------------------------------------------
    def create(self, pod_uid: str, container: str, limit_bytes: int | None) -> Path:
        """A fresh cgroup for one run of a container, limited to `limit_bytes`."""
        pod_dir = self.root / pod_uid
        pod_dir.mkdir(parents=True, exist_ok=True)
        self._enable_controllers(pod_dir)
        path = pod_dir / container
        if path.exists():
            self.destroy(path)  # a previous run's: counters must start at zero
        path.mkdir()
        try:
            self._configure(path, limit_bytes)
        except OSError as e:
            self.destroy(path)
            raise CgroupError(f"cannot configure memory cgroup {path}: {e}") from e
        return path

    def wrap(self, path: Path | None, argv: Sequence[str]) -> list[str]:
        """The argv that joins `path` before exec'ing `argv` (same pid throughout)."""
        if path is None:
            return list(argv)
        return ["/bin/sh", "-c", _JOIN, str(path / "cgroup.procs"), *argv]

    def launch(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        log_path: Path,
        cgroup: Path | None,
    ) -> tuple[Any, str]:
        """Start `argv` in `cgroup`: (process, the join's error or ""). OSError if no process."""
        return self.start_process(self.wrap(cgroup, argv), env, cwd, str(log_path), cgroup)

    def start_process(
        self, argv: list[str], env: Mapping[str, str], cwd: str, log: str, cgroup: Path | None
    ) -> tuple[Any, str]:
        """Start the wrapped `argv` from this process (a subclass may start it elsewhere)."""
        return spawner.launch(argv, env, cwd, log, joins=cgroup is not None)

    def memory_cgroup_of(self, proc_cgroup: str) -> Path | None:
        """The memory cgroup a /proc/<pid>/cgroup text puts its process in."""
        for line in proc_cgroup.splitlines():
            if line.startswith("0::"):
                return self.mount / line[3:].lstrip("/")
        return None

    def launcher_cgroup(self) -> Path | None:
        """The cgroup new container processes start from (before they join theirs)."""
        return self.memory_cgroup_of(Path("/proc/self/cgroup").read_text())

    def pids(self, path: Path) -> list[int]:
        try:
            return [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill(self, path: Path) -> None:
        """SIGKILL everything in the cgroup (and its children)."""
        for sub in self._walk_bottom_up(path):
            for pid in self.pids(sub):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def destroy(self, path: Path, timeout: float = 5.0) -> None:
        """Kill and remove a cgroup subtree; dying processes can hold it for a moment."""
        if not path.exists():
            return
        deadline = time.monotonic() + timeout
        while True:
            self.kill(path)
            busy = False
            for sub in self._walk_bottom_up(path):
                try:
                    sub.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        raise
                    busy = True
            if not busy or time.monotonic() > deadline:
                if busy:
                    log.warning("could not remove cgroup %s: still busy", path)
                return
            time.sleep(0.02)

    def remove_pod(self, pod_uid: str) -> None:
        self.destroy(self.root / pod_uid)

    def _walk_bottom_up(self, path: Path) -> list[Path]:
        out: list[Path] = []
        if path.is_dir():
            for dirpath, dirnames, _ in os.walk(path, topdown=False):
                del dirnames
                out.append(Path(dirpath))
        return out

    # -- per-version details -----------------------------------------------------------------
    def _enable_controllers(self, path: Path) -> None:
        """v2 needs `+memory` in subtree_control from the mount down; v1 needs nothing."""

    def _configure(self, path: Path, limit_bytes: int | None) -> None:
        raise NotImplementedError

    def oom_kill_count(self, path: Path | None) -> int:
        raise NotImplementedError

    def set_memory_limit(self, path: Path, limit_bytes: int | None) -> None:
        """Change a running container's limit in place (an in-place resize); OSError if the
        kernel refuses it (v1: a limit below what the cgroup uses now)."""
        raise NotImplementedError

    def memory_usage(self, path: Path | None) -> int:
        raise NotImplementedError


class CgroupV1(CgroupBackend):
    """cgroup v1 memory controller: limit_in_bytes (+ memsw so swap cannot dodge the limit)."""

    name = "v1"

    def _configure(self, path: Path, limit_bytes: int | None) -> None:
        if limit_bytes is None:
            return
        _write(path / "memory.limit_in_bytes", str(limit_bytes))
        memsw = path / "memory.memsw.limit_in_bytes"
        if memsw.exists():  # only with swap accounting; must be set after the plain limit
            _write(memsw, str(limit_bytes))
        with contextlib.suppress(OSError):
            _write(path / "memory.swappiness", "0")

    def oom_kill_count(self, path: Path | None) -> int:
        return 0 if path is None else _read_counter(path / "memory.oom_control", "oom_kill")

    def set_memory_limit(self, path: Path, limit_bytes: int | None) -> None:
        value = str(limit_bytes if limit_bytes is not None else -1)
        memsw = path / "memory.memsw.limit_in_bytes"
        # memsw may never be below the plain limit: raise it first, lower it last.
        order = ["memory.limit_in_bytes"]
        if memsw.exists():
            current = _read_counter_file(path / "memory.limit_in_bytes")
            growing = limit_bytes is None or limit_bytes > current
            order = [memsw.name, *order] if growing else [*order, memsw.name]
        for name in order:
            _write(path / name, value)

    def memory_cgroup_of(self, proc_cgroup: str) -> Path | None:
        for line in proc_cgroup.splitlines():
            _, controllers, where = (line.split(":", 2) + ["", ""])[:3]
            if "memory" in controllers.split(","):
                return self.mount / where.lstrip("/")
        return None

    def launcher_cgroup(self) -> Path | None:
        return self.memory_cgroup_of(Path("/proc/self/cgroup").read_text())

    def memory_usage(self, path: Path | None) -> int:
        return 0 if path is None else _read_counter_file(path / "memory.usage_in_bytes")


class CgroupV2(CgroupBackend):
    """cgroup v2: memory.max, no swap, and oom.group so an OOM kills the whole container."""

    name = "v2"

    def _enable_controllers(self, path: Path) -> None:
        # Every ancestor below the mount must delegate the memory controller to its children.
        chain = [path, *path.parents]
        for p in reversed(chain):
            if p == self.mount or self.mount in p.parents:
                control = p / "cgroup.subtree_control"
                if "memory" not in _read_text(control).split():
                    _write(control, "+memory")

    def _configure(self, path: Path, limit_bytes: int | None) -> None:
        if limit_bytes is not None:
            _write(path / "memory.max", str(limit_bytes))
        if (path / "memory.swap.max").exists():
            _write(path / "memory.swap.max", "0")
        _write(path / "memory.oom.group", "1")

    def kill(self, path: Path) -> None:
        kill_file = path / "cgroup.kill"  # Linux 5.14+: atomic, no pid races
        if kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        super().kill(path)

    def oom_kill_count(self, path: Path | None) -> int:
        return 0 if path is None else _read_counter(path / "memory.events", "oom_kill")

    def set_memory_limit(self, path: Path, limit_bytes: int | None) -> None:
        _write(path / "memory.max", "max" if limit_bytes is None else str(limit_bytes))

    def memory_usage(self, path: Path | None) -> int:
        return 0 if path is None else _read_counter_file(path / "memory.current")


class NoCgroups(CgroupBackend):
    """No enforcement at all: containers run unlimited and OOM kills are never reported."""

    name = "none"
    enforcing = False
    reasons: list[str] = []  # why each real backend was unusable (detect_backend sets them)

    def setup(self) -> None:
        why = "".join(f"\n  {r}" for r in self.reasons)
        log.warning(
            "\n%s\nNO MEMORY CGROUPS: container memory limits are NOT enforced and no OOM kill "
            "will ever be reported. Run as root with cgroup v1/v2, or as a user of a systemd "
            "machine with cgroup v2 (the `systemd` backend).%s\n%s",
            "!" * 78,
            why,
            "!" * 78,
        )

    def teardown(self) -> None:
        pass

    def create(self, pod_uid: str, container: str, limit_bytes: int | None) -> Path:
        raise CgroupError("no cgroups")  # callers check `enforcing` first

    def remove_pod(self, pod_uid: str) -> None:
        pass

    def oom_kill_count(self, path: Path | None) -> int:
        return 0

    def set_memory_limit(self, path: Path, limit_bytes: int | None) -> None:
        pass

    def memory_usage(self, path: Path | None) -> int:
        return 0


def _read_counter_file(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
