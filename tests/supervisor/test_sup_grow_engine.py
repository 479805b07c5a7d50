"""In-place growth in the engine's state machine, with recorded pod dicts and a fake
/version + pods/resize (FakeResizeApi: an old server and a kubelet's Infeasible answer cannot
run here; the real tier's integration/supervisor/test_sup_grow.py covers real resizes)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sup_fakes import Harness, running, step, terminated

from zenml_oom_orchestrator.supervisor.grow import ANN_GROWTHS

MI = 2**20


def ready(pod: dict[str, Any], is_ready: bool, limit_mi: int | None = None) -> None:
    running(pod)
    status = pod["status"]["containerStatuses"][0]
    status["ready"] = is_ready
    if limit_mi is not None:
        memory = f"{limit_mi}Mi"
        status["resources"] = {"requests": {"memory": memory}, "limits": {"memory": memory}}


def test_an_old_server_is_said_once_and_its_pods_get_no_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    h = Harness(step("a"), step("b"), server=(1, 32))
    h.settle()
    for name in ("a", "b"):
        pod = h.pod(name, 1)
        assert "readinessProbe" not in pod["spec"]["containers"][0]
        ready(pod, False)
    h.settle()
    assert h.resize_api.resized == []
    said = [r.message for r in caplog.records if "in-place memory growth is off" in r.message]
    assert len(said) == 1 and "1.32, before 1.33" in said[0]


def test_growth_off_in_the_policy_adds_no_probe() -> None:
    h = Harness(
        step("a", policy={"initial_memory": "512Mi", "grow_in_place": False}), server=(1, 35)
    )
    h.settle()
    assert "readinessProbe" not in h.pod("a", 1)["spec"]["containers"][0]


def test_the_check_period_of_the_policy_is_the_probes() -> None:
    h = Harness(
        step("a", policy={"initial_memory": "512Mi", "grow_check_seconds": 5}), server=(1, 35)
    )
    h.settle()
    assert h.pod("a", 1)["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] == 5


def test_a_slow_check_period_is_waited_out_before_not_ready_is_trusted_again() -> None:
    """After a growth the status keeps the old limit's ready=false until the probe runs again,
    which with grow_check_seconds=20 may be 20 s later: no second growth before then."""
    h, pod = crossed_at_512mi(grow_check_seconds=20)
    now = [h.engine.clock()]
    h.engine.clock = lambda: now[0]  # type: ignore[method-assign]
    ready(pod, False, 1024)  # the growth is in force; ready=false is still the old limit's
    h.settle()
    now[0] += 25  # past the 10 s of a one-second check, within the 20 s period's grace
    ready(pod, False, 1024)
    h.settle()
    assert len(h.resize_api.resized) == 1
    now[0] += 10  # 35 s after: the probe has run at 1Gi and still fails
    ready(pod, False, 1024)
    h.settle()
    assert [r[3] // MI for r in h.resize_api.resized] == [1024, 2048]


def test_not_ready_grows_twice_in_place_then_succeeds_in_one_attempt() -> None:
    h = Harness(step("a", policy={"initial_memory": "512Mi"}), server=(1, 35))
    h.settle()
    pod = h.pod("a", 1)
    probe = pod["spec"]["containers"][0]["readinessProbe"]
    assert probe["exec"]["command"][-1] == "800" and probe["periodSeconds"] == 5
    ready(pod, True, 512)
    h.settle()
    ready(pod, False, 512)  # the probe failed: above 80 % of 512Mi
    h.settle()
    assert h.resize_api.resized == [(pod["metadata"]["name"], "main", 1024 * MI, 1024 * MI)]
    ready(pod, False, 1024)  # the kubelet applied it (status.resources)
    h.settle()
    ready(pod, False, 1024)  # stale: the probe has not run at the new limit yet
    h.settle()
    assert len(h.resize_api.resized) == 1
    ready(pod, True, 1024)  # it passed at 1Gi ...
    h.settle()
    ready(pod, False, 1024)  # ... and failed again later: the next growth
    h.settle()
    assert [r[3] // MI for r in h.resize_api.resized] == [1024, 2048]
    ready(pod, True, 2048)
    h.settle()
    on_pod = json.loads(pod["metadata"]["annotations"][ANN_GROWTHS])
    assert [(g["to_limit"] // MI, g["outcome"]) for g in on_pod] == [
        (1024, "in_force"),
        (2048, "in_force"),
    ]
    terminated(pod, "Completed", 0)
    h.settle()
    (attempt,) = h.engine.states["a"].attempts
    assert attempt.memory_limit == 2048 * MI
    assert [g.outcome for g in attempt.growths] == ["in_force", "in_force"]
    assert [e[1] for e in h.cluster.events].count("MemoryGrown") == 2


def crossed_at_512mi(**policy: Any) -> tuple[Harness, dict[str, Any]]:
    """A step at 512Mi whose probe passed, then failed: the supervisor has asked to grow it."""
    h = Harness(step("a", policy={"initial_memory": "512Mi", **policy}), server=(1, 35))
    h.settle()
    pod = h.pod("a", 1)
    ready(pod, True, 512)
    h.settle()
    ready(pod, False, 512)
    h.settle()
    return h, pod


def test_an_infeasible_growth_falls_back_to_the_oom_retry() -> None:
    h, pod = crossed_at_512mi()
    pod["status"]["conditions"] = [
        {
            "type": "PodResizePending",
            "status": "True",
            "reason": "Infeasible",
            "message": "Node didn't have enough capacity: memory, requested: 1073741824",
        }
    ]
    h.settle()
    ready(pod, False, 512)  # still above the threshold: no second try in this attempt
    pod["status"]["conditions"] = []
    h.settle()
    assert len(h.resize_api.resized) == 1
    assert [e[1] for e in h.cluster.events] == ["MemoryNotGrown"]
    terminated(pod, "OOMKilled", 137)
    h.settle()
    first = h.engine.states["a"].attempts[0]
    assert [(g.outcome, g.message[:26]) for g in first.growths] == [
        ("infeasible", "Node didn't have enough ca")
    ]
    assert first.memory_limit == 512 * MI  # what was in force when it was killed
    assert h.pod("a", 2)["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"


def test_a_resize_in_flight_when_the_kernel_kills_is_overtaken_and_the_retry_escalates() -> None:
    h, pod = crossed_at_512mi()
    assert len(h.resize_api.resized) == 1
    terminated(pod, "OOMKilled", 137)
    # The resize reached the dead container's cgroup: the status says 1Gi; the kill came first.
    pod["status"]["containerStatuses"][0]["resources"] = {"limits": {"memory": "1Gi"}}
    h.settle()
    first = h.engine.states["a"].attempts[0]
    assert [(g.outcome, g.to_limit // MI) for g in first.growths] == [("overtaken", 1024)]
    assert first.memory_limit == 512 * MI
    assert h.pod("a", 2)["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"


def killed_unseen(**policy: Any) -> tuple[Harness, str]:
    """A step whose probe passed, then OOM-killed before any check saw it cross; the OOMRetry
    Event's message (the retry decision's)."""
    h = Harness(step("a", policy={"initial_memory": "512Mi", **policy}), server=(1, 35))
    h.settle()
    pod = h.pod("a", 1)
    ready(pod, True, 512)
    h.settle()
    terminated(pod, "OOMKilled", 137)
    h.settle()
    (said,) = [m for _, reason, m in h.cluster.events if reason == "OOMRetry"]
    return h, said


def test_an_oom_kill_between_two_slow_checks_says_what_would_have_grown_it() -> None:
    h, said = killed_unseen()
    hint = (
        "Not grown in place first: the near-limit check, every 5 s, did not see it pass 80% "
        "of 512Mi in time (grow_check_seconds=1 checks every second)."
    )
    assert said.startswith("step 'a' was OOM-killed") and said.endswith(hint), said
    (first,) = h.engine.states["a"].attempts
    assert first.message.endswith("; " + hint[0].lower() + hint[1:-1])
    assert h.pod("a", 2)["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"


@pytest.mark.parametrize(
    "policy",
    [{"grow_check_seconds": 1}, {"grow_in_place": False}, {"max_growths_per_attempt": 0}],
    ids=["checked-every-second", "growth-off", "no-growths-left"],
)
def test_no_such_hint_when_a_shorter_check_could_not_have_grown_it(policy: dict[str, Any]) -> None:
    _, said = killed_unseen(**policy)
    assert "OOM-killed" in said and "grow_check_seconds" not in said, said
