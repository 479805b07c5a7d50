"""Does joining a container cgroup really work here? Found at start, not by the first pod.

A backend can set up fine and still fail every container: the classic case is a non-root
kubelet in a login session on cgroup v2, which may create cgroups in its delegated scope but
not move a process into them (the common ancestor of the two cgroups is root's). So the kubelet
starts one process exactly the way it starts containers, into a fresh pod cgroup, checks where
it ran, and removes it all before it reports the node Ready.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .cgroups import CgroupBackend, CgroupError

PROBE_POD = "zenml-oom-join-probe"


def probe_join(backend: CgroupBackend) -> None:
    """Start a process into a fresh cgroup of `backend` and check it ran there; remove it all.

    CgroupError says why not and what to do. Nothing to check without enforcement.
    """
    if not backend.enforcing:
        return
    tmp = Path(tempfile.mkdtemp(prefix="zenml-oom-probe-"))
    try:
        path = backend.create(PROBE_POD, "probe", 64 << 20)
        argv = [shutil.which("cat") or "/bin/cat", "/proc/self/cgroup"]
        proc, error = backend.launch(argv, {"PATH": os.defpath}, "/", tmp / "out", path)
        code = proc.wait(60)
        if error:
            raise CgroupError(join_error(backend, path, error))
        seen = backend.memory_cgroup_of((tmp / "out").read_text())
        if code != 0 or seen != path:
            raise CgroupError(
                f"memory cgroups ({backend.name}): a process started into {path} ran in "
                f"{seen or f'no memory cgroup (exit {code})'} instead, so no memory limit "
                "would apply to the containers."
            )
    except OSError as e:
        raise CgroupError(f"memory cgroups ({backend.name}): the join probe failed: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        backend.destroy(backend.root / PROBE_POD)


def join_error(backend: CgroupBackend, path: Path, shim_error: str) -> str:
    """Why a process could not join `path` (the join shim's words), and what to do."""
    text = f"cannot move the container's process into its memory cgroup {path}: {shim_error}"
    source = backend.launcher_cgroup()
    if source is None:
        return text
    common = Path(os.path.commonpath([source, path]))
    if not os.access(common / "cgroup.procs", os.W_OK):
        text += (
            f" (moving a process from {source} needs write access to cgroup.procs of the "
            f"common ancestor {common}, which uid {os.geteuid()} lacks). Run as root, or use the "
            "`systemd` backend (cgroup v2 with a systemd user manager), which starts containers "
            "from inside its own delegated scope"
        )
    return text
