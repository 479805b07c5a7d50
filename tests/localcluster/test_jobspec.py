"""The Job controller's pure rules: defaults, names, podFailurePolicy matching."""

from __future__ import annotations

from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.jobspec import (
    default_job,
    generate_pod_name,
    match_pod_failure_policy,
    selector_string,
    set_condition,
)
from zenml_oom_orchestrator.localcluster.selectors import label_matcher


def failed_pod(*statuses: tuple[str, int], init: bool = False, conditions: Any = ()) -> dict:
    key = "initContainerStatuses" if init else "containerStatuses"
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "status": {
            "phase": "Failed",
            "conditions": list(conditions),
            key: [
                {"name": name, "state": {"terminated": {"exitCode": code}}}
                for name, code in statuses
            ],
        },
    }


def job_with(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"podFailurePolicy": {"rules": list(rules)}}}


def test_default_job_like_the_api_server() -> None:
    job: dict[str, Any] = {
        "metadata": {"name": "j", "uid": "u1"},
        "spec": {"podFailurePolicy": {"rules": []}, "template": {"spec": {}}},
    }
    default_job(job)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["manualSelector"] is False and spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "Failed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["job-name"] == "j" and labels["controller-uid"] == "u1"
    # batch/v1 gives a Job without labels its template's labels.
    assert job["metadata"]["labels"] == labels
    before = repr(job)
    default_job(job)
    assert repr(job) == before


def test_default_job_defaults_pod_condition_status_to_true() -> None:
    # ZenML's stock step Jobs omit it; kube-apiserver fills it and clients require it.
    rule = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    job: dict[str, Any] = {
        "metadata": {"name": "j", "uid": "u"},
        "spec": {"podFailurePolicy": {"rules": [rule]}, "template": {"spec": {}}},
    }
    default_job(job)
    assert rule["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]


def test_default_job_keeps_a_work_queue_job_without_completions() -> None:
    job: dict[str, Any] = {"metadata": {"name": "j", "uid": "u"}, "spec": {"parallelism": 3}}
    default_job(job)
    assert job["spec"].get("completions") is None and job["spec"]["parallelism"] == 3


def test_selector_string_round_trips_through_the_store_parser() -> None:
    selector = {
        "matchLabels": {"a": "1"},
        "matchExpressions": [
            {"key": "b", "operator": "In", "values": ["x", "y"]},
            {"key": "c", "operator": "NotIn", "values": ["z"]},
            {"key": "d", "operator": "Exists"},
            {"key": "e", "operator": "DoesNotExist"},
        ],
    }
    text = selector_string(selector)
    matches = label_matcher(text)
    assert matches({"a": "1", "b": "x", "c": "q", "d": ""})
    assert not matches({"a": "1", "b": "x", "d": "", "e": "1"})
    assert not matches({"a": "1", "b": "x", "c": "z", "d": ""})


def test_generated_names_are_truncated_like_generate_name() -> None:
    name = generate_pod_name("x" * 70)
    assert len(name) == 63 and name.startswith("x" * 58)
    assert set(name[58:]) <= set("bcdfghjklmnpqrstvwxz2456789")


@pytest.mark.parametrize(
    ("requirement", "pod", "expected"),
    [
        ({"operator": "In", "values": [42]}, failed_pod(("main", 42)), "FailJob"),
        ({"operator": "In", "values": [42]}, failed_pod(("main", 1)), None),
        ({"operator": "NotIn", "values": [137]}, failed_pod(("main", 137)), None),
        ({"operator": "NotIn", "values": [137]}, failed_pod(("main", 1)), "FailJob"),
        # Exit code 0 never matches, even with NotIn.
        ({"operator": "NotIn", "values": [1]}, failed_pod(("main", 0)), None),
        # containerName restricts the match.
        ({"containerName": "side", "operator": "In", "values": [3]}, failed_pod(("main", 3)), None),
        (
            {"containerName": "side", "operator": "In", "values": [3]},
            failed_pod(("main", 0), ("side", 3)),
            "FailJob",
        ),
        # Init containers are checked too.
        ({"operator": "In", "values": [5]}, failed_pod(("init", 5), init=True), "FailJob"),
    ],
)
def test_on_exit_codes(requirement: dict, pod: dict, expected: str | None) -> None:
    action, message = match_pod_failure_policy(
        job_with({"action": "FailJob", "onExitCodes": requirement}), pod
    )
    assert action == expected
    assert (message is None) == (expected is None)


def test_first_matching_rule_wins_and_conditions_match() -> None:
    disrupted = {"type": "DisruptionTarget", "status": "True"}
    pod = failed_pod(("main", 137), conditions=[disrupted])
    job = job_with(
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [137]}},
    )
    action, message = match_pod_failure_policy(job, pod)
    assert action == "Ignore"
    assert message == "Pod ns/p has condition DisruptionTarget matching Ignore rule at index 0"
    assert match_pod_failure_policy(job, failed_pod(("main", 137)))[0] == "FailJob"
    assert match_pod_failure_policy({"spec": {}}, pod) == (None, None)


def test_set_condition_moves_transition_time_only_on_change() -> None:
    status: dict[str, Any] = {}
    set_condition(status, "Suspended", "True", "JobSuspended", "m", "t1")
    set_condition(status, "Suspended", "True", "JobSuspended", "m", "t2")
    assert status["conditions"][0]["lastTransitionTime"] == "t1"
    assert status["conditions"][0]["lastProbeTime"] == "t1"  # unchanged: nothing to write
    set_condition(status, "Suspended", "False", "JobResumed", "m", "t3")
    assert len(status["conditions"]) == 1
    assert status["conditions"][0]["lastTransitionTime"] == "t3"
