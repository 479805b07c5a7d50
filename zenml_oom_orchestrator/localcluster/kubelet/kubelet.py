"""The node agent: registers a Node, runs the pods bound to it, serves their logs."""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import NotFound
from ..validation import parse_quantity
from .cgroup_detect import detect_backend
from .cgroup_probe import probe_join
from .cgroups import DEFAULT_PREFIX, CgroupBackend, new_cluster_id
from .events import record_event
from .faults import NodeFaults
from .informer import Informer
from .logs import read_log
from .node import register_node, set_node_ready_status
from .pod_worker import RESIZE_RETRY, PodWorker
from .podresources import TERMINAL_PHASES
from .status import ContainerRecord

log = logging.getLogger(__name__)


class Kubelet(NodeFaults):
    """Runs every container of the pods bound to `node_name` as a local process in its own
    memory cgroup, and reports them the way a real kubelet does.

    `cgroup_backend` is "auto", "v1", "v2", "systemd", "none" or a ready CgroupBackend.
    Tests give each cluster its own `cgroup_prefix` so concurrent runs never touch each other.
    """

    def __init__(
        self,
        store: Any,
        node_name: str = "local-node",
        memory: str | int = "8Gi",
        cpus: str | int | float = 2,
        work_dir: str | os.PathLike[str] | None = None,
        *,
        cgroup_backend: str | CgroupBackend = "auto",
        cgroup_prefix: str = DEFAULT_PREFIX,
        cluster_id: str | None = None,
        restart_backoff: tuple[float, float] = (0.2, 5.0),
        terminal_phase_delay: float = 0.3,
        image_pull_backoff: tuple[float, float] = (0.5, 5.0),
        image_pull_failures: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        default_cwd: str | None = None,
        max_pods: int = 110,
    ) -> None:
        self.store = store
        self.node_name = node_name
        self.memory = str(memory)
        self.cpus = str(cpus)
        for value in (self.memory, self.cpus):
            parse_quantity(value)  # ValueError early, not at registration
        self.max_pods = max_pods
        self.cluster_id = cluster_id or new_cluster_id()
        self.cgroup_prefix = cgroup_prefix
        self._backend_choice = cgroup_backend
        self.backend: CgroupBackend = None  # type: ignore[assignment]  # set by start()
        self.restart_backoff = restart_backoff
        # A real kubelet writes a container's terminated state one status update before the
        # pod's terminal phase (about 1 s later, once the pod worker has finished the pod).
        self.terminal_phase_delay = terminal_phase_delay
        self.image_pull_backoff = image_pull_backoff
        self.image_pull_failures: list[str] = list(image_pull_failures)
        self.base_env = {**(os.environ if inherit_env else {}), **(extra_env or {})}
        self.default_cwd = default_cwd or os.getcwd()
        self._work_dir_given = work_dir is not None
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self.dir: Path = Path()
        self.workers: dict[str, PodWorker] = {}
        self._lock = threading.RLock()
        self.ready = True
        self._informer: Informer | None = None
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Set up cgroups (cleaning crashed runs' leftovers), register the Node, run pods."""
        if self._started:
            return
        if isinstance(self._backend_choice, CgroupBackend):
            self.backend = self._backend_choice
            self.backend.setup()
            try:
                probe_join(self.backend)  # a pod that could not join is found now
            except BaseException:
                self.backend.teardown()
                raise
        else:
            self.backend = detect_backend(self._backend_choice, self.cgroup_prefix, self.cluster_id)
        if self._work_dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix=f"zenml-oom-kubelet-{self.node_name}-"))
        else:
            self.dir = self._work_dir / f"kubelet-{self.node_name}"
            self.dir.mkdir(parents=True, exist_ok=True)
        self.register_node()
        self._informer = Informer(
            self.store,
            "pods",
            self._on_pod,
            field_selector=f"spec.nodeName={self.node_name}",
            name=f"kubelet-{self.node_name}",
            on_sync=self._on_sync,
        )
        self._informer.start()
        self._informer.synced.wait(10)
        self._started = True

    def stop(self) -> None:
        """Kill every container, remove all cgroups and this kubelet's files."""
        if not self._started:
            return
        self._started = False
        if self._informer is not None:
            self._informer.stop()
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.post("stop")
        for w in workers:
            w.thread.join(10)
        self.backend.teardown()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Kubelet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- node --------------------------------------------------------------------------------
    @property
    def allocatable(self) -> dict[str, str]:
        return {"cpu": self.cpus, "memory": self.memory, "pods": str(self.max_pods)}

    def register_node(self) -> dict[str, Any]:
        return register_node(self.store, self.node_name, self.allocatable, self.backend.name)

    # -- pods --------------------------------------------------------------------------------
    def _on_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self.workers.get(uid)
            if event_type == "DELETED" or (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
                self._retry_deferred_resizes(uid)
            if event_type == "DELETED":
                self.workers.pop(uid, None)
                if worker is not None:
                    worker.pod_gone()
                shutil.rmtree(self.dir / "logs" / uid, ignore_errors=True)
                return
            if not self.ready:
                return  # the kubelet is gone: nothing on this node acts on the pod
            if worker is not None:
                if not worker.post("pod", pod) and pod["metadata"].get("deletionTimestamp"):
                    self.finalize_deletion(pod)
                return
            if pod["metadata"].get("deletionTimestamp"):
                self.finalize_deletion(pod)  # never started here: nothing to stop
                return
            if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES or not self.ready:
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
        worker.thread.start()

    def _retry_deferred_resizes(self, freed_by: str) -> None:
        """A pod ended or went: Deferred resizes of the others may fit now (kubelet retries)."""
        for uid, w in self.workers.items():
            if uid != freed_by and any(c.get("reason") == "Deferred" for c in w.resize_conditions):
                w.post(RESIZE_RETRY)

    def _on_sync(self, pods: list[dict[str, Any]]) -> None:
        """After a re-list: pods that went away while the watch was down are deleted here."""
        present = {p["metadata"]["uid"] for p in pods}
        with self._lock:
            gone = [w.pod for uid, w in self.workers.items() if uid not in present]
        for pod in gone:
            self._on_pod("DELETED", pod)

    def finalize_deletion(self, pod: dict[str, Any]) -> None:
        """The kubelet's final delete (grace 0) once nothing of the pod runs any more."""
        meta = pod["metadata"]
        try:
            self.store.delete(
                "pods",
                meta.get("namespace"),
                meta["name"],
                grace_period_seconds=0,
                preconditions={"uid": meta["uid"]},
            )
        except NotFound:
            pass
        except Exception:  # noqa: BLE001 - e.g. a precondition conflict: another pod now
            log.debug("final delete of %s skipped", meta["name"], exc_info=True)

    def get_secret(self, namespace: str) -> Callable[[str], Mapping[str, Any] | None]:
        def get(name: str) -> Mapping[str, Any] | None:
            try:
                return dict(self.store.get("secrets", namespace, name))
            except NotFound:
                return None

        return get

    def image_pull_fails(self, image: str) -> bool:
        return any(fnmatch.fnmatchcase(image, p) for p in self.image_pull_failures)

    def log_path(self, uid: str, container: str, run: int) -> Path:
        return self.dir / "logs" / uid / container / f"{run}.log"

    # -- events ------------------------------------------------------------------------------
    def record(
        self,
        pod: Mapping[str, Any],
        reason: str,
        message: str,
        type: str = "Normal",
        path: ContainerRecord | None = None,
    ) -> None:
        field_path = None
        if path is not None:
            group = "initContainers" if path.init else "containers"
            field_path = f"spec.{group}{{{path.name}}}"
        record_event(self.store, pod, reason, message, type, "kubelet", self.node_name, field_path)

    # -- logs --------------------------------------------------------------------------------
    def read_log(
        self,
        namespace: str,
        pod: str,
        container: str | None = None,
        previous: bool = False,
        tail_lines: int | None = None,
    ) -> str:
        """A container's log (stdout and stderr interleaved), as `kubectl logs` shows it."""
        return read_log(
            self.store, self.dir / "logs", namespace, pod, container, previous, tail_lines
        )

    # -- helpers for faults ------------------------------------------------------------------
    def worker_for(self, namespace: str, name: str) -> tuple[dict[str, Any], PodWorker | None]:
        pod = self.store.get("pods", namespace, name)
        with self._lock:
            return pod, self.workers.get(pod["metadata"]["uid"])

    def set_node_status(self, ready: bool) -> None:
        set_node_ready_status(self.store, self.node_name, ready)
