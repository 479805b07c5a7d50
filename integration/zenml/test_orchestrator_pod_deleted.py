"""The orchestrator pod deleted mid-run through ZenML (issue 11 §3): it exits on SIGTERM at
once instead of sitting out the grace period, its Job's next pod continues the run to the
right end, no completed step runs again (the server refuses a duplicate with 409), the
store's history and `explain` are whole. Also what the orchestrator pod is given: nothing of
the submitting machine's paths, and Events only about objects that exist.

Talks to the cluster through the kubernetes client only, so it runs on both clusters: on the
real tier the Job controller, the kubelet's SIGTERM and the grace period are Kubernetes' own.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client as k8s
from zenml.client import Client
from zenml.enums import ExecutionStatus
from zenml.integrations.kubernetes.constants import RUN_ID_ANNOTATION_KEY
from zenml_runs import read_outcome, wait_until

from zenml_oom_orchestrator import cli_runs
from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY
from zenml_oom_orchestrator.testing.pipelines import early_then_long
from zenml_oom_orchestrator.testing.stack import no_build_docker_settings

# On the real tier every pod imports ZenML on 2 shared cores: starting one takes 10-60 s.
pytestmark = [pytest.mark.zenml, pytest.mark.cluster, pytest.mark.timeout(900)]


def _job_of(batch: k8s.BatchV1Api, namespace: str, run_id: Any) -> k8s.V1Job:
    jobs = batch.list_namespaced_job(namespace).items
    found = [
        j for j in jobs if (j.metadata.annotations or {}).get(RUN_ID_ANNOTATION_KEY) == str(run_id)
    ]
    assert len(found) == 1, [j.metadata.name for j in jobs]
    return found[0]


def _job_pods(core: k8s.CoreV1Api, namespace: str, job: str) -> list[k8s.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items)


def test_orchestrator_pod_deleted_mid_run_next_pod_finishes_it(
    oom_stack: str, run_cluster: tuple[Any, str], cluster_kind: str
) -> None:
    api, namespace = run_cluster
    core, batch = k8s.CoreV1Api(api), k8s.BatchV1Api(api)
    slow = 3 if cluster_kind == "real" else 1  # pods start slower on the real tier
    # Long enough that the orchestrator pod is deleted while `sleep` runs, on either cluster.
    sleep_seconds = 30 if cluster_kind == "real" else 20
    previous = Client().active_stack_model.id
    Client().activate_stack(oom_stack)
    settings = {
        "docker": no_build_docker_settings(),
        "orchestrator": {"initial_memory": "400Mi", "synchronous": False},
    }
    try:
        run = early_then_long.with_options(settings=settings)(sleep_seconds=sleep_seconds)
    finally:
        Client().activate_stack(previous)  # later tests build snapshots on the default stack
    assert run is not None

    def sleeping() -> bool:
        steps = Client().get_pipeline_run(run.id).steps
        return (
            "early" in steps
            and steps["early"].status is ExecutionStatus.COMPLETED
            and "sleep" in steps
            and steps["sleep"].status is ExecutionStatus.RUNNING
        )

    submitted = time.monotonic()
    wait_until(sleeping, 120 * slow, "`early` completed and `sleep` running")
    print(f"\n`sleep` running {time.monotonic() - submitted:.0f}s after the run was submitted")
    job = _job_of(batch, namespace, run.id).metadata.name
    (first,) = [p for p in _job_pods(core, namespace, job) if p.status.phase == "Running"]
    # Nothing of this machine's environment: the pod finds the API server by itself.
    env = {e.name: e.value for c in first.spec.containers for e in c.env or []}
    assert "KUBECONFIG" not in env
    assert not any(os.environ.get("KUBECONFIG", "\0") in str(v) for v in env.values())

    started = time.monotonic()
    core.delete_namespaced_pod(first.metadata.name, namespace)  # the default 30 s grace
    wait_until(
        lambda: (
            first.metadata.name not in {p.metadata.name for p in _job_pods(core, namespace, job)}
        ),
        30,
        "the orchestrator pod to exit",
    )
    exited_in = time.monotonic() - started
    print(f"orchestrator pod gone {exited_in:.1f}s after its deletion (grace 30 s)")
    assert exited_in < 10, "SIGTERM was not handled: the pod sat out its grace period"

    wait_until(
        lambda: Client().get_pipeline_run(run.id, hydrate=False).status.is_finished,
        180 * slow,
        "the run to end",
    )
    print(f"run ended {time.monotonic() - started:.0f}s after the deletion")
    # The store says COMPLETED once the last step run did; the orchestrator writes the
    # attempt history right after: wait for its Job to end.
    wait_until(
        lambda: _job_of(batch, namespace, run.id).status.succeeded, 60, "the orchestrator Job"
    )
    outcome = read_outcome("oom_kubernetes", run.id, 0)
    print(outcome.row())
    assert outcome.run.status is ExecutionStatus.COMPLETED
    # Each step ran once: no duplicate step run, none left open.
    assert outcome.step_runs == {
        "early": ["completed"],
        "sleep": ["completed"],
        "report": ["completed"],
    }
    assert len(_job_pods(core, namespace, job)) >= 1  # the Job's next pod finished the run
    for step in ("early", "sleep", "report"):
        metadata = Client().zen_store.get_run_step(outcome.run.steps[step].id).run_metadata
        history = metadata.get(HISTORY_KEY) or []
        assert [(h["attempt"], h["outcome"]) for h in history] == [(1, "succeeded")], step
    said = CliRunner().invoke(cli_runs.explain, [outcome.run.name])
    assert said.exit_code == 0, said.output
    assert "Every step completed on its first attempt" in said.output

    # Every Event names an object that exists.
    for event in core.list_namespaced_event(namespace).items:
        ref = event.involved_object
        if event.reason != "RunStarted" or str(run.id) not in (event.message or ""):
            continue
        assert ref.kind == "Job" and ref.name == job
        assert batch.read_namespaced_job(ref.name, namespace).metadata.uid == ref.uid
