from __future__ import annotations

import pytest
from kubernetes import client as k8s
from pydantic import ValidationError

from zenml_oom_orchestrator.outcome import Outcome, OutcomeKind
from zenml_oom_orchestrator.supervisor import RunSpec, StepSpec, naming
from zenml_oom_orchestrator.supervisor.manifests import build_attempt_pod, owner_reference
from zenml_oom_orchestrator.supervisor.pending import judge_pending

MI = 2**20


def tpl() -> dict:
    return {
        "metadata": {"name": "ignored", "labels": {"a": "b"}, "resourceVersion": "9"},
        "spec": {
            "restartPolicy": "OnFailure",
            "containers": [
                {"name": "sidecar", "image": "x"},
                {
                    "name": "main",
                    "image": "x",
                    "resources": {"requests": {"cpu": "1", "memory": "1Mi"}},
                    "env": [
                        {"name": "KEEP", "value": "1"},
                        {"name": "OOM_ATTEMPT", "value": "old"},
                    ],
                },
            ],
        },
    }


def test_attempt_pod_sets_memory_labels_annotations_owner() -> None:
    owner = owner_reference(
        k8s.V1OwnerReference(api_version="batch/v1", kind="Job", name="orch", uid="u1")
    )
    pod = build_attempt_pod(
        tpl(),
        name="s-abc-a2",
        namespace="ns",
        run_id="run",
        step_name="a step with spaces",
        attempt=2,
        memory_request=256 * MI,
        memory_limit=512 * MI,
        previous_outcome={"kind": "oom_killed"},
        owner=owner,
    )
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "s-abc-a2" and "resourceVersion" not in meta
    assert meta["labels"]["a"] == "b" and meta["labels"]["attempt"] == "2"
    assert meta["labels"]["step_name"] == naming.label_value("a step with spaces")
    assert meta["annotations"][naming.ANN_STEP] == "a step with spaces"
    assert meta["annotations"][naming.ANN_MEMORY_REQUEST] == "256Mi"
    assert meta["annotations"][naming.ANN_MEMORY_LIMIT] == "512Mi"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "orch",
            "uid": "u1",
            "blockOwnerDeletion": False,
        }
    ]
    assert spec["restartPolicy"] == "Never"
    main = spec["containers"][1]
    assert main["resources"] == {
        "requests": {"cpu": "1", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert main["env"] == [
        {"name": "KEEP", "value": "1"},
        {"name": "OOM_ATTEMPT", "value": "2"},
        {"name": "OOM_MEMORY_LIMIT", "value": "512Mi"},
    ]
    assert "resources" not in spec["containers"][0]


def test_template_is_not_mutated_and_v1pod_is_accepted() -> None:
    t = tpl()
    build_attempt_pod(
        t,
        name="n",
        namespace="ns",
        run_id="r",
        step_name="s",
        attempt=1,
        memory_request=MI,
        memory_limit=MI,
    )
    assert t == tpl()
    v1 = k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="main", image="x")]))
    assert (
        StepSpec(name="s", pod_template=v1).pod_template["spec"]["containers"][0]["name"] == "main"
    )


def test_spec_validation_names_the_problem() -> None:
    with pytest.raises(ValidationError, match="no container 'main'"):
        StepSpec(name="s", pod_template={"spec": {"containers": [{"name": "x"}]}})
    s = {"spec": {"containers": [{"name": "main"}]}}
    with pytest.raises(ValidationError, match="cycle"):
        RunSpec(
            run_id="r",
            steps=[
                StepSpec(name="a", pod_template=s, upstream=["b"]),
                StepSpec(name="b", pod_template=s, upstream=["a"]),
            ],
        )
    with pytest.raises(ValidationError, match="unknown upstream"):
        RunSpec(run_id="r", steps=[StepSpec(name="a", pod_template=s, upstream=["zz"])])
    with pytest.raises(ValidationError, match="unique"):
        RunSpec(
            run_id="r",
            steps=[StepSpec(name="a", pod_template=s), StepSpec(name="a", pod_template=s)],
        )
    spec = RunSpec(run_id="r", steps=[StepSpec(name="a", pod_template=s)])
    assert RunSpec.model_validate_json(spec.model_dump_json()) == spec


def test_judge_pending_cases() -> None:
    waiting = Outcome(OutcomeKind.PENDING, reason="Unschedulable", message="Insufficient memory")
    v = judge_pending(waiting, request=MI, largest=8 * MI, waited=1, timeout=10)
    assert v.outcome is None and v.unschedulable and v.recheck_in == 9
    assert v.message.startswith("waiting for memory other pods hold: needs 1Mi")
    taint = "0/2 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
    tainted = Outcome(OutcomeKind.PENDING, reason="Unschedulable", message=taint)
    v = judge_pending(tainted, request=MI, largest=8 * MI, waited=1, timeout=10)
    assert v.outcome is None and v.unschedulable and "memory" not in v.message
    assert (
        v.message.startswith("waiting for a node the scheduler can place it on")
        and taint in v.message
    )
    v = judge_pending(waiting, request=16 * MI, largest=8 * MI, waited=0, timeout=10)
    assert v.outcome is not None and "can never fit" in v.outcome.message
    v = judge_pending(Outcome(OutcomeKind.PENDING), request=MI, largest=None, waited=11, timeout=10)
    assert v.outcome is not None and v.outcome.kind is OutcomeKind.UNSCHEDULABLE
    assert "pending_timeout (10s)" in v.outcome.message


def test_judge_pending_a_request_the_orchestrator_pod_leaves_no_room_for_ends_at_once() -> None:
    # 1Gi node, the run's orchestrator pod holds 400Mi of it: a 1Gi attempt never fits.
    waiting = Outcome(OutcomeKind.PENDING, reason="Unschedulable", message="Insufficient memory")
    beside = (624 * MI, 400 * MI)
    v = judge_pending(waiting, 1024 * MI, 1024 * MI, waited=0, timeout=600, beside=beside)
    assert v.outcome is not None and v.outcome.kind is OutcomeKind.UNSCHEDULABLE
    assert v.outcome.message == (
        "it requests 1Gi memory, but the largest node has 1Gi allocatable and this run's "
        "orchestrator pod holds 400Mi of it for as long as the run lasts, so it can never fit "
        "(Unschedulable: Insufficient memory)"
    )
    # What fits beside it waits for memory other pods hold, as before.
    v = judge_pending(waiting, 600 * MI, 1024 * MI, waited=0, timeout=600, beside=beside)
    assert (
        v.outcome is None and v.unschedulable and "waiting for memory other pods hold" in v.message
    )
