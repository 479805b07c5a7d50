"""Pytest plugin: a real local cluster for tests, and helpers to wait on it.

Register it from a conftest (`pytest_plugins = ["zenml_oom_orchestrator.localcluster.testing"]`)
and use the fixtures:

- `local_cluster` (session): a started `LocalCluster` (8Gi, 2 CPUs), stopped at the end;
- `cluster_namespace` (function): a fresh namespace name in it, deleted with its contents after;
- `cluster` (session): the cluster the tests use, `local_cluster` unless a conftest overrides it;
- `k8s_api_client` (session): a `kubernetes.client.ApiClient` for it.

While the session cluster runs, SIGTERM raises KeyboardInterrupt, so a killed test run still
tears the cluster down (pytest runs finalizers on KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .errors import NotFound

if TYPE_CHECKING:  # imported when the fixture runs: unit tests need only `wait_for`
    from .cluster import LocalCluster

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy and return that; AssertionError
    after `timeout` seconds (the message names `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def pids_with(marker: str) -> list[int]:
    """Live processes whose command line contains `marker`: tag a pod's command with a unique
    argument to find its processes, and to prove they are gone after a stop."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue  # exited meanwhile
            if marker.encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt (in the main thread), so a killed test
    run still runs the finalizers that stop what a session fixture started."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """A started local cluster shared by the session."""
    from .cluster import LocalCluster

    with sigterm_interrupts(), LocalCluster(memory="8Gi", cpus=2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster(local_cluster: LocalCluster) -> Any:
    """The session's cluster (`.kubeconfig_path`, `.api_client()`): the local one; a conftest
    may override it to run the same tests on another cluster."""
    return local_cluster


@pytest.fixture(scope="session")
def k8s_api_client(cluster: Any) -> Iterator[Any]:
    """A `kubernetes.client.ApiClient` configured from the session cluster's kubeconfig."""
    client = cluster.api_client()
    yield client
    client.close()


@pytest.fixture
def cluster_namespace(local_cluster: LocalCluster) -> Iterator[str]:
    """A namespace of its own for one test; it and everything in it go afterwards."""
    store = local_cluster.store
    assert store is not None
    name = f"test-{secrets.token_hex(4)}"
    store.create("namespaces", {"metadata": {"name": name}})
    yield name
    if local_cluster.store is not store:
        return  # the cluster was stopped meanwhile
    try:
        store.delete("namespaces", None, name)
    except NotFound:
        return
    # Deletion waits for the pods' processes to stop; don't let them pile up across tests.
    wait_for(lambda: _gone(store, name), timeout=30, what=f"namespace {name} to go")


def _gone(store: Any, namespace: str) -> bool:
    try:
        store.get("namespaces", None, namespace)
    except NotFound:
        return True
    return False


@contextlib.contextmanager
def healthy_peer_node(store: Any, name: str = "peer-node") -> Iterator[str]:
    """A second Node that stays Ready but takes no pods (cordoned), as the real tier's
    `healthy_peer_node`: with every node NotReady the node lifecycle controller takes it for a
    partition of the control plane and evicts nothing; beside a Ready peer it taints the
    silent node NoExecute and the taint manager evicts."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
    store.create(
        "nodes",
        {
            "metadata": {"name": name},
            "spec": {"unschedulable": True},
            "status": {
                "capacity": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                "allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                "conditions": [{**ready, "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}],
            },
        },
    )
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            store.delete("nodes", None, name)
