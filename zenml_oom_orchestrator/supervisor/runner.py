"""`Supervisor`: wires the API wrapper, the informer, the work queue and the engine, and runs
the single worker loop that is the only writer of step and run outcomes."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from zenml_oom_orchestrator.supervisor import naming
from zenml_oom_orchestrator.supervisor.cluster import (
    ClusterApi,
    describe_error,
    forbidden_advice,
    is_forbidden,
)
from zenml_oom_orchestrator.supervisor.engine import Engine
from zenml_oom_orchestrator.supervisor.informer import PodInformer
from zenml_oom_orchestrator.supervisor.observer import Observer
from zenml_oom_orchestrator.supervisor.resume import attempt_of, resume
from zenml_oom_orchestrator.supervisor.spec import RunResult, RunSpec, StepStatus
from zenml_oom_orchestrator.supervisor.workqueue import WorkQueue
from zenml_oom_orchestrator.supervisor.writes import URGENT, Writes

log = logging.getLogger(__name__)
WRITERS = 8  # API writer threads (creates, results, Events) per supervisor


class SupervisorError(RuntimeError):
    """The supervisor could not run (e.g. the API stayed unreachable at start)."""


class Supervisor:
    """Runs one RunSpec to the end: every step terminal, the run's outcome computed.

    `run()` blocks in the calling thread, which becomes the single writer; `stop()` may be
    called from any thread (or a signal handler) and makes `run()` return a stopped result.
    """

    def __init__(
        self, api_client: k8s.ApiClient, run_spec: RunSpec, observer: Observer | None = None
    ) -> None:
        self.spec = run_spec
        self.cluster = ClusterApi(api_client, run_spec.namespace, run_spec.api_retry)
        self.queue = WorkQueue(max_keys=max(64, 4 * len(run_spec.steps)))
        self.informer = PodInformer(
            self.cluster,
            naming.run_selector(run_spec.run_id),
            self._on_pod_change,
            watch_timeout=run_spec.watch_timeout_seconds,
        )
        self.engine = Engine(run_spec, self.cluster, self.informer, self.queue, observer)
        self.engine.writes = Writes(self.queue, writer_threads(api_client))
        self._stop = threading.Event()
        self.result: RunResult | None = None

    def _on_pod_change(self, pod: dict[str, Any]) -> None:
        # Informer thread: only enqueue. The worker reads the cache when it gets the key.
        # A step with an attempt in flight goes ahead of never-started steps.
        found = attempt_of(pod)
        if found is not None and found[0] in self.engine.states:
            self.queue.add(found[0], URGENT)

    def stop(self) -> None:
        """Delete the attempts in flight and end the run stopped. Thread-safe."""
        self._stop.set()
        self.engine.request_stop()

    def status(self) -> dict[str, tuple[StepStatus, str]]:
        """A progress snapshot: step → (status, message). Read-only, any thread."""
        return {n: (s.status, s.message) for n, s in list(self.engine.states.items())}

    def run(self, sync_timeout: float = 60.0) -> RunResult:
        try:
            sweep_expired(self.cluster)
        except Exception as exc:  # noqa: BLE001 - housekeeping must not block a run
            log.warning("could not sweep expired attempt pods: %s", describe_error(exc))
        self.informer.start()
        try:
            self._wait_synced(sync_timeout)
            restarted = self.cluster.mark_run_started(self.spec.run_id, self.spec.owner)
            resumed = resume(self.engine, self.informer.items(), restarted)
            following = {st.current_pod for st in self.engine.states.values()}
            for pod in self.informer.items():  # recorded already: keep only their names
                if pod["metadata"]["name"] not in following:
                    self.informer.forget(pod["metadata"]["name"])
            if resumed:
                log.info("run %s: resumed %d steps from the cluster", self.spec.run_id, resumed)
            if self._stop.is_set():
                self.engine.request_stop()
            self._work()
            result = self.engine.run_result()
            self._expire_finished()
        finally:
            self.informer.stop()
            self.queue.shut_down()
        self.result = result
        self.engine.hook("on_run_finished", result)
        return result

    def _wait_synced(self, timeout: float) -> None:
        """Until the pod cache has its first list; a 401/403 ends the wait at once."""
        deadline = time.monotonic() + timeout
        while not self.informer.wait_synced(min(0.5, max(0.0, deadline - time.monotonic()))):
            error = self.informer.last_error
            if isinstance(error, ApiException) and is_forbidden(error):
                raise SupervisorError(forbidden_advice(error, self.spec.namespace))
            if time.monotonic() >= deadline:
                raise SupervisorError(
                    f"could not list the run's pods within {timeout:g}s: {describe_error(error)}"
                )

    def _work(self) -> None:
        engine, queue = self.engine, self.queue
        engine.enqueue_idle()
        for name, st in engine.states.items():
            if st.current is not None:
                queue.add(name)
        resync = self.spec.resync_seconds
        last_resync = time.monotonic()
        engine.writes.start()
        try:
            self._loop(resync, last_resync)
        finally:
            engine.writes.stop()

    def _loop(self, resync: float, last_resync: float) -> None:
        engine, queue = self.engine, self.queue
        while not engine.all_terminal():
            key = queue.get(timeout=resync)
            if time.monotonic() - last_resync >= resync:
                # Timers are the main path; this catches what a lost timer or a silent
                # node would leave waiting. It reads the cache only.
                last_resync = time.monotonic()
                for name, st in engine.states.items():
                    if not st.status.terminal:
                        queue.add(name)
            if key is None:
                continue
            assert isinstance(key, str)
            try:
                engine.reconcile(key)
                queue.forget(key)
            except Exception as exc:  # noqa: BLE001 - one step's trouble must not end the run
                if is_forbidden(exc):  # permanent: say what to change now, not after backoff
                    assert isinstance(exc, ApiException)
                    advice = forbidden_advice(exc, self.spec.namespace)
                    log.error("step %s: %s", key, advice)
                    engine.give_up_on(key, advice)
                    continue
                log.warning("step %s: %s (will retry)", key, exc, exc_info=True)
                if not queue.add_rate_limited(key):
                    engine.give_up_on(key, f"the supervisor kept failing on this step: {exc}")
            finally:
                queue.done(key)

    def _expire_finished(self) -> None:
        """Per finished_ttl_seconds: 0 deletes finished attempts now; N marks them to expire
        (swept by `sweep_expired`); None leaves them to the owner's cascade."""
        ttl = self.spec.finished_ttl_seconds
        if ttl is None:
            return
        expires = datetime.fromtimestamp(time.time() + ttl, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        for name in self.informer.names():
            try:
                if ttl == 0:
                    self.cluster.delete_pod(name)
                else:
                    self.cluster.annotate_pod(name, {naming.ANN_EXPIRES: expires})
            except Exception as exc:  # noqa: BLE001 - cleanup is best effort
                log.warning("could not expire pod %s: %s", name, exc)


def writer_threads(api_client: k8s.ApiClient) -> int:
    """API writer threads: up to WRITERS, leaving the connection pool one connection for the
    watch and one for the worker's own reads (urllib3 would open and drop extra ones)."""
    pool = getattr(api_client.configuration, "connection_pool_maxsize", None) or 4
    return max(1, min(WRITERS, pool - 2))


def sweep_expired(cluster: ClusterApi) -> list[str]:
    """Delete finished attempt pods (of any run in the namespace) whose expires-at passed."""
    pods, _ = cluster.list_pods(f"{naming.LABEL_MANAGED_BY}={naming.MANAGED_BY}")
    now = time.time()
    deleted = []
    for pod in pods:
        stamp = (pod["metadata"].get("annotations") or {}).get(naming.ANN_EXPIRES)
        if not stamp:
            continue
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        if when <= now and cluster.delete_pod(pod["metadata"]["name"]):
            deleted.append(pod["metadata"]["name"])
    return deleted
