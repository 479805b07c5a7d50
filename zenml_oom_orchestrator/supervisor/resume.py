"""Rebuild the engine's state from the cluster, so a restarted supervisor continues the run.

The cluster is the record: each attempt pod's labels say which step and attempt it is, its
annotations hold the memory it had and, once a failure was judged, its record and the decision
taken (written before the decision was acted on). Every judged attempt, a success included,
also has an Event holding the same result, labelled with the run: it outlives the pod
(finished_ttl_seconds, a lost node), so the history and the budgets stay whole. For each step
the highest attempt tells where the step stands:
- it has a result: the decision is known; succeeded, failed, or retry with the next number
  (never re-running the same attempt: its name is taken and a create would adopt it);
- it has none: it is the attempt in flight, or one that finished or vanished while we were
  down; the normal reconcile classifies and acts on it.
A pod that vanished before carrying its result left it on its successor (previous-result).
An attempt in flight keeps the growths in place it had (grow.py's annotation); one that came
into force while no supervisor ran is adopted from the pod's status (Grower._adopt_applied).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from zenml_oom_orchestrator.classify import classify
from zenml_oom_orchestrator.policy import AttemptRecord, GiveUp, Retry
from zenml_oom_orchestrator.quantity import memory_bytes
from zenml_oom_orchestrator.supervisor import naming
from zenml_oom_orchestrator.supervisor.finish import emit_result_event, finish_attempt
from zenml_oom_orchestrator.supervisor.grow import growths_of
from zenml_oom_orchestrator.supervisor.pending import created_at, started_at
from zenml_oom_orchestrator.supervisor.spec import StepStatus
from zenml_oom_orchestrator.supervisor.state import AttemptResult, StepState, success_caveat

if TYPE_CHECKING:
    from zenml_oom_orchestrator.supervisor.engine import Engine

log = logging.getLogger(__name__)
Pod = dict[str, Any]


def attempt_of(pod: Pod) -> tuple[str, int] | None:
    """(step name, attempt number) of one of our attempt pods, from its annotations."""
    meta = pod.get("metadata") or {}
    ann, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    step = ann.get(naming.ANN_STEP)
    number = str(ann.get(naming.ANN_ATTEMPT) or labels.get(naming.LABEL_ATTEMPT) or "")
    if not step or not number.isdigit():
        return None
    return step, int(number)


def _result(pod: Pod, key: str = naming.ANN_RESULT) -> AttemptResult | None:
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(key)
    if not text:
        return None
    try:
        return AttemptResult.from_json(text)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        log.warning("unreadable %s on pod %s", key, pod["metadata"]["name"])
        return None


def group_by_step(pods: list[Pod]) -> dict[str, dict[int, Pod]]:
    out: dict[str, dict[int, Pod]] = {}
    for pod in pods:
        found = attempt_of(pod)
        if found is not None:
            out.setdefault(found[0], {})[found[1]] = pod
    return out


def results_by_step(events: list[dict[str, Any]]) -> dict[str, dict[int, AttemptResult]]:
    """The results the supervisor's own Events hold, per step and attempt number."""
    out: dict[str, dict[int, AttemptResult]] = {}
    for event in events:
        step = ((event.get("metadata") or {}).get("annotations") or {}).get(naming.ANN_STEP)
        res = _result(event)
        if step and res is not None:
            out.setdefault(step, {})[res.record.number] = res
    return out


def rebuild_step(
    st: StepState, pods: dict[int, Pod], results: dict[int, AttemptResult]
) -> AttemptResult | None:
    """Restore `st` from its attempt pods and `results` (from its Events; completed here
    from the pods); returns the last finished attempt's result (whose Event and observer
    hook may not have happened before the restart)."""
    for number, pod in pods.items():
        res = _result(pod)
        if res is not None:
            results[number] = res
        carried = _result(pod, naming.ANN_PREVIOUS_RESULT)
        if carried is not None and carried.record.number not in pods:
            results.setdefault(carried.record.number, carried)
    last = max([*pods, *results])
    st.skip_checked = True  # it ran, so it was not a cache hit
    st.attempts = [results[n].record for n in sorted(results) if n <= last]
    if last in results:
        res = results[last]
        if res.stopped:
            st.status = StepStatus.STOPPED
            st.message = res.record.message
        elif res.decision is None:
            caveat = success_caveat(res.record)
            st.status, st.message = StepStatus.SUCCEEDED, f"succeeded on attempt {last}{caveat}"
        elif isinstance(res.decision, GiveUp):
            st.status, st.message = StepStatus.FAILED, res.decision.message
        else:
            _retry_next(st, last, res.decision, res.retry_at)
        return res
    pod = pods[last]
    ann = pod["metadata"].get("annotations") or {}
    previous = results.get(last - 1)
    budget = previous.decision.budget if previous and isinstance(previous.decision, Retry) else None
    growths = growths_of(pod)  # grown in place before the restart: its memory now
    grown = [g for g in growths if g.grew]
    st.current = AttemptRecord(
        number=last,
        memory_request=grown[-1].to_request
        if grown
        else memory_bytes(ann[naming.ANN_MEMORY_REQUEST]),
        memory_limit=grown[-1].to_limit if grown else memory_bytes(ann[naming.ANN_MEMORY_LIMIT]),
        budget=budget,
        started_at=started_at(pod),
        growths=growths,
    )
    st.current_pod = pod["metadata"]["name"]
    st.next_number = last
    st.status = StepStatus.PENDING
    st.message = f"attempt {last} adopted after a restart"
    return None


def _retry_next(st: StepState, last: int, decision: Retry, retry_at: float | None) -> None:
    st.next_number = last + 1
    st.next_request, st.next_limit = decision.memory_request, decision.memory_limit
    st.next_budget = decision.budget
    st.not_before = retry_at or 0.0
    st.status, st.message = StepStatus.RETRYING, decision.message


def resume(engine: Engine, pods: list[Pod], restarted: bool | None = None) -> int:
    """Restore every step of `engine` from `pods` (the informer's first list); returns how
    many steps had attempts. `restarted`: a supervisor ran this run before (default: some
    pods exist). Hooks are replayed for what a crash may have cut short, so observers must
    be idempotent per (step, attempt number)."""
    engine.inline_retries = False  # slots are counted only at the end
    try:
        return _resume(engine, pods, restarted)
    finally:
        engine.inline_retries = True


def _resume(engine: Engine, pods: list[Pod], restarted: bool | None) -> int:
    groups = group_by_step(pods)
    recorded: dict[str, dict[int, AttemptResult]] = {}
    if groups or restarted:
        recorded = results_by_step(engine.cluster.run_results(engine.spec.run_id))
    for step in sorted(set(groups) | set(recorded)):
        by_number = groups.get(step, {})
        st = engine.states.get(step)
        if st is None:
            log.warning("pods of unknown step %r in run %s; ignored", step, engine.spec.run_id)
            continue
        results = recorded.get(step, {})
        res = rebuild_step(st, by_number, results)
        _restore_history(engine, st, res, results)
        if st.current is not None:
            engine.hook("on_attempt_started", step, st.current)
            continue
        if res is None:
            continue
        pod = by_number.get(res.record.number)
        if pod is not None:
            emit_result_event(engine, step, pod, res)
        engine.hook("on_attempt_finished", step, res.record, res.decision)
        if res.stopped:
            engine.stop_requested = True
        if st.status.terminal:
            engine.finish_step(st, st.status, st.message)
        elif st.status is StepStatus.RETRYING:
            recover_vanished(engine, st)
    if groups or restarted:  # not a fresh run: a first attempt may have vanished meanwhile
        for name, state in engine.states.items():
            if name not in groups and name not in recorded:
                recover_vanished(engine, state)
    engine.slots.flying = {name for name, st in engine.states.items() if st.current is not None}
    return len(set(groups) | set(recorded))


def _restore_history(
    engine: Engine, st: StepState, last: AttemptResult | None, results: dict[int, AttemptResult]
) -> None:
    """Tell the observer about the attempts that ended before the restart and whose hooks
    ran then (`on_attempt_restored`): its history is whole, and no hook runs twice."""
    replayed = last.record.number if last is not None else None
    for record in st.attempts:
        res = results.get(record.number)
        if record.number != replayed and hasattr(engine.observer, "on_attempt_restored"):
            engine.hook("on_attempt_restored", st.name, record, res.decision if res else None)


def recover_vanished(engine: Engine, st: StepState) -> None:
    """The attempt this step would start next may have been created by the previous
    supervisor and vanished while none was running (node lost, pod GC). Its Events outlive
    it: if any name it, it existed, so it is judged gone (node_lost unless the Events say
    OOM) and decided on, instead of being silently run again under the same number."""
    name = naming.attempt_name(engine.spec.run_id, st.name, st.next_number, engine.spec.name_prefix)
    events = engine.cluster.pod_events(name)
    if not events or not engine.plan_memory(st):
        return
    involved = events[0].get("involvedObject") or {}
    stamps = [e.get("firstTimestamp") or e.get("eventTime") for e in events]
    st.current = AttemptRecord(
        number=st.next_number,
        memory_request=st.next_request,
        memory_limit=st.next_limit,
        budget=st.next_budget,  # type: ignore[arg-type]
        started_at=min((_epoch(t) for t in stamps if t), default=None),
    )
    st.current_pod = name
    log.warning("step %s: attempt %d vanished while no supervisor ran", st.name, st.next_number)
    outcome = classify(None, events, main_container=st.spec.main_container)
    pod = {
        "metadata": {"name": name, "namespace": engine.spec.namespace, "uid": involved.get("uid")}
    }
    finish_attempt(engine, st, pod, outcome, gone=True)


def _epoch(stamp: str) -> float:
    return created_at({"metadata": {"creationTimestamp": stamp}}) or 0.0
