"""The Job controller: pods from the Job template, retries, failure policy, deadlines, TTL.

Watch-driven like kube-controller-manager's: Job and Pod events put a Job's key on a work
queue and one worker syncs it from the Store (in-process, so always current). Deadlines, the
pod backoff and `ttlSecondsAfterFinished` are delayed re-queues of that one key, never scans.
How pods are counted is in `jobstatus`; the rules read off the spec are in `jobspec`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from .errors import AlreadyExists, ApiError, NotFound
from .jobspec import (
    FAILURE_TARGET,
    FINAL_CONDITION,
    SUCCESS_CRITERIA_MET,
    TERMINAL_PHASES,
    controller_ref,
    finished_condition,
    generate_pod_name,
    is_ready,
    parse_time,
    pod_from_template,
    selector_string,
    set_condition,
    true_condition,
)
from .jobstatus import (
    JobMemory,
    Tally,
    count_pods,
    is_complete,
    job_failure,
    ttl_expiry,
    uid_of,
    wanted_active,
)
from .keyqueue import KeyQueue  # deduplicated keys, one worker per key
from .kubelet.events import now as now_rfc3339
from .kubelet.events import record_event
from .kubelet.informer import Informer

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, job name)
COMPONENT = "job-controller"


class JobController:
    """Run batch/v1 Jobs against a Store: `start()`, then `stop()`.

    `pod_backoff` is the delay before replacing the first failed pod, doubled for each further
    failure in a row up to `pod_backoff_max` (kube uses 10 s and 6 min; a local cluster wants
    quick retries).
    """

    def __init__(
        self,
        store: Any,
        *,
        pod_backoff: float = 1.0,
        pod_backoff_max: float = 30.0,
        create_retry: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.pod_backoff = pod_backoff
        self.pod_backoff_max = pod_backoff_max
        self.create_retry = create_retry
        self._clock = clock
        self._queue = KeyQueue()
        self._lock = threading.Lock()  # guards _memory (the pod informer writes `deleted`)
        self._memory: dict[Key, JobMemory] = {}
        self._informers: list[Informer] = []
        self._worker_thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the job and pod informers and the worker thread."""
        self._queue = KeyQueue()
        self._informers = [
            Informer(self.store, "jobs", self._on_job, name="job-controller-jobs"),
            Informer(self.store, "pods", self._on_pod, name="job-controller-pods"),
        ]
        for informer in self._informers:
            informer.start()
        self._worker_thread = threading.Thread(
            target=self._worker, name="job-controller", daemon=True
        )
        self._worker_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the informers and the worker; a sync in progress finishes first."""
        self._queue.shut_down()
        for informer in self._informers:
            informer.stop(timeout)
        if self._worker_thread is not None:
            self._worker_thread.join(timeout)
        self._informers, self._worker_thread = [], None

    # -- events ------------------------------------------------------------------------------

    def _on_job(self, etype: str, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        self._queue.add((meta.get("namespace", ""), meta["name"]))

    def _on_pod(self, etype: str, pod: dict[str, Any]) -> None:
        ref = controller_ref(pod)
        if ref is None:
            return
        key = (pod["metadata"].get("namespace", ""), ref["name"])
        if etype == "DELETED":
            with self._lock:
                mem = self._memory.get(key)
                if mem is not None and mem.uid == ref.get("uid"):
                    mem.deleted[uid_of(pod)] = pod
        self._queue.add(key)

    # -- worker ------------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            try:
                self._sync(cast(Key, key))
                self._queue.forget(key)
            except Exception:
                # One bad Job must not stop the others; look again later, with backoff.
                log.exception("job controller: sync of %s failed", key)
                self._queue.add_rate_limited(key)
            finally:
                self._queue.done(key)

    def _wake_at(self, key: Key, when: float) -> None:
        """Sync `key` again at wall-clock time `when` (the queue keeps the earliest per key)."""
        self._queue.add_after(key, when - self._clock() + 0.01)

    def _sync(self, key: Key) -> None:
        namespace, name = key
        try:
            job = self.store.get("jobs", namespace, name)
        except NotFound:
            with self._lock:
                self._memory.pop(key, None)
            return
        with self._lock:
            mem = self._memory.get(key)
            if mem is None or mem.uid != uid_of(job):  # new, or a new Job under the same name
                mem = self._memory[key] = JobMemory(uid=uid_of(job))
            gone, mem.deleted = mem.deleted, {}
        if finished_condition(job) is not None:
            mem.known.clear()
            self._expire_after_ttl(key, job)
            return
        now = self._clock()
        tally = count_pods(job, mem, self._owned_pods(job), gone, now)
        if tally.next_check is not None:
            self._wake_at(key, tally.next_check)
        status = copy.deepcopy(job.get("status") or {})
        spec = job["spec"]
        succeeded = true_condition(job, SUCCESS_CRITERIA_MET) is not None
        failure = None if succeeded else job_failure(job, tally, now)
        if failure is not None:
            job = self._finish_job(job, mem, tally, status, FAILURE_TARGET, *failure)
        elif succeeded or is_complete(spec, tally):
            message = "Reached expected number of succeeded pods"
            job = self._finish_job(
                job, mem, tally, status, SUCCESS_CRITERIA_MET, "CompletionsReached", message
            )
        elif spec.get("suspend"):
            self._delete_pods(job, mem, tally.active)
            tally.active = []
            set_condition(
                status, "Suspended", "True", "JobSuspended", "Job suspended", now_rfc3339()
            )
        else:
            self._run(key, job, mem, tally, status, now)
        self._write_status(job, status, tally)
        done = {**job, "status": status}
        if finished_condition(done) is not None:
            self._expire_after_ttl(key, done)

    def _owned_pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        selector = selector_string(job["spec"].get("selector"))
        # Shared snapshots, never mutated here: no copy per pod per sync.
        items, _ = self.store.list_shared(
            "pods", job["metadata"]["namespace"], label_selector=selector
        )
        uid = uid_of(job)
        return [p for p in items if (controller_ref(p) or {}).get("uid") == uid]

    def _finish_job(
        self,
        job: dict[str, Any],
        mem: JobMemory,
        tally: Tally,
        status: dict[str, Any],
        interim: str,
        reason: str,
        message: str,
    ) -> dict[str, Any]:
        """End the Job as kube 1.35's controller does: the interim condition (FailureTarget,
        SuccessCriteriaMet) in a status write of its own, then the final one (Failed,
        Complete) once none of its pods is still terminating. Returns the Job as written."""
        self._finish(job, mem, tally)
        if true_condition({"status": status}, interim) is None:
            set_condition(status, interim, "True", reason, message, now_rfc3339())
            self._write_status(job, status, tally)
            job = {**job, "status": copy.deepcopy(status)}
        if self._terminating(job):
            return job  # the pods' updates bring the Job back
        stamp = now_rfc3339()
        final = FINAL_CONDITION[interim]
        if final == "Complete":
            status["completionTime"] = stamp
        set_condition(status, final, "True", reason, message, stamp)
        if final == "Complete":
            self._event(job, "Completed", "Job completed")
        else:
            self._event(job, reason, message, "Warning")
        return job

    def _terminating(self, job: dict[str, Any]) -> bool:
        """Whether a pod of the Job is being deleted and has not ended yet."""
        return any(
            p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") not in TERMINAL_PHASES
            for p in self._owned_pods(job)
        )

    def _finish(self, job: dict[str, Any], mem: JobMemory, tally: Tally) -> None:
        """A finished Job deletes its running pods; kube counts them as failed."""
        self._delete_pods(job, mem, tally.active)
        tally.failed += len(tally.active)
        tally.active = []

    def _run(
        self,
        key: Key,
        job: dict[str, Any],
        mem: JobMemory,
        tally: Tally,
        status: dict[str, Any],
        now: float,
    ) -> None:
        """An unfinished, unsuspended Job: start the clock, create or remove pods."""
        spec = job["spec"]
        if any(
            c.get("type") == "Suspended" and c.get("status") == "True"
            for c in status.get("conditions") or []
        ):
            set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", now_rfc3339())
        if not status.get("startTime"):
            status["startTime"] = now_rfc3339()
        if spec.get("activeDeadlineSeconds") is not None:
            started = parse_time(status["startTime"]) or now
            self._wake_at(key, started + spec["activeDeadlineSeconds"])
        want = wanted_active(spec, tally)
        busy = len(tally.active) + tally.in_flight
        if spec.get("podReplacementPolicy") == "Failed":
            busy += len(tally.terminating)  # replace only once the old pod has really ended
        if len(tally.active) > want:
            by_age = sorted(tally.active, key=lambda p: p["metadata"].get("creationTimestamp", ""))
            self._delete_pods(job, mem, by_age[want:])
            tally.active = by_age[:want]
            return
        if busy >= want:
            return
        if mem.failures_in_row:
            delay = min(self.pod_backoff * 2 ** (mem.failures_in_row - 1), self.pod_backoff_max)
            if now < mem.last_failure + delay:
                self._wake_at(key, mem.last_failure + delay)
                return
        for _ in range(want - busy):
            pod = self._create_pod(key, job)
            if pod is None:
                return
            mem.known[uid_of(pod)] = pod
            tally.active.append(pod)

    def _create_pod(self, key: Key, job: dict[str, Any]) -> dict[str, Any] | None:
        namespace, name = key
        for _ in range(5):  # a random name can be taken
            try:
                pod = self.store.create(
                    "pods", pod_from_template(job, generate_pod_name(name)), namespace=namespace
                )
            except AlreadyExists:
                continue
            except ApiError as e:
                # kube's FailedCreate: tell the user, try again later rather than spin.
                self._event(job, "FailedCreate", f"Error creating: {e.message}", "Warning")
                self._queue.add_after(key, self.create_retry)
                return None
            self._event(job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
            return dict(pod)
        return None

    def _delete_pods(self, job: dict[str, Any], mem: JobMemory, pods: list[dict[str, Any]]) -> None:
        mem.forget(pods)
        for pod in pods:
            try:
                self.store.delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
            except NotFound:
                continue
            self._event(job, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")

    def _write_status(self, job: dict[str, Any], status: dict[str, Any], tally: Tally) -> None:
        # Zero counts are omitted, as the API's `omitempty` int fields are.
        for field, value in (
            ("active", len(tally.active)),
            ("succeeded", tally.succeeded),
            ("failed", tally.failed),
        ):
            if value:
                status[field] = value
            else:
                status.pop(field, None)
        status["ready"] = sum(1 for p in tally.active if is_ready(p))
        status.setdefault("uncountedTerminatedPods", {})
        if status == (job.get("status") or {}):
            return
        uid = uid_of(job)

        def apply(obj: dict[str, Any]) -> bool:
            if uid_of(obj) != uid:  # a new Job under the same name: not ours to write
                return False
            obj["status"] = status
            return True

        meta = job["metadata"]
        with contextlib.suppress(NotFound):
            self.store.mutate("jobs", meta["namespace"], meta["name"], apply, subresource="status")

    def _expire_after_ttl(self, key: Key, job: dict[str, Any]) -> None:
        expires = ttl_expiry(job)
        if expires is None:
            return
        if self._clock() < expires:
            self._wake_at(key, expires)
            return
        meta = job["metadata"]
        # The uid precondition: never delete a new Job that took the name meanwhile.
        with contextlib.suppress(NotFound, ApiError):
            self.store.delete(
                "jobs",
                meta["namespace"],
                meta["name"],
                propagation_policy="Background",
                preconditions={"uid": meta["uid"]},
            )

    def _event(self, job: dict[str, Any], reason: str, message: str, type: str = "Normal") -> None:
        record_event(self.store, job, reason, message, type=type, component=COMPONENT)
