"""Containers as local processes: command resolution, spawning into a cgroup, signalling."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .cgroup_probe import join_error
from .cgroups import CgroupBackend

# The image is ignored, so `python` must mean the interpreter the cluster runs on (it has the
# project and its dependencies installed).
_PYTHON_NAMES = ("python", "python3")
# A container's command is its PID 1, which the kernel spares from every signal it has no
# handler for: SIGTERM at deletion is ignored unless the program handles it (then SIGKILL at
# the end of the grace period). A local process is no PID 1, so it starts with SIGTERM
# ignored, a disposition exec keeps and a handler replaces: the same behaviour.
_AS_PID1 = ("/bin/sh", "-c", 'trap "" TERM; exec "$@"', "pid1")


class StartError(RuntimeError):
    """The container's process could not be started (containerd's `StartError`, exit 128)."""


def resolve_argv(
    command: Sequence[str] | None, args: Sequence[str] | None, env: Mapping[str, str], cwd: str
) -> list[str]:
    """`command + args` with the executable resolved as exec would; StartError if missing."""
    argv = [*(command or []), *(args or [])]
    if not argv:
        raise StartError("no command specified")
    exe = argv[0]
    if exe in _PYTHON_NAMES:
        return [sys.executable, *argv[1:]]
    if "/" in exe:
        path = exe if os.path.isabs(exe) else os.path.join(cwd, exe)
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise StartError(f'exec: "{exe}": stat {exe}: no such file or directory')
        return [path, *argv[1:]]
    found = shutil.which(exe, path=env.get("PATH", os.defpath))
    if found is None:
        raise StartError(f'exec: "{exe}": executable file not found in $PATH')
    return [found, *argv[1:]]


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    log_path: Path,
    backend: CgroupBackend,
    cgroup: Path | None,
) -> Any:
    """Start the process in its own session (so its whole group can be signalled) and cgroup.

    stdout and stderr go interleaved to `log_path`, as a container runtime's log does. A
    process that could not join its cgroup is reaped and reported as StartError (a real
    runtime fails the start the same way when it cannot apply the cgroup).
    """
    try:
        Path(cwd).mkdir(parents=True, exist_ok=True)  # runtimes create a missing workingDir
    except OSError as e:
        raise StartError(f"cannot create working directory {cwd}: {e}") from e
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc, join_failed = backend.launch([*_AS_PID1, *argv], env, cwd, log_path, cgroup)
    except OSError as e:
        raise StartError(f"exec: {argv[0]!r}: {e.strerror or e}") from e
    if join_failed:
        proc.wait()
        assert cgroup is not None
        raise StartError(join_error(backend, cgroup, join_failed))
    return proc


def signal_group(pid: int, sig: int) -> None:
    """Signal the container's process group (its PID 1 leads it), ignoring a gone group."""
    if pid <= 1:
        return  # killpg(0) would signal our own group: never
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def exit_code(returncode: int) -> tuple[int, int | None]:
    """(Kubernetes exit code, signal): a signal N shows as 128+N, like a runtime reports it."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


def signal_name(sig: int | None) -> str:
    if sig is None:
        return ""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
