"""The kubelet's side of the spawner (`spawner.py`): start processes there, learn their exits.

A `RemoteProcess` stands for a container process the spawner started: the kubelet signals its
process group itself (same user) and waits for the exit the spawner reports, as it would for
its own child.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from . import spawner

SCRIPT = Path(spawner.__file__)


def spawner_argv() -> list[str]:
    """The spawner as a process: this interpreter, isolated, no site packages (stdlib only)."""
    return [sys.executable, "-I", "-S", str(SCRIPT)]


class RemoteProcess:
    """A process started by the spawner: `pid`, `returncode`, `wait()`, `poll()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = threading.Event()

    def _exited(self, returncode: int) -> None:
        self.returncode = returncode
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode


class SpawnerGone(OSError):
    """The spawner process ended: no container can be started through it any more."""


class SpawnerClient:
    """Talks to one spawner process started with `command` (its stdin/stdout are the pipes)."""

    def __init__(self, command: Sequence[str], stderr: IO[bytes] | None = None) -> None:
        self.proc = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # a Ctrl+C in the terminal is the kubelet's to handle
        )
        self._lock = threading.Lock()  # the tables below
        self._write_lock = threading.Lock()  # never held with _lock: the reader needs that
        self._next_id = 0
        self._replies: dict[int, queue.Queue[tuple[RemoteProcess | None, str]]] = {}
        self._procs: dict[int, RemoteProcess] = {}
        self._gone = False
        assert self.proc.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.proc.stdout,), name="spawner-reader", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tell_scope(self, scope: Path) -> None:
        """The scope the spawner lives in: it kills it on its way out."""
        self._send({"scope": str(scope)})

    def launch(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, log_path: str, joins: bool
    ) -> tuple[RemoteProcess, str]:
        """Like `spawner.launch`, in the spawner; OSError if it cannot start the process."""
        answer: queue.Queue[tuple[RemoteProcess | None, str]] = queue.Queue()
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            self._replies[rid] = answer
        request = {
            "id": rid,
            "argv": list(argv),
            "env": dict(env),
            "cwd": cwd,
            "log": log_path,
            "joins": joins,
        }
        self._send(request)
        try:
            proc, error = answer.get(timeout=60)
        except queue.Empty:
            raise SpawnerGone("the container spawner did not answer within 60 s") from None
        finally:
            with self._lock:
                self._replies.pop(rid, None)
        if proc is None:
            raise OSError(error)
        return proc, error

    def close(self, timeout: float = 10.0) -> None:
        """End its input: it kills what it started (and its scope) and exits."""
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL the spawner only (what a crash does): its processes live on."""
        self.proc.kill()
        self.proc.wait()
        self._reader.join(10)

    # -- internals ---------------------------------------------------------------------------
    def _send(self, message: Mapping[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        with self._write_lock:
            if self._gone or self.proc.stdin is None or self.proc.stdin.closed:
                raise SpawnerGone("the container spawner has exited")
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError) as e:
                raise SpawnerGone(f"the container spawner has exited ({e})") from e

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            message = json.loads(line)
            with self._lock:
                if "exit" in message:
                    proc = self._procs.pop(message["exit"], None)
                    if proc is not None:
                        proc._exited(int(message["returncode"]))
                    continue
                answer = self._replies.get(message["id"])
                remote = None if message["pid"] is None else RemoteProcess(message["pid"])
                if remote is not None:
                    self._procs[remote.pid] = remote
            if answer is not None:
                answer.put((remote, message["error"]))
        # The spawner is gone: what it started was killed with it (its scope's cgroup.kill).
        with self._lock:
            self._gone = True
            orphans, self._procs = list(self._procs.values()), {}
            waiting = list(self._replies.values())
        for proc in orphans:
            proc._exited(-9)
        for answer in waiting:
            answer.put((None, "the container spawner has exited"))
