"""Helpers for tests of the node side: a Store with a kubelet and scheduler, pod bodies."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..scheduler import Scheduler
from ..store import Store
from .kubelet import Kubelet

# Touch every page so the memory is really charged to the cgroup.
ALLOCATE = (
    "import sys; n = int(sys.argv[1]) * 1024 * 1024; b = bytearray(n); "
    "b[::4096] = b'x' * len(range(0, n, 4096)); print('allocated', sys.argv[1], 'MiB')"
)


def allocate_command(mib: int) -> list[str]:
    """A container command that allocates and touches `mib` MiB, then exits 0."""
    return [sys.executable, "-c", ALLOCATE, str(mib)]


def pod_body(
    name: str,
    command: list[str],
    memory_limit: str | None = None,
    restart_policy: str = "Never",
    node: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A one-container pod ("main"); extra `spec` keys are merged into the pod spec."""
    container: dict[str, Any] = {"name": "main", "image": "python:3.11", "command": command}
    if memory_limit:
        container["resources"] = {"limits": {"memory": memory_limit}}
    body: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"restartPolicy": restart_policy, "containers": [container], **spec},
    }
    if node:
        body["spec"]["nodeName"] = node
    return body


@contextmanager
def running_node(
    work_dir: Path,
    memory: str = "4Gi",
    cpus: int = 2,
    scheduler: bool = True,
    **kubelet_args: Any,
) -> Iterator[tuple[Store, Kubelet]]:
    """A Store with one kubelet (and a scheduler) whose cgroups use a prefix of their own, so
    concurrent test runs never see each other's trees."""
    store = Store()
    kubelet_args.setdefault("cgroup_prefix", f"zenml-oom-test-{secrets.token_hex(4)}")
    kubelet_args.setdefault("restart_backoff", (0.05, 0.2))
    kubelet_args.setdefault("image_pull_backoff", (0.05, 0.2))
    kubelet = Kubelet(store, "node-1", memory, cpus, work_dir, **kubelet_args)
    sched = Scheduler(store) if scheduler else None
    kubelet.start()
    try:
        if sched is not None:
            sched.start()
        yield store, kubelet
    finally:
        if sched is not None:
            sched.stop()
        kubelet.stop()


def wait_pod(
    store: Store, name: str, phases: tuple[str, ...] = ("Succeeded", "Failed"), timeout: float = 20
) -> dict[str, Any]:
    """Wait until pod `name` (namespace default) is in one of `phases`; return it."""
    deadline = time.monotonic() + timeout
    while True:
        pod = store.get("pods", "default", name)
        if (pod.get("status") or {}).get("phase") in phases:
            return pod
        if time.monotonic() > deadline:
            raise AssertionError(f"pod {name} not in {phases} after {timeout} s: {pod['status']}")
        time.sleep(0.02)


def events_for(store: Store, name: str) -> list[dict[str, Any]]:
    items, _ = store.list("events", "default")
    return [e for e in items if e["involvedObject"].get("name") == name]


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie not yet reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
