"""How an attempt ends: record → decide → persist → act, and how a stop ends a step.

What is written per attempt (issue 7 §1 counts API writes):
- a failure (retry or give up) or a stop: the result annotation on the pod (record + decision,
  what resume rebuilds from);
- every judged attempt, a success included: one Event holding the same result (what `kubectl
  describe` shows, and what outlives the pod: resume rebuilds from it when the pod is gone).
Both are written before the decision is acted on, so a restart in between redoes nothing and
loses nothing. A pod whose containers all ended is kept (the record); the kubelet writes its
terminal phase in a later status update.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from zenml_oom_orchestrator.classify import classify
from zenml_oom_orchestrator.outcome import Outcome, OutcomeKind
from zenml_oom_orchestrator.policy import (
    AttemptRecord,
    Decision,
    GiveUp,
    Retry,
    decide,
    missed_growth_hint,
)
from zenml_oom_orchestrator.supervisor import naming, writes
from zenml_oom_orchestrator.supervisor.grow import has_probe
from zenml_oom_orchestrator.supervisor.pending import terminated_at
from zenml_oom_orchestrator.supervisor.spec import StepStatus
from zenml_oom_orchestrator.supervisor.state import (
    REASON_STOPPED,
    AttemptResult,
    StepState,
    event_reason,
    success_caveat,
)

if TYPE_CHECKING:
    from zenml_oom_orchestrator.supervisor.engine import Engine


def finish_attempt(
    engine: Engine,
    st: StepState,
    pod: dict[str, Any],
    outcome: Outcome,
    gone: bool,
    sync: bool = False,
) -> None:
    """Record → decide → persist (a failure on the pod + Event) → act. Persisting comes
    before acting, so a restart in between redoes nothing and loses nothing. The writes run
    in the writer pool (`sync`: here and now); acting waits for them."""
    assert st.current is not None and st.current_pod is not None
    node = (pod.get("spec") or {}).get("nodeName")
    now = engine.clock()
    ended = terminated_at(pod, st.spec.main_container)
    if ended is None or now - ended < 2:  # judged late (adopted after a restart): use
        ended = now  # the container's own end (whole seconds), else our sub-second clock
    ended = max(ended, st.current.started_at or 0.0)
    record = replace(st.current.finished(outcome, ended), node=node, message=outcome.describe())
    decision: Decision | None = None
    if outcome.kind is not OutcomeKind.SUCCEEDED and engine.reported_success(st.name):
        # Its code finished (OOM-killed in teardown, or every container of an exhausted v1
        # node marked OOMKilled): running it again redoes done work, and ZenML refuses it.
        said = replace(outcome, message="").describe()  # not the log's tail
        message = f"{said}, after the step had reported success: not run again"
        record = replace(record, message=message)
    elif outcome.kind is not OutcomeKind.SUCCEEDED:
        decision = decide(
            st.name,
            [*st.attempts, record],
            outcome,
            st.spec.policy,
            st.spec.app_retry,
            engine.largest_node(),
        )
        if outcome.kind is OutcomeKind.OOM_KILLED and has_probe(pod, st.spec.main_container):
            record, decision = say_missed_growth(st, record, decision)
    retry_at = engine.clock() + decision.delay_seconds if isinstance(decision, Retry) else None
    result, name = AttemptResult(record, decision, retry_at), st.current_pod
    # Still Pending, on a lost node, or a sidecar runs on: it would hold memory (or start
    # late). A pod whose containers all ended stays as the record: a real kubelet writes
    # the terminal phase one update after the containers' end.
    delete = not gone and not ends_by_itself(pod, st.spec.main_container)

    def write() -> str | None:
        unpersisted = persist_writes(engine, st.name, name, pod, result, gone)
        if delete:
            engine.cluster.delete_pod(name, grace_period_seconds=0)  # evidence is saved
        return unpersisted

    def then(done: Future[str | None]) -> None:
        unpersisted = done.result()  # raises if the writes failed: the step is judged again
        if unpersisted is not None:
            st.unpersisted = unpersisted
        act(engine, st, record, decision, retry_at)

    if sync:
        then(_done(write()))
    else:
        priority = writes.FINISH if decision is None else writes.RETRY
        engine.writes.submit(st.name, write, then, priority)


def say_missed_growth(
    st: StepState, record: AttemptRecord, decision: Decision
) -> tuple[AttemptRecord, Decision]:
    """An OOM kill that a shorter near-limit check could have turned into a growth says so,
    where the user reads the kill: the decision's message (Event, ZenML's attempt history,
    `zenml-oom explain`) and the attempt's record."""
    hint = missed_growth_hint(st.spec.policy, record.memory_limit, record.growths)
    if not hint:
        return record, decision
    sentence = f" {hint[0].upper()}{hint[1:]}."
    return (
        replace(record, message=f"{record.message}; {hint}"),
        replace(decision, message=decision.message + sentence),
    )


def act(
    engine: Engine,
    st: StepState,
    record: AttemptRecord,
    decision: Decision | None,
    retry_at: float | None,
) -> None:
    """The persisted decision, acted on: record it, free the slot, retry or end the step."""
    assert st.current_pod is not None
    engine.informer.forget(st.current_pod)
    st.attempts.append(record)
    engine.landed(st)
    engine.hook("on_attempt_finished", st.name, record, decision)
    if decision is None:
        message = f"succeeded on attempt {record.number}{success_caveat(record)}"
        engine.finish_step(st, StepStatus.SUCCEEDED, message)
    elif isinstance(decision, GiveUp):
        engine.finish_step(st, StepStatus.FAILED, decision.message)
    else:
        st.next_number = record.number + 1
        st.next_request, st.next_limit = decision.memory_request, decision.memory_limit
        st.next_budget, st.not_before = decision.budget, retry_at or 0.0
        st.status, st.message = StepStatus.RETRYING, decision.message
        if decision.delay_seconds <= 0 and engine.inline_retries and not engine.stop_requested:
            try:
                engine.maybe_start(st)  # this reconcile, and this step's own freed slot
            finally:
                engine.slots.hand_out()
            return
        engine.queue.add_after(st.name, decision.delay_seconds, writes.URGENT)
    engine.slots.hand_out()


def _done(value: str | None) -> Future[str | None]:
    future: Future[str | None] = Future()
    future.set_result(value)
    return future


def persist(
    engine: Engine, st: StepState, pod: dict[str, Any], result: AttemptResult, gone: bool
) -> None:
    """`persist_writes` for the engine's own thread."""
    assert st.current_pod is not None
    unpersisted = persist_writes(engine, st.name, st.current_pod, pod, result, gone)
    if unpersisted is not None:
        st.unpersisted = unpersisted


def persist_writes(
    engine: Engine, step: str, name: str, pod: dict[str, Any], result: AttemptResult, gone: bool
) -> str | None:
    """Write a failure's result on the pod, then the Event, which carries the result too: it
    outlives the pod (deleted by a TTL, its node lost), so a restarted supervisor never judges
    a recorded attempt again. Returns the result when the pod is gone: the next attempt's pod
    carries it. API calls only (any thread)."""
    unpersisted = None
    if result.decision is not None or result.stopped:
        payload = {naming.ANN_RESULT: result.to_json()}
        if gone or not engine.cluster.annotate_pod(name, payload):
            unpersisted = result.to_json()
    emit_result_event(engine, step, pod, result)
    return unpersisted


def emit_result_event(
    engine: Engine, step: str, pod: dict[str, Any], result: AttemptResult
) -> None:
    """The decision (or the success) as an Event on the attempt's pod, holding the result and
    labelled with the run; once per pod (deterministic name, a repeat gets 409)."""
    message = result.decision.message if result.decision else result.record.message
    caveat = ""  # a stop's record also has a bad outcome and no decision: not a success
    if result.decision is None and not result.stopped:
        caveat = success_caveat(result.record)
        message = f"attempt {result.record.number} succeeded{caveat}"
    reason = REASON_STOPPED if result.stopped else event_reason(result.decision)
    engine.cluster.emit_event(
        pod,
        reason,
        message,
        warning=result.decision is not None or bool(caveat),
        labels={naming.LABEL_RUN: naming.label_value(engine.spec.run_id)},
        annotations={naming.ANN_RESULT: result.to_json(), naming.ANN_STEP: step},
    )


def stop_step(engine: Engine, st: StepState, why: str) -> None:
    """Delete the attempt in flight (after recording it) and end the step stopped."""
    if st.current is not None and st.current_pod is not None:
        pod = engine.informer.get(st.current_pod) or engine.informer.deleted(st.current_pod)
        outcome = classify(pod, main_container=st.spec.main_container)
        if outcome.terminal and pod is not None:
            gone = engine.informer.get(st.current_pod) is None
            finish_attempt(engine, st, pod, outcome, gone, sync=True)
            if st.status.terminal:
                return
        else:
            stopped = Outcome(OutcomeKind.KILLED, reason="Stopped", message=why)
            record = replace(st.current.finished(stopped, engine.clock()), message=why)
            if pod is not None:
                persist(engine, st, pod, AttemptResult(record, None, stopped=True), False)
            engine.cluster.delete_pod(st.current_pod)
            engine.informer.forget(st.current_pod)
            st.attempts.append(record)
            engine.landed(st)
            engine.hook("on_attempt_finished", st.name, record, None)
    halted = engine.halted_by is not None and not engine.stop_requested
    status = StepStatus.SKIPPED if halted and not st.attempts else StepStatus.STOPPED
    engine.finish_step(st, status, why)


def pod_finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def ends_by_itself(pod: dict[str, Any], main_container: str) -> bool:
    """The pod is over or will be without us: a terminal phase, or (restartPolicy Never) every
    container ended, or an init container failed, while the phase has not caught up yet."""
    if pod_finished(pod):
        return True
    status = pod.get("status") or {}
    if status.get("phase") not in ("Pending", "Running"):
        return False  # Unknown: the node is lost, nobody will finish it
    inits = status.get("initContainerStatuses") or []
    if any(((s.get("state") or {}).get("terminated") or {}).get("exitCode") for s in inits):
        return True
    if any("running" in (s.get("state") or {}) for s in inits):
        return False  # a native sidecar runs on
    mains = status.get("containerStatuses") or []
    names = {s.get("name") for s in mains}
    return main_container in names and all("terminated" in (s.get("state") or {}) for s in mains)
