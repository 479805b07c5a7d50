"""The engine's state machine, driven with recorded pod dicts and no server."""

from __future__ import annotations

import json
import time

from sup_fakes import GI, FakeCluster, Harness, Recorder, running, step, terminated, unschedulable

from zenml_oom_orchestrator.outcome import OutcomeKind
from zenml_oom_orchestrator.policy import Retry
from zenml_oom_orchestrator.supervisor import FailureMode, RunStatus, naming

MI = 2**20


def mem(pod: dict) -> str:
    return pod["spec"]["containers"][0]["resources"]["limits"]["memory"]


def test_oom_retries_with_more_memory_and_records_everything() -> None:
    h = Harness(step("s"))
    h.settle()
    a1 = h.pod("s", 1)
    assert mem(a1) == "256Mi" and a1["spec"]["restartPolicy"] == "Never"
    assert a1["metadata"]["labels"] == {
        "run_id": "r1",
        "step_name": "s",
        "attempt": "1",
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
    }
    assert h.status("s") == "pending"
    running(a1)
    h.settle()
    assert h.status("s") == "running"
    terminated(a1, "OOMKilled", 137)
    h.settle()
    a2 = h.pod("s", 2)
    assert mem(a2) == "512Mi"
    assert (
        json.loads(a2["metadata"]["annotations"][naming.ANN_PREVIOUS_OUTCOME])["kind"]
        == "oom_killed"
    )
    result = json.loads(a1["metadata"]["annotations"][naming.ANN_RESULT])
    assert result["record"]["outcome"]["kind"] == "oom_killed"
    assert result["record"]["node"] == "node-1"
    assert result["decision"]["decision"] == "retry" and result["decision"]["budget"] == "oom"
    assert h.cluster.events[0][:2] == (a1["metadata"]["name"], "OOMRetry")
    terminated(a2, "Completed", 0)
    h.settle()
    st = h.engine.states["s"]
    assert st.status.value == "succeeded"
    assert [(a.number, a.memory_limit // MI, a.budget) for a in st.attempts] == [
        (1, 256, None),
        (2, 512, "oom"),
    ]
    assert h.engine.run_result().status is RunStatus.SUCCEEDED
    assert [c[0] for c in h.observer.calls] == [
        "started",
        "finished",
        "started",
        "finished",
        "step",
    ]


def test_app_error_keeps_memory_and_uses_the_app_budget() -> None:
    h = Harness(step("s", app_retry={"max_retries": 1}))
    h.settle()
    terminated(h.pod("s", 1), "Error", 3)
    h.settle()
    assert mem(h.pod("s", 2)) == "256Mi"
    terminated(h.pod("s", 2), "Error", 3)
    h.settle()
    st = h.engine.states["s"]
    assert st.status.value == "failed" and len(st.attempts) == 2
    assert [e[1] for e in h.cluster.events] == ["RetryAppError", "GaveUp"]


def test_vanished_pod_is_judged_by_its_last_state_then_node_lost() -> None:
    h = Harness(step("s"))
    h.settle()
    a1 = h.pod("s", 1)
    terminated(a1, "OOMKilled", 137)
    h.informer.vanish(a1["metadata"]["name"])  # deleted after it died: still an OOM
    h.settle()
    a2 = h.pod("s", 2)
    assert mem(a2) == "512Mi"
    running(a2)
    h.settle()
    h.informer.vanish(a2["metadata"]["name"])  # vanished while running: node lost
    h.settle()
    st = h.engine.states["s"]
    assert [a.outcome.kind for a in st.attempts if a.outcome] == [
        OutcomeKind.OOM_KILLED,
        OutcomeKind.NODE_LOST,
    ]
    a3 = h.pod("s", 3)
    assert mem(a3) == "512Mi"  # same memory after a lost node
    # a2 could not carry its result (gone): a3 carries it for a restart.
    carried = json.loads(a3["metadata"]["annotations"][naming.ANN_PREVIOUS_RESULT])
    assert carried["record"]["number"] == 2


def test_dag_continue_on_failure_skips_only_downstream() -> None:
    h = Harness(step("a"), step("b", ("a",)), step("c"), step("d", ("c",)))
    h.settle()
    assert set(h.cluster.pods) == {
        naming.attempt_name("r1", "a", 1),
        naming.attempt_name("r1", "c", 1),
    }
    terminated(h.pod("a", 1), "Error", 1)
    terminated(h.pod("c", 1), "Completed", 0)
    h.settle()
    terminated(h.pod("d", 1), "Completed", 0)
    h.settle()
    assert {n: h.status(n) for n in "abcd"} == {
        "a": "failed",
        "b": "skipped",
        "c": "succeeded",
        "d": "succeeded",
    }
    assert h.engine.all_terminal() and h.engine.run_result().status is RunStatus.FAILED


def test_fail_fast_stops_in_flight_and_skips_unstarted() -> None:
    h = Harness(step("a"), step("b"), step("c", ("b",)), failure_mode=FailureMode.FAIL_FAST)
    h.settle()
    running(h.pod("b", 1))
    terminated(h.pod("a", 1), "Error", 1)
    h.settle()
    assert {n: h.status(n) for n in "abc"} == {"a": "failed", "b": "stopped", "c": "skipped"}
    assert naming.attempt_name("r1", "b", 1) in h.cluster.deleted
    assert h.engine.states["b"].attempts[0].outcome.reason == "Stopped"  # type: ignore[union-attr]
    stopped = [e for e in h.cluster.event_objects if e["reason"] == "Stopped"]
    assert [e["type"] for e in stopped] == ["Normal"]  # a stop is not a warning


def test_stop_on_failure_lets_in_flight_finish() -> None:
    h = Harness(
        step("a"),
        step("b"),
        step("c", ("b",)),
        step("d"),
        failure_mode=FailureMode.STOP_ON_FAILURE,
        max_parallelism=2,
    )
    h.settle()
    terminated(h.pod("a", 1), "Error", 1)
    h.settle()
    assert h.status("b") == "pending" and h.status("d") == "skipped"
    terminated(h.pod("b", 1), "Completed", 0)
    h.settle()
    assert {n: h.status(n) for n in "abcd"} == {
        "a": "failed",
        "b": "succeeded",
        "c": "skipped",
        "d": "skipped",
    }


def test_max_parallelism_is_respected() -> None:
    h = Harness(*(step(f"s{i}") for i in range(5)), max_parallelism=2)
    h.settle()
    assert len(h.cluster.pods) == 2
    first = sorted(h.cluster.pods)[0]
    terminated(h.cluster.pods[first], "Completed", 0)
    h.settle()
    live = [p for p in h.cluster.pods.values() if p["status"]["phase"] == "Pending"]
    assert len(live) == 2 and len(h.cluster.pods) == 3


def test_cached_step_succeeds_without_a_pod() -> None:
    h = Harness(step("a"), step("b", ("a",)), observer=Recorder(skip=("a",)))
    h.settle()
    assert h.status("a") == "succeeded" and h.engine.states["a"].cached
    assert list(h.cluster.pods) == [naming.attempt_name("r1", "b", 1)]


def test_start_above_every_node_is_refused_without_a_pod() -> None:
    h = Harness(step("big", policy={"initial_memory": "16Gi"}), cluster=FakeCluster(8 * GI))
    h.settle()
    assert h.status("big") == "failed" and not h.cluster.creates
    assert "largest node has 8Gi allocatable" in h.engine.states["big"].message


def test_unschedulable_waits_then_times_out() -> None:
    h = Harness(step("s", policy={"initial_memory": "1Gi", "pending_timeout_seconds": 600}))
    h.settle()
    unschedulable(h.pod("s", 1))
    h.settle()
    assert h.status("s") == "pending"
    waiting = [c for c in h.observer.calls if c[0] == "waiting"]
    assert len(waiting) == 1 and "waiting for memory other pods hold" in waiting[0][2]
    h.engine.states["s"].current = h.engine.states["s"].current.__class__(  # type: ignore[union-attr]
        number=1, memory_request=GI, memory_limit=GI, started_at=1.0
    )
    h.queue.add("s")
    h.settle()
    st = h.engine.states["s"]
    assert st.status.value == "failed" and "pending_timeout (600s)" in st.message
    assert naming.attempt_name("r1", "s", 1) in h.cluster.deleted


def test_unschedulable_that_can_never_fit_ends_at_once() -> None:
    cluster = FakeCluster(8 * GI)
    h = Harness(step("s", policy={"initial_memory": "4Gi"}), cluster=cluster)
    h.settle()
    cluster.node = 2 * GI  # the node shrank (or the big one left) after the pod was created
    unschedulable(h.pod("s", 1))
    h.settle()
    st = h.engine.states["s"]
    assert st.status.value == "failed" and "can never fit" in st.message


def test_observer_errors_do_not_stop_the_run() -> None:
    class Broken(Recorder):
        def on_attempt_started(self, step: str, attempt: object) -> None:
            raise RuntimeError("store down")

    h = Harness(step("s"), observer=Broken())
    h.settle()
    terminated(h.pod("s", 1), "Completed", 0)
    h.settle()
    assert h.status("s") == "succeeded"


def test_resume_continues_without_duplicates() -> None:
    cluster = FakeCluster()
    before = Harness(step("a"), step("b"), step("c"), step("d", ("a",)), cluster=cluster)
    before.settle()
    terminated(before.pod("a", 1), "OOMKilled", 137)
    terminated(before.pod("b", 1), "Error", 1)
    running(before.pod("c", 1))
    before.settle()  # a -> retry (a2 created), b -> failed, c running
    terminated(before.pod("a", 2), "Completed", 0)  # finishes while nobody watches
    creates = len(cluster.creates)

    after = Harness(step("a"), step("b"), step("c"), step("d", ("a",)), cluster=cluster)
    assert after.resume() == 3
    assert after.status("a") == "pending" and after.status("b") == "failed"
    after.settle()
    assert after.status("a") == "succeeded"
    assert [a.memory_limit // MI for a in after.engine.states["a"].attempts] == [256, 512]
    assert after.status("d") == "pending"  # started now that a succeeded
    assert cluster.creates[creates:] == [naming.attempt_name("r1", "d", 1)]
    # Events are idempotent: a1's OOMRetry was not emitted twice.
    reasons = [(p, r) for p, r, _ in cluster.events]
    assert len(reasons) == len(set(reasons))


def test_resume_after_a_persisted_retry_creates_the_next_attempt_once() -> None:
    cluster = FakeCluster()
    app_retry = {"max_retries": 2, "delay": 0.2}
    before = Harness(step("a", app_retry=app_retry), cluster=cluster)
    before.settle()
    terminated(before.pod("a", 1), "Error", 1)
    before.settle()  # decided and written on a1; a2 waits for the 0.2 s delay
    saved = json.loads(before.pod("a", 1)["metadata"]["annotations"][naming.ANN_RESULT])
    assert saved["decision"]["budget"] == "app" and saved["retry_at"]
    assert naming.attempt_name("r1", "a", 2) not in cluster.pods
    # The supervisor dies here. A new one resumes: the delay still holds, a2 comes once.
    after = Harness(step("a", app_retry=app_retry), cluster=cluster)
    after.resume()
    assert after.status("a") == "retrying"
    time.sleep(0.25)
    after.settle()
    after.settle()
    assert cluster.creates.count(naming.attempt_name("r1", "a", 2)) == 1
    current = after.engine.states["a"].current
    assert current is not None and current.number == 2 and current.budget == "app"
    assert [a.number for a in after.engine.states["a"].attempts] == [1]


def test_resume_reads_a_vanished_attempt_from_its_successor() -> None:
    cluster = FakeCluster()
    before = Harness(step("a"), cluster=cluster)
    before.settle()
    running(before.pod("a", 1))
    before.settle()
    before.informer.vanish(naming.attempt_name("r1", "a", 1))
    before.settle()  # node lost -> a2 at the same memory, carrying a1's result
    after = Harness(step("a"), cluster=cluster)
    after.resume()
    st = after.engine.states["a"]
    assert [a.number for a in st.attempts] == [1]
    assert st.attempts[0].outcome.kind is OutcomeKind.NODE_LOST  # type: ignore[union-attr]
    assert st.current is not None and st.current.number == 2
    assert st.current.budget == "infrastructure"


def test_retry_decision_round_trips() -> None:
    from zenml_oom_orchestrator.supervisor.state import decision_from_dict

    r = Retry(1, 2, 0.5, "oom", "oom_killed", "m")
    assert decision_from_dict(r.to_dict()) == r


def test_state_stays_flat_under_long_churn() -> None:
    # 20 steps, each failing 30 times with app errors: queue timers, tombstones and the
    # cluster cache do not grow with the number of attempts, only records do.
    steps = [step(f"s{i}", app_retry={"max_retries": 30}) for i in range(20)]
    h = Harness(*steps, max_parallelism=5)
    for _ in range(400):
        h.settle()
        live = [p for p in h.cluster.pods.values() if p["status"]["phase"] == "Pending"]
        if not live:
            break
        for pod in live:
            terminated(pod, "Error", 1)
        assert h.queue.pending_timers() <= len(steps)
        assert len(h.queue) <= len(steps)
        assert not h.informer.tombstones
    assert h.engine.all_terminal()
    assert all(len(s.attempts) == 31 for s in h.engine.states.values())
    assert len(h.queue._heap) <= 2 * len(steps) + 16


def test_resume_judges_an_attempt_that_vanished_while_down() -> None:
    cluster = FakeCluster()
    before = Harness(step("a"), step("b"), cluster=cluster)
    before.settle()
    terminated(before.pod("a", 1), "OOMKilled", 137)
    before.settle()  # a2 (512Mi) created
    running(before.pod("a", 2))
    running(before.pod("b", 1))
    # The supervisor dies; both in-flight pods vanish with their node meanwhile.
    cluster.lose(naming.attempt_name("r1", "a", 2))
    cluster.lose(naming.attempt_name("r1", "b", 1))

    after = Harness(step("a"), step("b"), cluster=cluster)
    after.resume()
    after.settle()
    a, b = after.engine.states["a"], after.engine.states["b"]
    assert [x.outcome.kind for x in a.attempts if x.outcome] == [
        OutcomeKind.OOM_KILLED,
        OutcomeKind.NODE_LOST,
    ]
    assert a.current is not None and a.current.number == 3
    assert a.current.memory_limit // MI == 512 and a.current.budget == "infrastructure"
    assert [x.outcome.kind for x in b.attempts if x.outcome] == [OutcomeKind.NODE_LOST]
    assert b.current is not None and b.current.number == 2
    # The lost attempts are recorded on their successors, for the next restart.
    carried = after.pod("a", 3)["metadata"]["annotations"][naming.ANN_PREVIOUS_RESULT]
    assert json.loads(carried)["record"]["number"] == 2
    assert ("started", "a", 3) in after.observer.calls


def test_a_learned_start_is_the_first_attempts_memory_and_its_record_says_why() -> None:
    learned = {"request": GI, "limit": GI, "run": "r0", "how": "succeeded", "seen_at": GI}
    h = Harness(
        step("s", learned=learned),
        step("t", policy={"max_memory": "512Mi", "initial_memory": "256Mi"}, learned=learned),
        cluster=FakeCluster(8 * GI),
    )
    h.settle()
    assert mem(h.pod("s", 1)) == "1Gi"
    assert mem(h.pod("t", 1)) == "512Mi"  # needed more than its cap: starts at the cap
    terminated(h.pod("s", 1), "OOMKilled", 137)
    h.settle()
    assert mem(h.pod("s", 2)) == "2Gi"  # escalation goes on from the learned start
    terminated(h.pod("s", 2), "Completed", 0)
    h.settle()
    first, second = h.engine.states["s"].attempts
    assert first.memory_source == "learned: succeeded at 1Gi in run r0"
    assert second.memory_source == ""  # a retry's memory is the decision's, not a start
    assert h.engine.states["t"].current is not None
    assert h.engine.states["t"].current.memory_source.endswith("capped at max_memory 512Mi")


class ReportedSuccess(Recorder):
    """An observer that saw these steps' code report success (ZenML's COMPLETED step run)."""

    def __init__(self, *succeeded: str) -> None:
        super().__init__()
        self.succeeded = set(succeeded)

    def reported_success(self, step: str) -> bool:
        return step in self.succeeded


def test_an_attempt_killed_after_its_code_reported_success_is_not_run_again() -> None:
    observer = ReportedSuccess()
    h = Harness(step("a"), step("b"), step("after", ("a",)), observer=observer)
    h.settle()
    terminated(h.pod("b", 1), "OOMKilled", 137)  # b had not reported: retried as ever
    observer.succeeded.add("a")  # a's step run is COMPLETED; then its teardown is OOM-killed
    terminated(h.pod("a", 1), "OOMKilled", 137)
    h.settle()
    a = h.engine.states["a"]
    assert a.status.value == "succeeded" and len(a.attempts) == 1
    assert a.message == (
        "succeeded on attempt 1 (oom_killed (container main, exit 137, OOMKilled), "
        "after the step had reported success: not run again)"
    )
    assert naming.attempt_name("r1", "a", 2) not in h.cluster.creates
    assert h.status("after") == "pending"  # its downstream goes on
    assert mem(h.pod("b", 2)) == "512Mi"
    event = next(e for e in h.cluster.events if e[0] == naming.attempt_name("r1", "a", 1))
    assert event[1] == "Succeeded" and "after the step had reported success" in event[2]
    kinds = {e["reason"]: e["type"] for e in h.cluster.event_objects}
    assert kinds["Succeeded"] == "Warning"  # the pod was killed: worth a look

    # A restarted supervisor reads the same from the Event: succeeded, with the why.
    again = Harness(step("a"), step("b"), step("after", ("a",)), cluster=h.cluster)
    again.resume()
    assert again.status("a") == "succeeded" and "not run again" in again.engine.states["a"].message
