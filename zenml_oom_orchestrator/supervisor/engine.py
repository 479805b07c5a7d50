"""The DAG and every step's attempt state machine: the single writer of step and run outcomes.

Facts flow one way: pod (from the informer cache) → classify → decide → (a failure: annotate
the pod, Event; finish.py) → next attempt → observer. Who may start when is slots.py. `reconcile(step)` is level-triggered and idempotent: it reads
the cache and the step's state and does the next thing, so it can run after any event, timer
or restart. Only the worker thread calls it (the work queue hands a key to one worker at a time).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from kubernetes.client.exceptions import ApiException

from zenml_oom_orchestrator.classify import classify, node_lost_in
from zenml_oom_orchestrator.outcome import Outcome, OutcomeKind
from zenml_oom_orchestrator.policy import (
    AttemptRecord,
    PolicyError,
)
from zenml_oom_orchestrator.supervisor import finish, manifests, naming, writes
from zenml_oom_orchestrator.supervisor.cluster import (
    ClusterApi,
    forbidden_advice,
    is_forbidden,
    refusal_text,
)
from zenml_oom_orchestrator.supervisor.grow import Grower
from zenml_oom_orchestrator.supervisor.informer import PodInformer
from zenml_oom_orchestrator.supervisor.observer import BaseObserver, Observer
from zenml_oom_orchestrator.supervisor.pending import (
    created_at,
    explain_unschedulable,
    judge_pending,
    next_memory,
    started_at,
)
from zenml_oom_orchestrator.supervisor.slots import Slots
from zenml_oom_orchestrator.supervisor.spec import (
    FailureMode,
    RunResult,
    RunSpec,
    StepStatus,
    run_status,
)
from zenml_oom_orchestrator.supervisor.state import (
    StepState,
)
from zenml_oom_orchestrator.supervisor.workqueue import WorkQueue
from zenml_oom_orchestrator.supervisor.writes import Writes

log = logging.getLogger(__name__)
NODES_TTL = 30.0  # node sizes are re-read at most this often
_BAD_UPSTREAM = {StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.STOPPED}


class Engine:
    def __init__(
        self,
        spec: RunSpec,
        cluster: ClusterApi,
        informer: PodInformer,
        queue: WorkQueue,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec, self.cluster, self.informer, self.queue = spec, cluster, informer, queue
        self.observer: Observer = observer or BaseObserver()
        self.clock = clock
        self.states = {s.name: StepState(s) for s in spec.steps}
        self.downstream: dict[str, list[str]] = {s.name: [] for s in spec.steps}
        for s in spec.steps:
            for u in s.upstream:
                self.downstream[u].append(s.name)
        # Kept incrementally so that hundreds of steps cost O(1) per event, not O(steps).
        self.slots = Slots(spec.max_parallelism, queue)  # in flight, and waiting for a slot
        self.finished: set[str] = set()  # steps in a terminal status
        # A zero-delay retry starts in the reconcile that decided it (not behind every other
        # queued step). Off while resume rebuilds state, so no slot is taken before all are
        # counted.
        self.inline_retries = True
        self.halted_by: str | None = None  # the failed step that halted the run
        self.stop_requested = False
        self.started_at = clock()
        self._room: tuple[float, tuple[int, int] | None] | None = None
        self.grower = Grower(self)  # in-place growth of running attempts (grow.py)
        # API writes: inline until the runner starts the pool (resume, tests run them inline).
        self.writes = Writes(queue)

    # -- helpers ------------------------------------------------------------------------------
    def hook(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.observer, name)(*args)
        except Exception:  # noqa: BLE001 - reporting must not stop the run
            log.exception("observer hook %s failed", name)
            return None

    def reported_success(self, step: str) -> bool:
        """Whether an observer saw the step's code report success (see BaseObserver)."""
        if not hasattr(self.observer, "reported_success"):
            return False
        return bool(self.hook("reported_success", step))

    def largest_node(self) -> int | None:
        return self.cluster.largest_node_memory(NODES_TTL)

    def room_beside_orchestrator(self) -> tuple[int, int] | None:
        """(room, held): the most memory a node can give attempts while this run's orchestrator
        pod holds ``held`` on its node; None when unknown. Read when an attempt is
        unschedulable, at most every NODES_TTL seconds."""
        now = self.clock()
        if self._room is None or now - self._room[0] >= NODES_TTL:
            self._room = (now, self._read_room())
        return self._room[1]

    def _read_room(self) -> tuple[int, int] | None:
        if self.spec.orchestrator_pod is None:
            return None
        try:
            own = self.cluster.pod_memory_request(self.spec.orchestrator_pod)
            nodes = self.cluster.node_memory()
        except Exception:  # noqa: BLE001 - advisory: pending_timeout still ends the wait
            log.warning("could not read the orchestrator pod's node and memory", exc_info=True)
            return None
        if not own or not nodes or own[1] == 0:
            return None
        node, held = own
        return max(m - (held if n == node else 0) for n, m in nodes), held

    def pending_timeout(self, st: StepState) -> float:
        return self.spec.pending_timeout_seconds or st.spec.policy.pending_timeout_seconds

    def in_flight(self) -> int:
        return len(self.slots)

    def all_terminal(self) -> bool:
        return len(self.finished) == len(self.states)

    def landed(self, st: StepState) -> None:
        """The step's attempt is over. Its slot is handed out (`slots.hand_out`) only once the
        step's own next move is known, so a zero-delay retry keeps it."""
        st.current = st.current_pod = None
        self.slots.landed(st.name)

    def enqueue_idle(self) -> None:
        """A parallelism slot or an upstream result changed: look at every idle step again."""
        for st in self.states.values():
            if not st.status.terminal and st.current is None:
                self.queue.add(st.name)

    # -- the state machine --------------------------------------------------------------------
    def reconcile(self, key: str) -> None:
        st = self.states.get(key)
        if st is None or self.writes.settle(key) or st.status.terminal:
            return  # (settle: its writes are in flight; their end queues it again)
        if self.stop_requested:
            finish.stop_step(self, st, "the run was stopped")
            return
        if st.current is not None:
            if self.halted_by and self.spec.failure_mode is FailureMode.FAIL_FAST:
                finish.stop_step(
                    self, st, f"step '{self.halted_by}' failed and failure_mode is fail_fast"
                )
                return
            self._observe(st)
            return
        self.maybe_start(st)

    def maybe_start(self, st: StepState) -> None:
        states = [self.states[u] for u in st.spec.upstream]
        bad = [u for u in states if u.status in _BAD_UPSTREAM]
        if bad:
            self.finish_step(
                st, StepStatus.SKIPPED, f"upstream step '{bad[0].name}' {bad[0].status.value}"
            )
            return
        if any(u.status is not StepStatus.SUCCEEDED for u in states):
            return
        if self.halted_by and (
            st.next_number == 1 or self.spec.failure_mode is FailureMode.FAIL_FAST
        ):
            mode = self.spec.failure_mode.value
            status = StepStatus.SKIPPED if st.next_number == 1 else StepStatus.STOPPED
            self.finish_step(st, status, f"not started: step '{self.halted_by}' failed ({mode})")
            return
        if not st.skip_checked:
            st.skip_checked = True
            if self.hook("should_skip", st.spec):
                st.cached = True
                self.finish_step(st, StepStatus.SUCCEEDED, "cached: no pod was started")
                return
        wait = st.not_before - self.clock()
        if wait > 0:
            self.queue.add_after(st.name, wait, writes.URGENT if st.next_number > 1 else 0)
            return
        if not self.slots.take(st.name, retry=st.next_number > 1):
            limit = self.spec.max_parallelism
            st.message = f"waiting for a parallelism slot (max_parallelism={limit})"
            return  # a finishing attempt hands the slot to the first waiter
        self._start_attempt(st)

    def plan_memory(self, st: StepState) -> bool:
        """Set the next attempt's memory (the start memory for attempt 1); False if the step
        was failed instead, because no node could ever hold it."""
        try:
            st.next_request, st.next_limit, st.next_source = next_memory(
                st.spec, st.next_number, st.next_request, st.next_limit, self.largest_node()
            )
        except PolicyError as err:  # refused before any pod exists
            self.finish_step(st, StepStatus.FAILED, f"step '{st.name}': {err}")
            return False
        return True

    def _start_attempt(self, st: StepState) -> None:
        if not self.plan_memory(st):
            return
        spec, number = st.spec, st.next_number
        name = naming.attempt_name(self.spec.run_id, spec.name, number, self.spec.name_prefix)
        previous = st.attempts[-1] if st.attempts else None
        started = self.clock()
        manifest = manifests.build_attempt_pod(
            spec.pod_template,
            name=name,
            namespace=self.spec.namespace,
            run_id=self.spec.run_id,
            step_name=spec.name,
            attempt=number,
            memory_request=st.next_request,
            memory_limit=st.next_limit,
            main_container=spec.main_container,
            previous_outcome=previous.outcome.to_dict() if previous and previous.outcome else None,
            previous_result=st.unpersisted,
            owner=self.spec.owner,
            started_at=started,
        )
        self.grower.prepare(st, manifest)
        self.slots.started(st.name)  # held while the create is in flight
        self.writes.submit(
            st.name,
            lambda: self.cluster.create_pod(manifest),
            lambda done: self._created(st, name, started, done),
            writes.RETRY if number > 1 else writes.FIRST,
        )

    def _created(self, st: StepState, name: str, started: float, done: Future[Any]) -> None:
        """The engine's side of attempt `st.next_number`'s create (run when it returned)."""
        number = st.next_number
        try:
            pod, adopted = done.result()
        except Exception as exc:
            self.slots.landed(st.name)
            if isinstance(exc, ApiException) and is_forbidden(exc):
                why = forbidden_advice(exc, self.spec.namespace)
            elif isinstance(exc, ApiException) and exc.status in (400, 422):
                why = refusal_text(exc)
            else:
                raise  # transient (a ServiceAccount not made yet too): the worker requeues
            self.finish_step(
                st, StepStatus.FAILED, f"the API refused attempt {number}'s pod: {why}"
            )
            return
        self.informer.assume(pod)
        st.unpersisted = None
        if adopted:  # created by a supervisor before a restart: its own stamp
            started = started_at(pod) or started
        st.current = AttemptRecord(
            number=number,
            memory_request=st.next_request,
            memory_limit=st.next_limit,
            budget=st.next_budget,  # type: ignore[arg-type]
            started_at=started,
            memory_source=st.next_source,
        )
        st.current_pod, st.status, st.waiting_reported = name, StepStatus.PENDING, False
        st.message = f"attempt {number} {'adopted' if adopted else 'created'}: pod {name}"
        self.hook("on_attempt_started", st.name, st.current)

    def _observe(self, st: StepState) -> None:
        assert st.current is not None and st.current_pod is not None
        name = st.current_pod
        pod = self.informer.get(name)
        gone = pod is None
        if gone:
            pod = self.informer.deleted(name)
            if pod is None:
                return  # not seen yet; the watch will deliver it
        assert pod is not None
        timeout = self.pending_timeout(st)

        def judge(p: dict[str, Any] | None, events: list[dict[str, Any]] | None = None) -> Outcome:
            return classify(
                p,
                events,
                main_container=st.spec.main_container,
                # judge_pending times Pending itself, from our own (sub-second) start time:
                # API timestamps are whole seconds, which would end attempts up to 1 s early.
                pending_timeout=math.inf,
                node_lost_timeout=self.spec.node_lost_timeout_seconds,
            )

        outcome = judge(pod)
        if gone and not outcome.terminal:  # vanished mid-flight: node lost, unless Events say OOM
            outcome = judge(None, self.cluster.pod_events(name))
        elif outcome.failed and outcome.kind is not OutcomeKind.OOM_KILLED:
            # Events can upgrade a bare kill to an OOM (runtimes that drop the reason).
            outcome = judge(pod, self.cluster.pod_events(name))
        if outcome.kind is OutcomeKind.PENDING:
            self._pending(st, pod, outcome, timeout)
            return
        if outcome.kind is OutcomeKind.RUNNING:
            st.status, st.message = StepStatus.RUNNING, f"attempt {st.current.number} running"
            self.grower.on_running(st, pod)
            lost_in = node_lost_in(pod, self.spec.node_lost_timeout_seconds)
            if lost_in is not None:  # nothing writes a pod on a silent node: look again then
                self.queue.add_after(st.name, max(lost_in, 0.1), writes.URGENT)
            return
        if outcome.kind is OutcomeKind.UNSCHEDULABLE:
            outcome = explain_unschedulable(
                outcome, st.current.memory_request, timeout, self.largest_node()
            )
        self.finish_attempt(st, pod, outcome, gone)

    def _pending(
        self, st: StepState, pod: dict[str, Any], outcome: Outcome, timeout: float
    ) -> None:
        assert st.current is not None
        created = st.current.started_at or created_at(pod) or self.clock()
        beside = self.room_beside_orchestrator() if outcome.reason == "Unschedulable" else None
        verdict = judge_pending(
            outcome,
            st.current.memory_request,
            self.largest_node(),
            self.clock() - created,
            timeout,
            beside,
        )
        if verdict.outcome is not None:
            self.finish_attempt(st, pod, verdict.outcome, False)
            return
        st.status, st.message = StepStatus.PENDING, f"attempt {st.current.number} {verdict.message}"
        if verdict.unschedulable and not st.waiting_reported:
            st.waiting_reported = True
            # Said once per attempt, in the orchestrator pod's log (a synchronous run streams it).
            log.info("step %s: %s", st.name, st.message)
            self.hook("on_attempt_waiting", st.name, st.current, st.message)
        self.queue.add_after(st.name, verdict.recheck_in, writes.URGENT)

    def finish_attempt(
        self, st: StepState, pod: dict[str, Any], outcome: Outcome, gone: bool
    ) -> None:
        self.grower.settle(st, pod, killed=outcome.kind is OutcomeKind.OOM_KILLED)
        finish.finish_attempt(self, st, pod, outcome, gone)

    def finish_step(self, st: StepState, status: StepStatus, message: str) -> None:
        st.status, st.message = status, message
        self.finished.add(st.name)
        self.slots.drop(st.name)
        log.info("step %s %s: %s", st.name, status.value, message)
        self.hook("on_step_finished", st.name, st.result())
        for d in self.downstream[st.name]:
            self.queue.add(d)
        if (
            status is StepStatus.FAILED
            and self.spec.failure_mode is not FailureMode.CONTINUE_ON_FAILURE
        ) and self.halted_by is None:
            self.halted_by = st.name
            for other in self.states.values():
                if not other.status.terminal:
                    self.queue.add(other.name)

    def give_up_on(self, key: str, message: str) -> None:
        """End a step the worker could not process (bounded requeues ran out)."""
        st = self.states.get(key)
        if st is None or st.status.terminal:
            return
        if st.current_pod is not None:
            try:
                self.cluster.delete_pod(st.current_pod)
            except Exception:  # noqa: BLE001 - the API is what keeps failing
                log.warning("could not delete pod %s of step %s", st.current_pod, key)
            self.landed(st)
        self.finish_step(st, StepStatus.FAILED, message)

    def request_stop(self) -> None:
        """Called from any thread; the worker does the deleting."""
        self.stop_requested = True
        for name in self.states:
            self.queue.add(name)

    def run_result(self) -> RunResult:
        steps = {n: s.result() for n, s in self.states.items()}
        status = run_status([s.status for s in steps.values()], self.stop_requested)
        return RunResult(self.spec.run_id, status, steps, self.started_at, self.clock())
