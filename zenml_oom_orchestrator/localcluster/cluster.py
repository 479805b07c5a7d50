"""`LocalCluster`: one object that starts and stops the whole local Kubernetes.

It wires the Store, the API server, the scheduler, the kubelet and the job controller, waits
until a client could really use them, and on stop leaves nothing behind: no pod processes, no
cgroups, no temp dirs. A run that crashed (SIGKILL) is cleaned up by the next start: its cgroup
tree by the kubelet, its temp dir here; both are named after the owner's pid and start time so
a live sibling cluster (another test session) is never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from .apiserver import ApiServer
from .jobcontroller import JobController
from .kubeconfig import DEFAULT_CONTEXT, write_kubeconfig
from .kubelet import Kubelet
from .kubelet.cgroups import new_cluster_id, owner_alive
from .nodelifecycle import NodeLifecycleController
from .scheduler import Scheduler
from .store import Store
from .validation import parse_quantity

log = logging.getLogger(__name__)

CONTEXT = DEFAULT_CONTEXT
NODE_NAME = "oom-local-node"
TEMP_PREFIX = "zenml-oom-cluster-"


def clean_stale_work_dirs(parent: Path | None = None) -> list[Path]:
    """Remove temp dirs of clusters whose owner process is gone (a crashed run's)."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for path in parent.glob(f"{TEMP_PREFIX}*"):
        if path.is_dir() and owner_alive(path.name[len(TEMP_PREFIX) :]) is False:
            log.warning("removing stale local-cluster dir %s (its owner is gone)", path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class LocalCluster:
    """A local Kubernetes cluster whose pods are real processes in memory cgroups.

    Use it as a context manager (or call `start()` / `stop()`)::

        with LocalCluster(memory="4Gi") as cluster:
            api = kubernetes.client.CoreV1Api(cluster.api_client())

    `work_dir` holds the kubeconfig and the pods' files; without it a temp dir is made and
    removed on stop. `faults` is the API server's fault injection (`apiserver.faults`),
    `history_limit` the watch history per resource before `410 Expired`,
    `image_pull_failures` the image patterns whose pulls fail, `job_backoff` the job
    controller's first pod-replacement delay in seconds.
    """

    def __init__(
        self,
        memory: str = "8Gi",
        cpus: float = 2,
        work_dir: str | Path | None = None,
        faults: Any = None,
        history_limit: int = 10_000,
        image_pull_failures: tuple[str, ...] | list[str] = (),
        job_backoff: float = 1.0,
        node_name: str = NODE_NAME,
        ready_timeout: float = 30.0,
    ) -> None:
        parse_quantity(memory)  # ValueError now rather than in a thread later
        self.memory = memory
        self.cpus = cpus
        self.faults = faults
        self.history_limit = history_limit
        self.image_pull_failures = tuple(image_pull_failures)
        self.job_backoff = job_backoff
        self.node_name = node_name
        self.ready_timeout = ready_timeout
        self.cluster_id = new_cluster_id()
        self._given_work_dir = Path(work_dir) if work_dir is not None else None
        self._own_work_dir: Path | None = None
        self._lock = threading.RLock()
        self._started: list[Any] = []  # components to stop, in start order
        self.store: Store | None = None
        self.api_server: ApiServer | None = None
        self.kubelet: Kubelet | None = None
        self.scheduler: Scheduler | None = None
        self.job_controller: JobController | None = None
        self.node_lifecycle: NodeLifecycleController | None = None
        self.kubeconfig_path: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        """Start every part and return once a client can use the cluster."""
        with self._lock:
            if self.store is not None:
                return self
            # A script that forgets stop() still kills its pods at interpreter exit.
            atexit.register(self.stop)
            try:
                self._start()
            except BaseException:
                # Also on KeyboardInterrupt: a half-started cluster must not leak processes.
                self.stop()
                raise
        return self

    def _start(self) -> None:
        clean_stale_work_dirs()
        if self._given_work_dir is None:
            self._own_work_dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{self.cluster_id}-"))
        work_dir = self.work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(history_size=self.history_limit)
        self.kubelet = Kubelet(
            self.store,
            self.node_name,
            memory=self.memory,
            cpus=self.cpus,
            work_dir=work_dir,
            image_pull_failures=self.image_pull_failures,
            cluster_id=self.cluster_id,
        )
        self._start_part(self.kubelet)
        self.scheduler = Scheduler(self.store)
        self._start_part(self.scheduler)
        self.job_controller = JobController(self.store, pod_backoff=self.job_backoff)
        self._start_part(self.job_controller)
        self.node_lifecycle = NodeLifecycleController(self.store)
        self._start_part(self.node_lifecycle)
        self.api_server = ApiServer(
            self.store, faults=self.faults, log_reader=self.kubelet.read_log
        )
        self._start_part(self.api_server)
        self.kubeconfig_path = work_dir / "kubeconfig"
        write_kubeconfig(self.kubeconfig_path, self.api_server.url, context=CONTEXT)
        # The stand-in for the ServiceAccount token a real kubelet mounts: a pod's client finds
        # this cluster's kubeconfig, whatever the submitting process had in its environment.
        self.kubelet.base_env["KUBECONFIG"] = str(self.kubeconfig_path)
        self._wait_ready()

    def _start_part(self, part: Any) -> None:
        self._started.append(part)
        part.start()

    def _wait_ready(self) -> None:
        """Ready = the node reports Ready and the API server answers HTTP."""
        assert self.store is not None and self.api_server is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self._node_ready() and self._http_ok(self.api_server.url + "/version"):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"local cluster not ready after {self.ready_timeout} s")
            time.sleep(0.05)

    def _node_ready(self) -> bool:
        assert self.store is not None
        try:
            node = self.store.get("nodes", None, self.node_name)
        except Exception:  # NotFound until the kubelet registers
            return False
        conditions = (node.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    @staticmethod
    def _http_ok(url: str) -> bool:
        # No proxy: a corporate HTTP(S)_PROXY must not swallow 127.0.0.1.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """Stop everything in reverse start order and remove what was created. Idempotent."""
        interrupted: BaseException | None = None
        with self._lock:
            atexit.unregister(self.stop)
            while self._started:
                part = self._started.pop()
                try:
                    part.stop()
                except Exception:
                    # Keep going: the kubelet's stop (processes, cgroups) must run regardless.
                    log.exception("local cluster: stopping %s failed", type(part).__name__)
                except BaseException as e:  # a second Ctrl+C: finish cleaning, then raise it
                    interrupted = interrupted or e
            if self.kubeconfig_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.kubeconfig_path.unlink()
            if self._own_work_dir is not None:
                shutil.rmtree(self._own_work_dir, ignore_errors=True)
                self._own_work_dir = None
            self.store = self.api_server = self.kubelet = None
            self.scheduler = self.job_controller = None
            self.node_lifecycle = None
        if interrupted is not None:
            raise interrupted

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- access ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.store is not None

    @property
    def work_dir(self) -> Path:
        path = self._given_work_dir or self._own_work_dir
        if path is None:
            raise RuntimeError("the local cluster has not been started")
        return path

    @property
    def url(self) -> str:
        """The API server's base URL, e.g. `http://127.0.0.1:41234`."""
        if self.api_server is None:
            raise RuntimeError("the local cluster is not running")
        return str(self.api_server.url)

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` configured from this cluster's kubeconfig."""
        from kubernetes import config  # the client is slow to import; most callers use HTTP

        if self.kubeconfig_path is None or not self.running:
            raise RuntimeError("the local cluster is not running")
        return config.new_client_from_config(config_file=str(self.kubeconfig_path), context=CONTEXT)
