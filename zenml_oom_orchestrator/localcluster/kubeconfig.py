"""Kubeconfig files that point kubectl and the kubernetes client at the local cluster."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONTEXT = "oom-local"


def kubeconfig_dict(
    server_url: str, context: str = DEFAULT_CONTEXT, namespace: str = "default"
) -> dict[str, Any]:
    """The kubeconfig as data: one cluster, user and context, all named `context`."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        # No credentials: the local API server does not authenticate.
        "users": [{"name": context, "user": {}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": namespace},
            }
        ],
        "current-context": context,
    }


def write_kubeconfig(
    path: str | os.PathLike[str],
    server_url: str,
    context: str = DEFAULT_CONTEXT,
    namespace: str = "default",
) -> Path:
    """Write the kubeconfig atomically (readers never see half a file); returns its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(kubeconfig_dict(server_url, context, namespace), sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=".kubeconfig-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class KubeconfigInUse(RuntimeError):
    """Another live `cluster up` holds the kubeconfig's lock."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path, self.holder = path, holder
        super().__init__(
            f"{path} is in use by the local cluster of pid {holder} (its lock: "
            f"{lock_path(path)}); stop that cluster (Ctrl+C in its terminal, or kill {holder}) "
            "or choose another --kubeconfig"
        )


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def kubeconfig_lock(path: Path) -> Iterator[str | None]:
    """Hold `<path>.lock` (flock, with our pid in it) while a cluster owns `path`.

    Yields the pid written by a crashed holder whose lock was taken over, else None. The
    kernel drops a flock when its process dies, so a SIGKILLed run's lock is free at once.
    `KubeconfigInUse` when a live process holds it.
    """
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        previous = os.read(fd, 64).decode(errors="replace").strip() or None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise KubeconfigInUse(path, previous or "unknown") from None
        try:
            # The holder we waited on may have unlinked the file we locked: lock the new one.
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield previous
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # still holding it: nobody can have taken it over meanwhile
        os.close(fd)
