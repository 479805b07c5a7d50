"""The real tier's API server audit log, for tests that must see what the API server answered.

A tier started by control-plane-up.sh writes logs/audit.log (policy lib/audit-policy.yaml).
A tier started before that change has no audit log and is shared with other users, so it is
not restarted: `audited_api_server` then starts a second kube-apiserver of its own with the
same flags on another port, against the same etcd and PKI (API servers are stateless; HA
clusters run several), with the audit flags added, and stops it by its pid afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POLICY = Path(__file__).resolve().parent / "lib" / "audit-policy.yaml"
SECOND_PORT = int(os.environ.get("ZENML_OOM_AUDIT_APISERVER_PORT", "16443"))


@dataclass(frozen=True)
class AuditedApiServer:
    """An API server that writes an audit log: where pods and clients reach it, and the log."""

    host: str
    port: int
    log: Path
    second: bool  # started by this helper next to the tier's own API server

    def entries_since(self, offset: int) -> list[dict[str, Any]]:
        """Audit events written after byte `offset` of the log."""
        with self.log.open("rb") as f:
            f.seek(offset)
            return [json.loads(line) for line in f.read().splitlines() if line.strip()]

    def size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


def _flag(args: list[str], name: str) -> str | None:
    prefix = f"--{name}="
    return next((a[len(prefix) :] for a in args if a.startswith(prefix)), None)


def _main_apiserver_args(statedir: Path) -> list[str]:
    pid = (statedir / "pids" / "kube-apiserver.pid").read_text().strip()
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


@contextmanager
def audited_api_server(statedir: Path, workdir: Path) -> Iterator[AuditedApiServer]:
    """The tier's API server if it writes an audit log, else a second one that does."""
    args = _main_apiserver_args(statedir)
    host = _flag(args, "advertise-address") or "127.0.0.1"
    log = _flag(args, "audit-log-path")
    if log:
        yield AuditedApiServer(host, int(_flag(args, "secure-port") or 6443), Path(log), False)
        return
    keep = ("--secure-port=", "--endpoint-reconciler-type=", "--audit-")
    own = [a for a in args[1:] if not a.startswith(keep)]
    audit_log = workdir / "audit.log"
    own += [
        f"--secure-port={SECOND_PORT}",
        # The tier's API server owns the `kubernetes` Service's endpoint; this one stays out.
        "--endpoint-reconciler-type=none",
        f"--audit-policy-file={POLICY}",
        f"--audit-log-path={audit_log}",
    ]
    with (workdir / "kube-apiserver.log").open("w") as out:
        proc = subprocess.Popen([args[0], *own], stdout=out, stderr=out)
    try:
        kubectl = [
            str(Path(args[0]).with_name("kubectl")),
            "--kubeconfig",
            str(statedir / "kubeconfig"),
            "--server",
            f"https://{host}:{SECOND_PORT}",
        ]
        _wait_ready(proc, kubectl, workdir / "kube-apiserver.log")
        yield AuditedApiServer(host, SECOND_PORT, audit_log, True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # idle connections can hold it up to a minute
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], kubectl: list[str], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text().splitlines()[-20:])
            raise RuntimeError(f"the second kube-apiserver exited {proc.returncode}:\n{tail}")
        ready = subprocess.run([*kubectl, "get", "--raw", "/readyz"], capture_output=True)
        if ready.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"the second kube-apiserver was not ready in 120 s; log {log}")
