"""What happened to a pod: ``V1Pod``/JSON dict (+ Events) → :class:`Outcome`.

Pure and cheap: no kubernetes import, no I/O. Kubernetes reports memory failures in many
shapes (see ``shared/oom-facts.md``), so the verdict is built from ordered rules, most
specific evidence first (see ``_RULES``):

1. ``OOMKilled`` in the main or an init container: a failure whatever the exit code (0, 1,
   137 and 143 have all been seen) or the phase (even Succeeded, even Pending);
2. the main container exited 0 and the pod did not fail: success, even if sidecars run on;
3. ``OOMKilled`` in ``lastState`` (restarted in place), or in a sidecar once the step ended;
4. the pod's ``status.reason``: Evicted, Preempting, node shutdown, kubelet admission,
   NodeLost, DeadlineExceeded;
5. the ``DisruptionTarget`` condition; Evicted/Preempted Events when the status lost them;
6. waiting or start reasons that never heal (image and config errors);
7. how the init or main container terminated: a bare SIGKILL/SIGTERM is ``killed`` (never
   ``oom_killed``), a non-zero exit is ``app_error``;
8. still running or pending (``unschedulable`` once ``pending_timeout`` has passed);
9. what the phase alone says.

Upgrading to ``oom_killed`` without the reason: an ``OOMKilling`` Event (node-problem-detector)
or ``cgroup_oom=True`` (the container cgroup's ``oom_kill`` counter went up) turns a bare
137, an ``Error`` exit or a ``ContainerStatusUnknown`` of the main container into
``oom_killed``. This catches runtimes that report ``Error`` for a real OOM and a child process
OOM-killed while PID 1 exited 1. The caller decides which Events belong to the pod; node OOM
Events name a process, not a pod, so match them by node and time. A success (exit 0 in a pod
that did not fail) is never upgraded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .outcome import Outcome, OutcomeKind
from .podview import (
    ContainerView,
    PodView,
    get,
    outcome_from_term,
    parse_eviction_message,
    plain,
    pod_outcome,
    term_signal,
)

__all__ = ["Outcome", "OutcomeKind", "classify", "node_lost_in", "parse_eviction_message"]

# Reason strings come from the kubelet, the runtimes and the controllers; none is an enum.
_IMAGE_REASONS = {
    "ErrImagePull",
    "ImagePullBackOff",  # alternates with the real error as the waiting reason
    "InvalidImageName",
    "ErrImageNeverPull",
    "ImageInspectError",
    "RegistryUnavailable",
    "ErrRegistryUnavailable",
    "SignatureValidationFailed",
}
_CONFIG_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
_START_FAILURES = {"StartError", "ContainerCannotRun"}  # terminated before the code ran
_SHUTDOWN_REASONS = {"Shutdown", "Terminated", "NodeShutdown"}  # <=1.21, >=1.22, refused
_ADMISSION_REASONS = {"UnexpectedAdmissionError", "NodeAffinity", "NodeSelectorMismatching"}
_DISRUPTION_KIND = {
    "PreemptionByScheduler": OutcomeKind.DISRUPTED,
    "PreemptionByKubeScheduler": OutcomeKind.DISRUPTED,  # the 1.26 spelling
    "DeletionByTaintManager": OutcomeKind.DISRUPTED,
    "EvictionByEvictionAPI": OutcomeKind.DISRUPTED,  # drain: infrastructure, not pressure
    "DeletionByPodGC": OutcomeKind.NODE_LOST,  # the pod's node is gone
    "TerminationByKubelet": OutcomeKind.DISRUPTED,  # EVICTED if the message says pressure
}
_EVENT_KIND = (  # Events that still explain a pod whose status lost the reason, or is gone
    (("Evicted",), OutcomeKind.EVICTED),
    (("Preempted", "Preempting", "TaintManagerEviction"), OutcomeKind.DISRUPTED),
    (("NodeControllerEviction", "NodeNotReady"), OutcomeKind.NODE_LOST),
)
_KILL_SIGNALS = {9, 15}  # SIGKILL, SIGTERM: something outside the step stopped it
# The node lost how the container ended, so its exit code says nothing about the step:
# the kubelet's own (the container vanished while the pod was terminated), and containerd's
# CRI for a container whose task ended while containerd was down (exit 255 whatever the
# step did; seen on the real tier for a step that had exited 0).
_END_LOST_REASONS = {"ContainerStatusUnknown", "Unknown"}


# --- Building outcomes ----------------------------------------------------------------------


def _failure(pod: PodView, view: ContainerView, term: Mapping[str, Any], evidence: str) -> Outcome:
    """A container that ended badly without saying OOMKilled."""
    if pod.oom_hint:
        return outcome_from_term(OutcomeKind.OOM_KILLED, view, term, f"{evidence} + {pod.oom_hint}")
    if get(term, "reason") in _END_LOST_REASONS:
        # The kubelet or the runtime lost the container's end (an eviction, a deletion, a
        # containerd restart): the step did not fail by itself.
        return outcome_from_term(OutcomeKind.DISRUPTED, view, term, evidence)
    if term_signal(term) in _KILL_SIGNALS:
        return outcome_from_term(OutcomeKind.KILLED, view, term, evidence)
    return outcome_from_term(OutcomeKind.APP_ERROR, view, term, evidence)


def _oom_term(view: ContainerView, last: bool) -> Mapping[str, Any] | None:
    term = view.terminated(last)
    return term if term is not None and get(term, "reason") == "OOMKilled" else None


def _from_events(pod: PodView) -> Outcome | None:
    for reasons, kind in _EVENT_KIND:
        event = pod.event(*reasons)
        if event is not None:
            message = get(event, "message") or get(event, "note") or ""
            return pod_outcome(pod, kind, get(event, "reason"), message, "events")
    return None


# --- The rules, in order ------------------------------------------------------------------


def _rule_oom_now(pod: PodView) -> Outcome | None:
    """OOMKilled is a failure whatever the exit code (seen with 0, 1, 137, 143) or phase."""
    for view in pod.step_containers:
        term = _oom_term(view, last=False)
        if term is not None:
            return outcome_from_term(OutcomeKind.OOM_KILLED, view, term, view.where())
    return None


def _rule_main_succeeded(pod: PodView) -> Outcome | None:
    term = pod.main.terminated() if pod.main else None
    if pod.main and term and get(term, "exitCode") == 0 and pod.phase != "Failed":
        return outcome_from_term(OutcomeKind.SUCCEEDED, pod.main, term, pod.main.where())
    return None


def _rule_oom_before(pod: PodView) -> Outcome | None:
    """OOM in ``lastState`` (restarted in place), or in a sidecar once the step has ended."""
    for view in pod.step_containers:
        term = _oom_term(view, last=True)
        if term is not None:
            return outcome_from_term(OutcomeKind.OOM_KILLED, view, term, view.where(last=True))
    step_over = pod.phase == "Failed" or bool(pod.main and pod.main.ended)
    for view in pod.sidecars if step_over else ():
        for last in (False, True):
            term = _oom_term(view, last)
            if term is not None:
                return outcome_from_term(OutcomeKind.OOM_KILLED, view, term, view.where(last))
    return None


def _rule_pod_reason(pod: PodView) -> Outcome | None:
    reason = pod.reason
    kind: OutcomeKind | None = None
    if reason == "Evicted":
        kind = OutcomeKind.EVICTED
    elif reason == "Preempting" or reason in _SHUTDOWN_REASONS:
        kind = OutcomeKind.DISRUPTED  # the phase may still say Running (1.22 regression)
    elif reason.startswith("OutOf") or reason in _ADMISSION_REASONS:
        kind = OutcomeKind.DISRUPTED  # kubelet admission: OutOfmemory, OutOfcpu, ...
    elif reason == "NodeLost":
        kind = OutcomeKind.NODE_LOST
    elif reason == "DeadlineExceeded":
        kind = OutcomeKind.DEADLINE_EXCEEDED  # even while the container still shows running
    return pod_outcome(pod, kind, reason, pod.message, "status.reason") if kind else None


def _rule_disruption(pod: PodView) -> Outcome | None:
    if pod.phase != "Failed" and not (pod.main and pod.main.ended):
        return None  # still working or starting; the pod is judged once it ends
    cond = pod.condition("DisruptionTarget")
    if cond is not None and get(cond, "status") == "True":
        reason = get(cond, "reason") or "DisruptionTarget"
        message = get(cond, "message") or ""
        kind = _DISRUPTION_KIND.get(reason, OutcomeKind.DISRUPTED)
        if "low on resource" in message:
            kind = OutcomeKind.EVICTED  # TerminationByKubelet for node pressure
        return pod_outcome(pod, kind, reason, message, "conditions[DisruptionTarget]")
    return _from_events(pod) if _unexplained_end(pod) else None


def _unexplained_end(pod: PodView) -> bool:
    """The step ended in a way only something outside it explains (so Events may)."""
    term = pod.main.ended if pod.main else None
    if term is None:
        return pod.phase == "Failed"
    return (
        term_signal(term) in _KILL_SIGNALS
        or get(term, "reason") in _END_LOST_REASONS
        or (get(term, "exitCode") == 0 and pod.phase == "Failed")
    )


def _rule_never_heals(pod: PodView) -> Outcome | None:
    # A sidecar that cannot start only matters once the step itself is not running.
    main_busy = bool(pod.main and pod.main.running)
    for view in pod.step_containers + ([] if main_busy else pod.sidecars):
        reason = view.waiting_reason
        if reason in _IMAGE_REASONS or reason in _CONFIG_REASONS:
            kind = OutcomeKind.IMAGE_ERROR if reason in _IMAGE_REASONS else OutcomeKind.CONFIG_ERROR
            message = (get(view.state, "waiting", "message") or "").strip()
            failed = pod.event("Failed")  # the real pull error while the reason says BackOff
            detail = (get(failed, "message") or "").strip()
            if detail and detail not in message:
                message = f"{message} (last error: {detail})" if message else detail
            return Outcome(
                kind,
                container=view.name,
                init_container=view.init,
                reason=reason,
                message=message,
                evidence=view.where() + ".waiting",
            )
        term = view.terminated()
        if term is not None and get(term, "reason") in _START_FAILURES and not view.sidecar:
            return outcome_from_term(OutcomeKind.CONFIG_ERROR, view, term, view.where())
    return None


def _rule_terminated(pod: PodView) -> Outcome | None:
    for view in pod.inits + ([pod.main] if pod.main else []):
        term = view.ended
        if term is not None and get(term, "exitCode") != 0:
            return _failure(pod, view, term, view.where(last=view.terminated() is None))
    return None


def _rule_in_progress(pod: PodView) -> Outcome | None:
    if pod.phase in ("Failed", "Succeeded", "Unknown"):
        return None
    main = pod.main
    if (main and main.running) or (main is None and pod.phase == "Running"):
        return _running(pod)
    if main is not None and main.ended:
        return None
    scheduled = pod.condition("PodScheduled")
    if scheduled is not None and get(scheduled, "reason") == "Unschedulable":
        since = (
            get(scheduled, "lastTransitionTime"),
            get(pod.raw, "metadata", "creationTimestamp"),
        )
        late = pod.pending_timeout is None or pod.waited(*since) >= pod.pending_timeout
        return Outcome(
            OutcomeKind.UNSCHEDULABLE if late else OutcomeKind.PENDING,
            container=pod.name,
            reason="Unschedulable",
            message=(get(scheduled, "message") or "").strip(),
            evidence="conditions[PodScheduled]",
        )
    return Outcome(
        OutcomeKind.PENDING, container=pod.name, reason=main.waiting_reason if main else None
    )


def _running(pod: PodView) -> Outcome:
    lost = _node_lost(pod)
    if lost is not None:
        return lost
    for view in pod.sidecars:
        if _oom_term(view, False) or _oom_term(view, True):
            # Worth showing, but the step itself is still working.
            message = f"sidecar {view.name} was OOM-killed; the step is still running"
            return Outcome(
                OutcomeKind.RUNNING,
                container=pod.name,
                reason="SidecarOOMKilled",
                message=message,
                evidence=view.where(),
            )
    return Outcome(OutcomeKind.RUNNING, container=pod.name)


def _node_silent(pod: PodView) -> bool:
    """The node controller flips only Ready when a node stops reporting; a failing readiness
    probe flips ContainersReady too. So Ready=False with ContainersReady=True means the node."""
    ready, containers = pod.condition("Ready"), pod.condition("ContainersReady")
    return get(ready, "status") == "False" and get(containers, "status") != "False"


def _evicted_from_silent_node(pod: PodView) -> Outcome | None:
    """Deleted for a disruption (the taint manager once the pod's tolerationSeconds for an
    unreachable or not-ready node ran out) while its node is silent: no kubelet will end it,
    so the pod stays Running and Terminating. The cluster has decided; the attempt is over."""
    cond = pod.condition("DisruptionTarget")
    deleted = get(pod.raw, "metadata", "deletionTimestamp")
    if not (deleted and get(cond, "status") == "True" and _node_silent(pod)):
        return None
    reason = get(cond, "reason") or "DisruptionTarget"
    message = f"{get(cond, 'message') or reason} (the pod's node stopped reporting)"
    kind = _DISRUPTION_KIND.get(reason, OutcomeKind.DISRUPTED)
    return pod_outcome(pod, kind, reason, message, "conditions[DisruptionTarget] + deletion")


def _node_lost(pod: PodView) -> Outcome | None:
    """A pod that looks running but sits on a silent node: evicted from it, or there (or
    terminating) longer than node_lost_timeout."""
    evicted = _evicted_from_silent_node(pod)
    if evicted is not None:
        return evicted
    for left, reason, message, evidence in _node_lost_clocks(pod):
        if left <= 0:
            return Outcome(
                OutcomeKind.NODE_LOST, pod.name, reason=reason, message=message, evidence=evidence
            )
    return None


def _node_lost_clocks(pod: PodView) -> list[tuple[float, str, str, str]]:
    """Each node_lost_timeout running for this pod: (seconds left, reason, message, evidence)."""
    timeout = pod.node_lost_timeout
    if timeout is None:
        return []
    clocks = []
    deleted = get(pod.raw, "metadata", "deletionTimestamp")
    if deleted:
        message = "the pod has been terminating too long; its node is likely gone"
        clocks.append(
            (
                timeout - pod.waited(deleted),
                "StuckTerminating",
                message,
                "metadata.deletionTimestamp",
            )
        )
    if _node_silent(pod):
        since = get(pod.condition("Ready"), "lastTransitionTime")
        message = "the pod's node stopped reporting (Ready=False while containers are ready)"
        clocks.append((timeout - pod.waited(since), "NodeNotReady", message, "conditions[Ready]"))
    return clocks


def _rule_phase(pod: PodView) -> Outcome:
    """The last word: what the phase alone says."""
    if pod.phase == "Succeeded":
        return Outcome(OutcomeKind.SUCCEEDED, pod.name, evidence="status.phase")
    if pod.phase == "Unknown":
        message = pod.message or "the pod's state could not be obtained from its node"
        return Outcome(
            OutcomeKind.NODE_LOST,
            pod.name,
            reason=pod.reason or "Unknown",
            message=message,
            evidence="status.phase",
        )
    if pod.phase == "Running":
        return _running(pod)
    if pod.phase != "Failed":
        return Outcome(OutcomeKind.PENDING, pod.name)
    for view in pod.sidecars:
        term = view.ended
        if term is not None and get(term, "exitCode") != 0:
            return _failure(pod, view, term, view.where())
    if pod.oom_hint:
        message = "the pod failed with no container status"
        return Outcome(OutcomeKind.OOM_KILLED, pod.name, message=message, evidence=pod.oom_hint)
    # The evidence is gone (fact 10) or contradicts the phase: treat it as a bare kill and
    # let the policy's sigkill_without_reason decide.
    term = pod.main.ended if pod.main else None
    return Outcome(
        OutcomeKind.KILLED,
        pod.name,
        exit_code=get(term, "exitCode"),
        reason=get(term, "reason") or "ContainerStatusMissing",
        message=pod.message or "the pod failed but no container says why",
        evidence="status.phase",
    )


_RULES: tuple[Callable[[PodView], Outcome | None], ...] = (
    _rule_oom_now,
    _rule_main_succeeded,
    _rule_oom_before,
    _rule_pod_reason,
    _rule_disruption,
    _rule_never_heals,
    _rule_terminated,
    _rule_in_progress,
)


def classify(
    pod: Any,
    events: Sequence[Any] | None = None,
    *,
    main_container: str = "main",
    cgroup_oom: bool | None = None,
    now: float | None = None,
    pending_timeout: float | None = None,
    node_lost_timeout: float | None = None,
) -> Outcome:
    """Say what happened to a pod.

    Args:
        pod: a ``kubernetes.client.V1Pod``, the API's JSON dict (camelCase, or the models'
            ``to_dict()`` snake_case), or ``None`` when the pod is gone from the API.
        events: the pod's Events (``CoreV1Event``/``EventsV1Event`` models or dicts), plus
            any node ``OOMKilling`` Events the caller matched to it.
        main_container: the step's container; the pod is judged by it, not by sidecars.
        cgroup_oom: whether the container cgroup's ``oom_kill`` counter rose, if known.
        now: the time (epoch seconds) for the timeouts; defaults to ``time.time()``.
        pending_timeout: seconds an unschedulable pod may wait before it is
            ``unschedulable``; ``None`` means at once.
        node_lost_timeout: seconds a running pod may sit on a silent node, or stay
            terminating, before it is ``node_lost``; ``None`` disables the check.
    """
    view = PodView.read(
        pod,
        events,
        main_container=main_container,
        cgroup_oom=cgroup_oom,
        now=time.time() if now is None else now,
        pending_timeout=pending_timeout,
        node_lost_timeout=node_lost_timeout,
    )
    if pod is None:
        return _gone(view, main_container)
    for rule in _RULES:
        outcome = rule(view)
        if outcome is not None:
            return outcome
    return _rule_phase(view)


def node_lost_in(
    pod: Any, node_lost_timeout: float | None, now: float | None = None
) -> float | None:
    """Seconds until ``classify`` would judge a running pod ``node_lost`` for sitting on a
    silent node, or terminating, that long (``None`` if neither applies). Nothing writes such
    a pod any more (no kubelet reports it; on a single node nothing evicts it), so no watch
    event will bring it back to the caller: it must look again itself."""
    if pod is None or node_lost_timeout is None:
        return None
    data = pod if isinstance(pod, Mapping) else plain(pod)
    conditions = get(data, "status", "conditions") or ()
    not_ready = any(get(c, "type") == "Ready" and get(c, "status") == "False" for c in conditions)
    if not (not_ready or get(data, "metadata", "deletionTimestamp")):
        return None  # the usual running pod: no clock runs, so no view to build per event
    view = PodView.read(
        data,
        None,
        main_container="",
        cgroup_oom=None,
        now=time.time() if now is None else now,
        pending_timeout=None,
        node_lost_timeout=node_lost_timeout,
    )
    clocks = _node_lost_clocks(view)
    return max(0.0, min(left for left, *_ in clocks)) if clocks else None


def _gone(pod: PodView, main_container: str) -> Outcome:
    """The pod is gone from the API (record reasons before deleting!); Events may say why."""
    found = _from_events(pod)
    if found is not None:
        return found
    if pod.oom_hint:
        message = "the pod is gone from the API; it was OOM-killed"
        return Outcome(
            OutcomeKind.OOM_KILLED, main_container, message=message, evidence=pod.oom_hint
        )
    message = "the pod is gone from the API (node lost, garbage-collected or deleted)"
    return Outcome(OutcomeKind.NODE_LOST, message=message, evidence="pod missing")
