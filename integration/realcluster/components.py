"""One component of the running real tier stopped and started again, for the fault tests
(test_real_faults.py): the kubelet, containerd or kube-apiserver, found by the pid file that
up.sh wrote, and only if its environment says it belongs to this tier (REALK8S_STATEDIR, as
down.sh checks). Started again with the command line, environment and working directory it
had, its output appended to the same log, its new pid written to the same file: down.sh and
up.sh cannot tell it from the one up.sh started.

`stopped(...)` restarts it whatever happens in the block, and waits until the tier is whole
again (API server ready, node Ready, the controller manager acting on new objects), so a
failing test leaves the tier healthy for the next one.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

NODE = "realk8s-node"  # NODE_NAME of lib/control-plane-up.sh and lib/node-up.sh


@dataclass
class _Saved:
    argv: list[str]
    env: dict[str, str]
    cwd: str


class TierComponent:
    """A process of the real tier, by name: kubelet, containerd, kube-apiserver, ..."""

    def __init__(self, statedir: Path, name: str) -> None:
        self.statedir, self.name = statedir, name
        if name == "containerd":
            self.pidfile = statedir / "containerd" / "containerd.pid"
            self.log = statedir / "containerd" / "containerd.log"
        else:
            self.pidfile = statedir / "pids" / f"{name}.pid"
            self.log = statedir / "logs" / f"{name}.log"
        self._saved: _Saved | None = None
        self.stopped_at: float | None = None  # wall clock, for comparing with pod times
        self.ready_at: float | None = None  # started again, and the API server and node ready

    def pid(self) -> int | None:
        """The component's pid if it runs (and is this tier's), else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._ours(pid) else None

    def _ours(self, pid: int) -> bool:
        try:  # a zombie's environ reads empty
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"REALK8S_STATEDIR={self.statedir}".encode() in environ

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> float:
        """Signal it (SIGKILL after `timeout`) and wait until it is gone; the seconds that took."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"{self.name} is not running ({self.pidfile})")
        proc = Path(f"/proc/{pid}")
        environ = (proc / "environ").read_bytes().split(b"\0")
        self._saved = _Saved(
            argv=[a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0")[:-1]],
            env=dict(e.decode().split("=", 1) for e in environ if b"=" in e),
            cwd=os.readlink(proc / "cwd") if (proc / "cwd").is_dir() else "/",
        )
        started = time.monotonic()
        self.stopped_at = time.time()
        os.kill(pid, sig)
        while self._ours(pid):
            if time.monotonic() - started > timeout:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        return time.monotonic() - started

    def start(self) -> None:
        """Start it again as it was started before `stop`."""
        if self._saved is None:
            raise RuntimeError(f"{self.name} was not stopped by this helper")
        if self.pid() is not None:
            return
        saved = self._saved
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                saved.argv,
                env=saved.env,
                cwd=saved.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this test run, like up.sh's nohup
            )
        self.pidfile.write_text(f"{proc.pid}\n")


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `check` until it returns something true (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - e.g. the API server still starting
            last, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last error: {last})")


def node_ready(api_client: Any, node: str = NODE) -> bool:
    """The node's Ready condition is True (and no taint of an unreachable node is left)."""
    found = k8s.CoreV1Api(api_client).read_node(node, _request_timeout=5)
    ready = [c for c in found.status.conditions or [] if c.type == "Ready"]
    taints = {t.key for t in found.spec.taints or []}
    lost = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}
    return bool(ready and ready[0].status == "True" and not taints & lost)


def api_ready(api_client: Any) -> bool:
    api_client.call_api("/readyz", "GET", response_type="str", _request_timeout=5)
    return True


def controllers_caught_up(api_client: Any, timeout: float = 180) -> float:
    """A new namespace gets its default ServiceAccount and, deleted, goes: the controller
    manager's watches work again. After an API server restart its informers come back with
    backoff; until then a pod in a new namespace is refused (403: no ServiceAccount `default`)
    and a namespace takes minutes to delete. The seconds it took."""
    core = k8s.CoreV1Api(api_client)
    name = f"tier-probe-{secrets.token_hex(3)}"
    started = time.monotonic()
    core.create_namespace({"metadata": {"name": name}})
    try:
        wait_for(
            lambda: core.read_namespaced_service_account("default", name),
            timeout,
            "the controller manager to make a new namespace's ServiceAccount",
        )
    finally:
        core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except k8s.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout, "the controller manager to delete a namespace")
    return time.monotonic() - started


@contextmanager
def stopped(
    cluster: Any,
    name: str,
    sig: signal.Signals = signal.SIGTERM,
    ready_timeout: float = 180,
) -> Iterator[TierComponent]:
    """`name` stopped for the block, then started again whatever happened in it; on the way
    out waits for the API server and the node to be ready again."""
    component = TierComponent(Path(cluster.kubeconfig_path).parent, name)
    component.stop(sig)
    try:
        yield component
    finally:
        component.start()
        with cluster.api_client() as api:
            wait_for(lambda: api_ready(api), ready_timeout, "the API server to be ready")
            wait_for(lambda: node_ready(api), ready_timeout, f"node {NODE} to be Ready")
            component.ready_at = time.time()
            controllers_caught_up(api, ready_timeout)


def restart(cluster: Any, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop `name` and start it again at once (a crash and its supervisor's restart)."""
    with stopped(cluster, name, sig):
        pass


@contextmanager
def healthy_peer_node(api_client: Any, name: str = "realk8s-peer") -> Iterator[str]:
    """A second node that stays Ready (this thread renews its Lease, as a kubelet does) but
    takes no pods (cordoned). With the only node NotReady the node lifecycle controller
    takes the zone for fully disrupted (a partition of the control plane, not of the node)
    and evicts nothing: a single real node can never be evicted from. Beside a healthy peer
    it taints the silent node NoExecute and the taint manager evicts as on any cluster."""
    core = k8s.CoreV1Api(api_client)
    leases = k8s.CoordinationV1Api(api_client)
    now = lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())  # noqa: E731
    core.create_node({"metadata": {"name": name}, "spec": {"unschedulable": True}})
    stop = threading.Event()
    try:
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
        status = {
            "capacity": {"cpu": "1", "memory": "1Gi", "pods": "10"},
            "allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"},
            "conditions": [{**ready, "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
        }
        core.patch_node_status(name, {"status": status})
        leases.create_namespaced_lease(
            "kube-node-lease",
            {
                "metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now()},
            },
        )

        def renew() -> None:
            while not stop.wait(5):
                with suppress(Exception):  # the API server may be away a moment
                    leases.patch_namespaced_lease(
                        name, "kube-node-lease", {"spec": {"renewTime": now()}}
                    )

        threading.Thread(target=renew, name="peer-node-lease", daemon=True).start()
        yield name
    finally:
        stop.set()
        for delete in (
            lambda: leases.delete_namespaced_lease(name, "kube-node-lease"),
            lambda: core.delete_node(name),
        ):
            try:
                delete()
            except k8s.ApiException as exc:
                if exc.status != 404:
                    raise
