"""Starting container processes, here or from a spawner process inside a delegated cgroup.

`launch` starts one container process (already wrapped by `CgroupBackend.wrap`) and tells
whether its join shim failed. It is used in the kubelet's own process, and, for the systemd
user scope, by this file run as a script: a small long-lived spawner that `systemd-run --user
--scope` starts inside the delegated scope. Moving a process between cgroups needs write access
to `cgroup.procs` of the two cgroups' common ancestor; from the user's login session that is
`user-UID.slice` (root's), but from a process already in the scope it is the scope itself (the
user's). So every container starts from the spawner and joins its cgroup without help.

Protocol (JSON lines): requests on stdin `{"id", "argv", "env", "cwd", "log", "joins"}`;
replies on stdout `{"id", "pid", "error"}`, then `{"exit": pid, "returncode": rc}` when the
process ends. `{"scope": path}` names the scope the spawner was moved into (`<scope>/holder`).
On end of input (the kubelet stopped or died) the spawner kills what it started and then
every process of that scope, itself last, so a crashed kubelet leaves no process behind.

Standard library only: the script runs with `python -I -S`, before anything is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path


def launch(
    argv: Sequence[str], env: Mapping[str, str], cwd: str, log_path: str, joins: bool
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `argv` in its own session, stdout+stderr appended to `log_path`.

    With `joins`, the join shim gets the write end of a status pipe as stdin: it writes its
    error there if it cannot join the cgroup, and replaces it with /dev/null when it execs the
    program. Returns the process and the shim's error ("" once the program runs).
    """
    read_end, write_end = os.pipe() if joins else (-1, -1)
    try:
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=write_end if joins else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
    finally:
        if joins:
            os.close(write_end)
    error = b""
    if joins:
        with os.fdopen(read_end, "rb") as status:  # EOF at exec, or after the shim's error
            error = status.read(4096)
    return proc, error.decode(errors="replace").strip()


class _Spawner:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.scope: Path | None = None  # set by the kubelet once the spawner is in its scope

    def send(self, message: Mapping[str, object]) -> None:
        with self.lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def wait(self, proc: subprocess.Popen[bytes]) -> None:
        returncode = proc.wait()
        with self.lock:
            self.running.pop(proc.pid, None)
        self.send({"exit": proc.pid, "returncode": returncode})

    def handle(self, request: Mapping[str, object]) -> None:
        if "scope" in request:
            self.scope = Path(str(request["scope"]))
            return
        try:
            proc, error = launch(
                request["argv"],  # type: ignore[arg-type]
                request["env"],  # type: ignore[arg-type]
                str(request["cwd"]),
                str(request["log"]),
                bool(request["joins"]),
            )
        except OSError as e:
            self.send({"id": request["id"], "pid": None, "error": str(e.strerror or e)})
            return
        with self.lock:
            self.running[proc.pid] = proc
        self.send({"id": request["id"], "pid": proc.pid, "error": error})
        threading.Thread(target=self.wait, args=(proc,), daemon=True).start()

    def kill_everything(self) -> None:
        """End of input: the kubelet is gone. Kill what was started, and the scope with us."""
        with self.lock:
            pids = list(self.running)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        if self.scope is not None and _in_holder_of(self.scope):
            with contextlib.suppress(OSError):  # every process of the scope, this one too
                (self.scope / "cgroup.kill").write_text("1")


def _in_holder_of(scope: Path) -> bool:
    """Only the scope whose holder leaf this process is in: never a cgroup of someone else."""
    own = [x[3:] for x in Path("/proc/self/cgroup").read_text().splitlines() if x[:3] == "0::"]
    return (
        bool(own)
        and scope.name.endswith(".scope")
        and own[0].endswith("/holder")
        and str(scope).endswith(own[0][: -len("/holder")])
    )


def main() -> None:
    spawner = _Spawner()
    try:
        for line in sys.stdin:
            spawner.handle(json.loads(line))
    finally:
        spawner.kill_everything()


if __name__ == "__main__":
    main()
