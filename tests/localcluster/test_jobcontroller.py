"""The Job controller against a bare Store: the test plays kubelet by writing pod statuses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.jobcontroller import JobController
from zenml_oom_orchestrator.localcluster.jobstatus import LOST_AFTER
from zenml_oom_orchestrator.localcluster.store import Store
from zenml_oom_orchestrator.localcluster.testing import wait_for

NS = "default"


@pytest.fixture
def store() -> Iterator[Store]:
    store = Store()
    controller = JobController(store, pod_backoff=0.05, pod_backoff_max=0.2)
    controller.start()
    yield store
    controller.stop()


def make_job(store: Store, name: str = "step", **spec: Any) -> dict[str, Any]:
    template = spec.pop("template_spec", None) or {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "python:3.11", "command": ["true"]}],
    }
    body = {
        "metadata": {"name": name},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": template}, **spec},
    }
    return store.create("jobs", body, namespace=NS)


def pods(store: Store, job: str = "step") -> list[dict[str, Any]]:
    items, _ = store.list("pods", NS, label_selector=f"job-name={job}")
    return sorted(items, key=lambda p: p["metadata"]["creationTimestamp"])


def running(store: Store, job: str = "step", n: int = 1) -> list[dict[str, Any]]:
    """Wait until the Job has `n` pods not yet finished; return them."""

    def live() -> list[dict[str, Any]]:
        items = [p for p in pods(store, job) if p["status"]["phase"] == "Pending"]
        return items if len(items) == n else []

    return wait_for(live, timeout=5, what=f"{n} live pods of {job}")


def finish(
    store: Store,
    pod: dict[str, Any],
    exit_code: int = 0,
    reason: str | None = None,
    container: str = "main",
    conditions: list[dict[str, Any]] | None = None,
) -> None:
    """What the kubelet writes when the container ends."""
    phase = "Succeeded" if exit_code == 0 and reason != "OOMKilled" else "Failed"
    reason = reason or ("Completed" if exit_code == 0 else "Error")

    def fn(obj: dict[str, Any]) -> None:
        obj["status"].update(
            phase=phase,
            conditions=conditions or [],
            containerStatuses=[
                {
                    "name": container,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": exit_code, "reason": reason}},
                }
            ],
        )

    store.mutate("pods", NS, pod["metadata"]["name"], fn, subresource="status")


def job_when(store: Store, predicate: Any, name: str = "step", timeout: float = 5) -> dict:
    return wait_for(
        lambda: (lambda j: j if predicate(j) else None)(store.get("jobs", NS, name)),
        timeout=timeout,
        what=f"job {name}",
    )


def condition(job: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in job.get("status", {}).get("conditions") or []:
        if c["type"] == ctype and c["status"] == "True":
            return c
    return None


def test_pod_from_template_has_job_labels_owner_and_generated_name(store: Store) -> None:
    job = make_job(store)
    (pod,) = running(store)
    meta = pod["metadata"]
    uid = job["metadata"]["uid"]
    assert meta["name"].startswith("step-") and len(meta["name"]) == len("step-") + 5
    assert meta["labels"] == {
        "app": "x",
        "job-name": "step",
        "controller-uid": uid,
        "batch.kubernetes.io/job-name": "step",
        "batch.kubernetes.io/controller-uid": uid,
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "step",
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert pod["spec"]["containers"][0]["command"] == ["true"]
    job = job_when(store, lambda j: j["status"].get("active") == 1)
    assert job["status"]["startTime"]
    assert job["spec"]["manualSelector"] is False
    assert job["spec"]["selector"]["matchLabels"]
    events = [e["reason"] for e in store.list("events", NS)[0]]
    assert "SuccessfulCreate" in events


def test_success_completes_the_job(store: Store) -> None:
    make_job(store)
    (pod,) = running(store)
    finish(store, pod, 0)
    job = job_when(store, lambda j: condition(j, "Complete"))
    status = job["status"]
    assert status["succeeded"] == 1 and "failed" not in status and "active" not in status
    assert status["completionTime"]
    assert condition(job, "Complete")["reason"] == "CompletionsReached"  # type: ignore[index]
    assert len(pods(store)) == 1  # the finished pod stays


def test_oom_kill_with_backoff_limit_zero_fails_and_keeps_the_pod(store: Store) -> None:
    make_job(store, backoffLimit=0)
    (pod,) = running(store)
    finish(store, pod, 137, "OOMKilled")
    job = job_when(store, lambda j: condition(j, "Failed"))
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    assert job["status"]["failed"] == 1 and "completionTime" not in job["status"]
    (kept,) = pods(store)
    term = kept["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (kept["status"]["phase"], term["reason"], term["exitCode"]) == (
        "Failed",
        "OOMKilled",
        137,
    )


def test_backoff_limit_retries_then_fails(store: Store) -> None:
    make_job(store, backoffLimit=2)
    for attempt in range(3):
        (pod,) = running(store)
        finish(store, pod, 1)
        if attempt < 2:
            job_when(store, lambda j, n=attempt + 1: j["status"].get("failed") == n)
    job = job_when(store, lambda j: condition(j, "Failed"))
    assert job["status"]["failed"] == 3
    assert len(pods(store)) == 3
    time.sleep(0.3)
    assert len(pods(store)) == 3  # no fourth attempt


def test_retry_then_success(store: Store) -> None:
    make_job(store, backoffLimit=3)
    finish(store, running(store)[0], 137, "OOMKilled")
    job_when(store, lambda j: j["status"].get("failed") == 1)
    finish(store, running(store)[0], 0)
    job = job_when(store, lambda j: condition(j, "Complete"))
    assert (job["status"]["succeeded"], job["status"]["failed"]) == (1, 1)


def test_pod_failure_policy_fail_job_on_exit_code(store: Store) -> None:
    policy = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]},
            }
        ]
    }
    make_job(store, backoffLimit=6, podFailurePolicy=policy)
    (pod,) = running(store)
    finish(store, pod, 42)
    job = job_when(store, lambda j: condition(j, "Failed"))
    cond = condition(job, "Failed")
    assert cond is not None and cond["reason"] == "PodFailurePolicy"
    assert cond["message"] == (
        f"Container main for pod {NS}/{pod['metadata']['name']} failed with exit code 42 "
        "matching FailJob rule at index 0"
    )
    assert job["status"]["failed"] == 1 and len(pods(store)) == 1


def test_pod_failure_policy_not_in_counts_other_codes(store: Store) -> None:
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [137]}},
        ]
    }
    make_job(store, backoffLimit=5, podFailurePolicy=policy)
    finish(store, running(store)[0], 137, "OOMKilled")  # NotIn [137] does not match: counts
    job_when(store, lambda j: j["status"].get("failed") == 1)
    finish(store, running(store)[0], 3)  # matches: fails the job
    job = job_when(store, lambda j: condition(j, "Failed"))
    assert condition(job, "Failed")["reason"] == "PodFailurePolicy"  # type: ignore[index]
    assert job["status"]["failed"] == 2


def test_pod_failure_policy_ignores_disruption_target(store: Store) -> None:
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}},
        ]
    }
    make_job(store, backoffLimit=0, podFailurePolicy=policy)
    evicted = {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}
    finish(store, running(store)[0], 137, conditions=[evicted])
    (second,) = running(store)  # replaced without counting
    assert "failed" not in store.get("jobs", NS, "step")["status"]
    finish(store, second, 0)
    job = job_when(store, lambda j: condition(j, "Complete"))
    assert "failed" not in job["status"]


def test_active_deadline_fails_the_job_and_deletes_active_pods(store: Store) -> None:
    make_job(store, activeDeadlineSeconds=1)
    (pod,) = running(store)
    job = job_when(store, lambda j: condition(j, "Failed"), timeout=4)
    cond = condition(job, "Failed")
    assert cond is not None and cond["reason"] == "DeadlineExceeded"
    assert cond["message"] == "Job was active longer than specified deadline"
    assert job["status"]["failed"] == 1 and "active" not in job["status"]
    wait_for(lambda: not pods(store), what="the unbound pod to be deleted")


def test_ttl_deletes_the_finished_job_and_its_pods(store: Store) -> None:
    make_job(store, ttlSecondsAfterFinished=1)
    finish(store, running(store)[0], 0)
    job_when(store, lambda j: condition(j, "Complete"))
    assert pods(store)
    names = [j["metadata"]["name"] for j in store.list("jobs", NS)[0]]
    assert names == ["step"]
    wait_for(lambda: not store.list("jobs", NS)[0], timeout=4, what="TTL deletion")
    wait_for(lambda: not pods(store), what="background cascade to the pods")


def test_parallelism_and_completions(store: Store) -> None:
    make_job(store, parallelism=2, completions=3)
    first, second = running(store, n=2)
    finish(store, first, 0)
    job_when(store, lambda j: j["status"].get("succeeded") == 1)
    live = running(store, n=2)  # one more started; never more than the 2 still needed
    for pod in live:
        finish(store, pod, 0)
    job = job_when(store, lambda j: condition(j, "Complete"))
    assert job["status"]["succeeded"] == 3 and len(pods(store)) == 3


def test_a_pod_deleted_before_it_finished_counts_as_failed(store: Store) -> None:
    make_job(store, backoffLimit=1)
    (pod,) = running(store)
    store.delete("pods", NS, pod["metadata"]["name"])  # unbound: gone at once
    job = job_when(store, lambda j: j["status"].get("failed") == 1)
    assert not condition(job, "Failed")
    (replacement,) = running(store)
    assert replacement["metadata"]["uid"] != pod["metadata"]["uid"]


def test_deleting_a_counted_pod_does_not_count_it_again(store: Store) -> None:
    make_job(store, backoffLimit=3)
    (pod,) = running(store)
    finish(store, pod, 1)
    job_when(store, lambda j: j["status"].get("failed") == 1)
    store.delete("pods", NS, pod["metadata"]["name"])
    running(store)
    time.sleep(0.2)
    assert store.get("jobs", NS, "step")["status"]["failed"] == 1


def test_lost_deleted_event_after_watch_expiry_still_counts(store: Store) -> None:
    make_job(store, backoffLimit=3)
    (pod,) = running(store)
    store.trim_history(keep=0)  # the controller's watches expire and re-list
    store.delete("pods", NS, pod["metadata"]["name"])
    job = job_when(store, lambda j: j["status"].get("failed") == 1, timeout=LOST_AFTER + 3)
    assert not condition(job, "Failed")


def test_on_failure_restarts_count_against_the_backoff_limit(store: Store) -> None:
    template = {
        "restartPolicy": "OnFailure",
        "containers": [{"name": "main", "image": "python:3.11"}],
    }
    make_job(store, backoffLimit=2, template_spec=template)
    (pod,) = running(store)

    def restarted(obj: dict[str, Any]) -> None:
        obj["status"]["containerStatuses"] = [
            {"name": "main", "restartCount": 2, "state": {"running": {}}}
        ]

    store.mutate("pods", NS, pod["metadata"]["name"], restarted, subresource="status")
    job = job_when(store, lambda j: condition(j, "Failed"))
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]


def test_suspended_job_creates_no_pods_until_resumed(store: Store) -> None:
    make_job(store, suspend=True)
    job = job_when(store, lambda j: condition(j, "Suspended"))
    assert not pods(store) and "startTime" not in job["status"]

    def resume(obj: dict[str, Any]) -> None:
        obj["spec"]["suspend"] = False

    store.mutate("jobs", NS, "step", resume)
    running(store)
    job = job_when(store, lambda j: not condition(j, "Suspended"))


def test_recreated_job_with_the_same_name_starts_fresh(store: Store) -> None:
    make_job(store, backoffLimit=0)
    finish(store, running(store)[0], 1)
    job_when(store, lambda j: condition(j, "Failed"))
    store.delete("jobs", NS, "step", propagation_policy="Background")
    wait_for(lambda: not pods(store), what="old pods to go")
    make_job(store, backoffLimit=0)
    (pod,) = running(store)
    job = job_when(store, lambda j: j["status"].get("active") == 1)
    assert "failed" not in job["status"]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]


def condition_order(store: Store, rv: int, name: str = "step") -> list[tuple[str, str, str]]:
    """The Job's True conditions in the order the watch delivered them."""
    order: list[tuple[str, str, str]] = []
    with store.watch("jobs", resource_version=rv, field_selector=f"metadata.name={name}") as w:
        while (got := w.next_shared(0.2)) is not None:
            for c in (got[1].get("status") or {}).get("conditions") or []:
                key = (c["type"], c["reason"], c["message"])
                if c["status"] == "True" and key not in order:
                    order.append(key)
    return order


BACKOFF = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
COMPLETIONS = ("CompletionsReached", "Reached expected number of succeeded pods")


@pytest.mark.parametrize(
    ("exit_code", "interim", "final", "why"),
    [(137, "FailureTarget", "Failed", BACKOFF), (0, "SuccessCriteriaMet", "Complete", COMPLETIONS)],
)
def test_interim_condition_is_written_before_the_final_one(
    store: Store, exit_code: int, interim: str, final: str, why: tuple[str, str]
) -> None:
    """kube 1.35 (JobPodReplacementPolicy on): FailureTarget / SuccessCriteriaMet in a write of
    its own, then Failed / Complete with the same reason and message, as the real tier's
    controllers do."""
    rv = store.resource_version
    make_job(store, backoffLimit=0)
    (pod,) = running(store)
    finish(store, pod, exit_code, "OOMKilled" if exit_code else None)
    job_when(store, lambda j: condition(j, final))
    assert condition_order(store, rv) == [(interim, *why), (final, *why)]


def test_failed_waits_until_the_deleted_pods_have_ended(store: Store) -> None:
    """A failing Job deletes its running pods; Failed comes only once they are gone."""
    make_job(store, parallelism=2, completions=2, backoffLimit=0)
    first, second = running(store, n=2)

    def bind(obj: dict[str, Any]) -> None:
        obj["spec"]["nodeName"] = "n1"  # a bound pod is deleted gracefully: it terminates

    store.mutate("pods", NS, second["metadata"]["name"], bind)
    finish(store, first, 1)
    job = job_when(store, lambda j: condition(j, "FailureTarget"))
    assert not condition(job, "Failed")
    assert store.get("pods", NS, second["metadata"]["name"])["metadata"]["deletionTimestamp"]
    finish(store, second, 137)  # the kubelet ends it
    job = job_when(store, lambda j: condition(j, "Failed"))
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
