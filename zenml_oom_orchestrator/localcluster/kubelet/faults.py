"""Node faults for tests: lost pods, a NotReady node, node-pressure eviction, bad images.

Each runs on the pod's own worker thread (`PodWorker.call`), so it never races the worker's
status writes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .podresources import container_resource, format_bytes
from .status import ContainerRecord, waiting

if TYPE_CHECKING:
    from .cgroups import CgroupBackend
    from .pod_worker import PodWorker


class NodeFaults:
    """Mixed into Kubelet: the public fault methods."""

    if TYPE_CHECKING:  # provided by Kubelet
        store: Any
        node_name: str
        ready: bool
        image_pull_failures: list[str]
        workers: dict[str, PodWorker]
        backend: CgroupBackend
        _lock: threading.RLock

        def worker_for(
            self, namespace: str, name: str
        ) -> tuple[dict[str, Any], PodWorker | None]: ...
        def set_node_status(self, ready: bool) -> None: ...
        def _on_pod(self, event_type: str, pod: dict[str, Any]) -> None: ...
        def record(self, pod: Any, reason: str, message: str, type: str = "Normal") -> None: ...

    def lose_pod(self, namespace: str, name: str) -> None:
        """As if the pod's node vanished: its processes die and the pod leaves the store
        without any final status (what pod GC does for pods of a deleted node)."""
        pod, worker = self.worker_for(namespace, name)
        if worker is not None:
            with contextlib.suppress(RuntimeError):  # already finished
                worker.call(worker.freeze)
            worker.thread.join(10)
        with contextlib.suppress(NotFound):
            self.store.delete(
                "pods",
                namespace,
                name,
                grace_period_seconds=0,
                preconditions={"uid": pod["metadata"]["uid"]},
            )

    def set_node_ready(self, ready: bool = True) -> None:
        """NotReady: the node is lost (its kubelet and its pods' processes die) and, as the
        node lifecycle controller does once the node stopped reporting, its conditions go
        Unknown with the unreachable taints. Nobody writes the pods' status: each stays as the
        kubelet last wrote it (Running) until the control plane acts on it (MarkPodsNotReady,
        taint eviction: `localcluster/nodelifecycle.py`). Ready again: a kubelet is back; it
        confirms the deletion of pods deleted meanwhile and runs the pods bound since."""
        with self._lock:
            self.ready = ready
            workers = [w for w in self.workers.values() if not w.finished]
        self.set_node_status(ready)
        if not ready:
            for w in workers:
                with contextlib.suppress(RuntimeError):
                    w.call(w.freeze)
            return
        pods, _ = self.store.list("pods", field_selector=f"spec.nodeName={self.node_name}")
        for pod in pods:
            self._on_pod("ADDED", pod)  # the kubelet back: terminating pods go, new ones start

    def evict_pod(self, namespace: str, name: str, message: str | None = None) -> dict[str, Any]:
        """Node-pressure eviction with a hard threshold (grace 0): containers are killed, the
        pod ends Failed with `reason: Evicted` and a DisruptionTarget condition
        (TerminationByKubelet), with the eviction manager's message. Returns the pod."""
        _, worker = self.worker_for(namespace, name)
        if worker is None:
            raise NotFound(f'pod "{name}" is not running on node {self.node_name}')

        def evict() -> None:
            text = message or _pressure_message(self, worker)
            worker.set_disruption_target("TerminationByKubelet", text)
            self.record(worker.pod, "Evicted", text, "Warning")
            worker.terminate("Failed", "Evicted", text)

        worker.call(evict)
        worker.thread.join(10)
        return dict(self.store.get("pods", namespace, name))

    def fail_image_pulls(self, *patterns: str) -> None:
        """Images matching any glob fail to pull from now on (ErrImagePull/ImagePullBackOff)."""
        self.image_pull_failures.extend(patterns)


def _pressure_message(kubelet: NodeFaults, worker: PodWorker) -> str:
    """The eviction manager's newer format (note the trailing space, as real ones have)."""
    parts = []
    for rec in worker.main:
        usage = kubelet.backend.memory_usage(rec.cgroup)
        request = container_resource(rec.spec, "requests", "memory") or 0
        parts.append(
            f"Container {rec.name} was using {usage // 1024}Ki, request is "
            f"{format_bytes(request)}, has larger consumption of memory. "
        )
    return (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 0Ki. "
        + "".join(parts)
    )


def image_pull_failed(worker: PodWorker, rec: ContainerRecord, image: str) -> None:
    """ErrImagePull and ImagePullBackOff alternate, as kubelet's image back-off shows them;
    with `imagePullPolicy: Never` a missing image is ErrImageNeverPull, with no pull at all."""
    k = worker.kubelet
    if rec.spec.get("imagePullPolicy") == "Never":
        text = f'Container image "{image}" is not present with pull policy of Never'
        k.record(worker.pod, "ErrImageNeverPull", text, "Warning", path=rec)
        k.record(worker.pod, "Failed", "Error: ErrImageNeverPull", "Warning", path=rec)
        rec.state = waiting("ErrImageNeverPull", text)
        rec.next_start = time.monotonic() + k.image_pull_backoff[1]
        return
    error = (
        f'failed to pull and unpack image "{image}": failed to resolve reference '
        f'"{image}": {image}: not found'
    )
    rec.pull_attempts += 1
    attempt = rec.pull_attempts
    if attempt % 2:
        k.record(worker.pod, "Pulling", f'Pulling image "{image}"', path=rec)
        k.record(
            worker.pod, "Failed", f'Failed to pull image "{image}": {error}', "Warning", path=rec
        )
        k.record(worker.pod, "Failed", "Error: ErrImagePull", "Warning", path=rec)
        rec.state = waiting("ErrImagePull", error)
    else:
        k.record(worker.pod, "BackOff", f'Back-off pulling image "{image}"', path=rec)
        k.record(worker.pod, "Failed", "Error: ImagePullBackOff", "Warning", path=rec)
        rec.state = waiting(
            "ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {error}'
        )
    lo, hi = k.image_pull_backoff
    rec.next_start = time.monotonic() + min(hi, lo * 2 ** ((attempt - 1) // 2))
