"""How the Job controller counts pods: once each, failed pods kept, vanished pods not forgotten.

Kube's job controller tracks pods with a finalizer so a pod cannot disappear uncounted. Here the
controller shares a process with the Store, so it remembers instead: the uids it has counted
(failed pods stay for inspection, and are counted once however often they are seen) and the
last state of every pod it has not counted yet, so a pod deleted before it finished still
counts as failed, judged by podFailurePolicy on that last state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .jobspec import (
    FAILURE_TARGET,
    TERMINAL_PHASES,
    finished_condition,
    match_pod_failure_policy,
    parse_time,
    restart_count,
    true_condition,
)

Pod = dict[str, Any]

# A pod gone from the Store whose DELETED event never came (a watch that expired) is taken as
# deleted, in its last seen state, after this many seconds.
LOST_AFTER = 2.0


def uid_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["uid"])


def phase_of(pod: Pod) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


@dataclass
class JobMemory:
    """What the controller remembers about one Job (by uid) between syncs."""

    uid: str
    known: dict[str, Pod] = field(default_factory=dict)  # uncounted pods by uid, last seen
    counted: set[str] = field(default_factory=set)  # pod uids already counted or ignored
    deleted: dict[str, Pod] = field(default_factory=dict)  # final state from DELETED events
    missing_since: dict[str, float] = field(default_factory=dict)
    failures_in_row: int = 0
    last_failure: float = 0.0

    def forget(self, pods: list[Pod]) -> None:
        """Pods the controller deletes itself: they count neither way from now on."""
        for pod in pods:
            self.counted.add(uid_of(pod))
            self.known.pop(uid_of(pod), None)


@dataclass
class Tally:
    """One sync's view of a Job's pods and counts."""

    active: list[Pod] = field(default_factory=list)
    terminating: list[Pod] = field(default_factory=list)
    in_flight: int = 0  # gone from the Store, DELETED event not seen yet
    succeeded: int = 0
    failed: int = 0
    failure: tuple[str, str] | None = None  # (reason, message) from a FailJob rule
    next_check: float | None = None  # when an in-flight pod will be taken as lost


def count_pods(
    job: dict[str, Any], mem: JobMemory, pods: list[Pod], gone: dict[str, Pod], now: float
) -> Tally:
    """Count newly finished and vanished pods into the Job's totals; sort the rest.

    `pods` are the Job's pods in the Store now, `gone` the final states from DELETED events
    since the last sync (taken out of `mem.deleted` by the caller, under its lock).
    """
    status = job.get("status") or {}
    present = {uid_of(p): p for p in pods}
    gone = dict(gone)
    if not mem.counted and (status.get("succeeded") or status.get("failed")):
        # A restarted controller: what has finished is already in the status.
        mem.counted.update(u for u, p in present.items() if phase_of(p) in TERMINAL_PHASES)
    tally = Tally(succeeded=status.get("succeeded") or 0, failed=status.get("failed") or 0)
    finished = [
        p for u, p in present.items() if u not in mem.counted and phase_of(p) in TERMINAL_PHASES
    ]
    for u, pod in list(mem.known.items()):
        if u in present or u in mem.counted:
            mem.missing_since.pop(u, None)
        elif u in gone:
            continue
        elif now - mem.missing_since.setdefault(u, now) >= LOST_AFTER:
            gone[u] = pod
        else:
            tally.in_flight += 1
            due = mem.missing_since[u] + LOST_AFTER
            tally.next_check = min(tally.next_check or due, due)
    finished += [p for u, p in gone.items() if u not in mem.counted and u not in present]
    for pod in finished:
        _count_one(job, mem, tally, pod, now)
    mem.known = {u: p for u, p in mem.known.items() if u in mem.missing_since}
    for u, pod in present.items():
        if u in mem.counted:
            continue
        mem.known[u] = pod
        if pod["metadata"].get("deletionTimestamp"):
            tally.terminating.append(pod)
        else:
            tally.active.append(pod)
    return tally


def _count_one(job: dict[str, Any], mem: JobMemory, tally: Tally, pod: Pod, now: float) -> None:
    uid = uid_of(pod)
    mem.counted.add(uid)
    mem.missing_since.pop(uid, None)
    if phase_of(pod) == "Succeeded":
        tally.succeeded += 1
        mem.failures_in_row = 0
        return
    # Not Succeeded: Failed, or deleted before it finished (kube counts those as failed too).
    action, message = match_pod_failure_policy(job, pod)
    if action == "Ignore":
        return
    tally.failed += 1
    if action == "FailJob" and tally.failure is None and message:
        tally.failure = ("PodFailurePolicy", message)
    mem.failures_in_row += 1
    mem.last_failure = now


def job_failure(job: dict[str, Any], tally: Tally, now: float) -> tuple[str, str] | None:
    """`(reason, message)` if the Job has failed: an earlier sync's verdict (FailureTarget),
    a FailJob rule, backoff limit or deadline."""
    target = true_condition(job, FAILURE_TARGET)
    if target is not None:
        return str(target.get("reason") or ""), str(target.get("message") or "")
    if tally.failure is not None:
        return tally.failure
    spec = job["spec"]
    limit = int(spec.get("backoffLimit", 6))
    if tally.failed > limit:
        return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    template_spec = (spec.get("template") or {}).get("spec") or {}
    if template_spec.get("restartPolicy") == "OnFailure":
        # kube's pastBackoffLimitOnFailure: container restarts of running pods count too.
        restarts = sum(restart_count(p) for p in tally.active)
        if restarts and restarts >= max(limit, 1):
            return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    deadline = spec.get("activeDeadlineSeconds")
    started = parse_time((job.get("status") or {}).get("startTime"))
    if deadline is not None and started is not None and now >= started + deadline:
        return "DeadlineExceeded", "Job was active longer than specified deadline"
    return None


def is_complete(spec: dict[str, Any], tally: Tally) -> bool:
    completions = spec.get("completions")
    if completions is None:  # work-queue Job: one success and nothing left running
        return tally.succeeded > 0 and not tally.active and not tally.terminating
    return bool(tally.succeeded >= completions)


def wanted_active(spec: dict[str, Any], tally: Tally) -> int:
    """How many pods should run now: parallelism, but no more than completions still needed."""
    parallelism = int(spec.get("parallelism", 1))
    completions = spec.get("completions")
    if completions is None:
        return 0 if tally.succeeded else parallelism
    return max(0, min(parallelism, completions - tally.succeeded))


def ttl_expiry(job: dict[str, Any]) -> float | None:
    """When a finished Job with `ttlSecondsAfterFinished` is due for deletion."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    cond = finished_condition(job)
    if ttl is None or cond is None:
        return None
    status = job.get("status") or {}
    finished = parse_time(status.get("completionTime") or cond.get("lastTransitionTime"))
    return (finished or 0.0) + ttl
