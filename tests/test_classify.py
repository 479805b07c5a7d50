"""classify(): table-driven over pod shapes as the API returns them.

The shapes live in tests/pod_shapes/*.yaml: each has an ``id``, the ``pod`` (its JSON, as
``kubectl get -o yaml`` prints it), optional ``events``, optional ``classify`` keyword
arguments, and ``expect`` (the Outcome fields that must match).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from zenml_oom_orchestrator.classify import classify, node_lost_in, parse_eviction_message
from zenml_oom_orchestrator.outcome import Outcome, OutcomeKind

SHAPES_DIR = Path(__file__).parent / "pod_shapes"


@dataclass(frozen=True)
class Shape:
    id: str
    pod: dict[str, Any]
    expect: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


def _fill_required(pod: dict[str, Any]) -> dict[str, Any]:
    """Add the fields every real container status has, where a shape left them out."""
    pod = copy.deepcopy(pod)
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    pod.setdefault("metadata", {}).setdefault("name", "step-pod")
    for group in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for status in pod.get("status", {}).get(group, []):
            status.setdefault("image", "repo/step:1")
            status.setdefault("imageID", "")
            status.setdefault("ready", False)
            status.setdefault("restartCount", 0)
    return pod


def _kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    if isinstance(out.get("now"), str):
        out["now"] = datetime.fromisoformat(out["now"].replace("Z", "+00:00")).timestamp()
    return out


def load_shapes() -> list[Shape]:
    shapes: list[Shape] = []
    for path in sorted(SHAPES_DIR.glob("*.yaml")):
        for raw in yaml.safe_load(path.read_text()):
            shapes.append(
                Shape(
                    id=raw["id"],
                    pod=_fill_required(raw["pod"]),
                    expect=raw["expect"],
                    events=raw.get("events", []),
                    kwargs=_kwargs(raw.get("classify", {})),
                )
            )
    return shapes


SHAPES = load_shapes()


def _check(outcome: Outcome, expect: dict[str, Any]) -> None:
    got = outcome.to_dict()
    for key, want in expect.items():
        assert got[key] == want, f"{key}: got {got[key]!r}, want {want!r} in {outcome}"


def test_there_are_enough_shapes() -> None:
    assert len(SHAPES) >= 30
    assert len({s.id for s in SHAPES}) == len(SHAPES), "shape ids must be unique"
    kinds = {s.expect["kind"] for s in SHAPES}
    # Every kind a live pod can produce is covered by at least one shape.
    assert kinds >= {k.value for k in OutcomeKind}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.id)
def test_shape_as_json(shape: Shape) -> None:
    _check(classify(shape.pod, shape.events, **shape.kwargs), shape.expect)


# --- The same shapes as kubernetes.client models -------------------------------------------


class _Response:
    """What ApiClient.deserialize reads: an object with the body in ``.data``."""

    def __init__(self, body: Any) -> None:
        self.data = json.dumps(body)


@pytest.fixture(scope="module")
def api_client() -> Any:
    from kubernetes.client import ApiClient

    return ApiClient()


def _models(api_client: Any, shape: Shape) -> tuple[Any, list[Any]]:
    pod = api_client.deserialize(_Response(shape.pod), "V1Pod")
    events = [api_client.deserialize(_Response(e), "CoreV1Event") for e in shape.events]
    return pod, events


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.id)
def test_shape_as_v1pod_model_matches_json(api_client: Any, shape: Shape) -> None:
    pod, events = _models(api_client, shape)
    assert classify(pod, events, **shape.kwargs) == classify(
        shape.pod, shape.events, **shape.kwargs
    )


@pytest.mark.parametrize("shape", SHAPES[::4], ids=lambda s: s.id)
def test_shape_as_snake_case_to_dict_matches_json(api_client: Any, shape: Shape) -> None:
    pod, events = _models(api_client, shape)
    snake = classify(pod.to_dict(), [e.to_dict() for e in events], **shape.kwargs)
    assert snake == classify(shape.pod, shape.events, **shape.kwargs)


# --- Pods gone from the API ---------------------------------------------------------------


def test_gone_pod_is_node_lost() -> None:
    outcome = classify(None)
    assert outcome.kind is OutcomeKind.NODE_LOST
    assert "gone" in outcome.message


def test_gone_pod_remembered_by_eviction_event() -> None:
    event = {
        "reason": "Evicted",
        "message": "The node was low on resource: memory. Container main was using 3Gi, "
        "which exceeds its request of 1Gi. ",
    }
    outcome = classify(None, [event])
    assert outcome.kind is OutcomeKind.EVICTED
    assert outcome.memory_pressure and outcome.memory_used == 3 << 30


def test_gone_pod_remembered_by_preemption_event() -> None:
    event = {"reason": "Preempted", "message": "Preempted by pod 1234 on node node-2"}
    assert classify(None, [event]).kind is OutcomeKind.DISRUPTED


def test_gone_pod_with_cgroup_evidence_is_oom() -> None:
    outcome = classify(None, cgroup_oom=True, main_container="step")
    assert outcome.kind is OutcomeKind.OOM_KILLED and outcome.container == "step"


# --- Details -------------------------------------------------------------------------------


def _main_ended(phase: str, exit_code: int, reason: str) -> dict[str, Any]:
    term = {"exitCode": exit_code, "reason": reason}
    return {
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "main", "state": {"terminated": term}}],
        }
    }


def test_cgroup_false_does_not_downgrade_oomkilled() -> None:
    pod = _main_ended("Failed", 137, "OOMKilled")
    assert classify(pod, cgroup_oom=False).kind is OutcomeKind.OOM_KILLED


def test_exit_0_is_never_upgraded_by_oom_evidence() -> None:
    # A child OOM-killed while the step handled it and exited 0 is still a success.
    pod = _main_ended("Succeeded", 0, "Completed")
    assert classify(pod, [{"reason": "OOMKilling"}], cgroup_oom=True).kind is OutcomeKind.SUCCEEDED


def test_stale_node_event_does_not_hide_an_app_error() -> None:
    # The node blipped NotReady earlier; the step later failed on its own.
    events = [{"reason": "NodeNotReady", "message": "Node is not ready"}]
    assert classify(_main_ended("Failed", 1, "Error"), events).kind is OutcomeKind.APP_ERROR


def test_sidecar_image_error_waits_while_main_runs() -> None:
    pod = {
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "main", "state": {"running": {}}},
                {"name": "proxy", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
            ],
        }
    }
    assert classify(pod).kind is OutcomeKind.RUNNING


def test_now_defaults_to_the_clock() -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    pod = {
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "lastTransitionTime": stamp,
                }
            ],
        }
    }
    assert classify(pod, pending_timeout=600).kind is OutcomeKind.PENDING
    assert classify(pod, pending_timeout=1).kind is OutcomeKind.UNSCHEDULABLE


@pytest.mark.parametrize(
    ("message", "pressure", "used"),
    [
        (
            "The node was low on resource: memory. Container main was using 2Gi, which exceeds "
            "its request of 1Gi. ",
            True,
            2 << 30,
        ),
        (
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
            "Container main was using 1572864Ki, request is 1Gi, has larger consumption of memory. ",
            True,
            1536 << 20,
        ),
        (
            "The node was low on resource: ephemeral-storage. Container main was using 10Gi, "
            "which exceeds its request of 0. ",
            False,
            10 << 30,
        ),
        ("The node was low on resource: memory. ", True, None),
        ("Container main was using lots, which exceeds its request of 1Gi.", False, None),
        ("", False, None),
    ],
)
def test_parse_eviction_message(message: str, pressure: bool, used: int | None) -> None:
    assert parse_eviction_message(message, "main") == (pressure, used)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.id)
def test_outcome_dict_round_trip(shape: Shape) -> None:
    outcome = classify(shape.pod, shape.events, **shape.kwargs)
    data = json.loads(json.dumps(outcome.to_dict()))  # survives an annotation
    assert Outcome.from_dict(data) == outcome


def test_outcome_from_dict_ignores_unknown_keys() -> None:
    data = {"kind": "oom_killed", "container": "main", "added_in_v2": 1}
    assert Outcome.from_dict(data) == Outcome(OutcomeKind.OOM_KILLED, container="main")


@pytest.mark.parametrize("data", [{}, {"kind": "exploded"}])
def test_outcome_from_dict_names_a_bad_kind(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="oom_killed"):
        Outcome.from_dict(data)


def test_outcome_helpers() -> None:
    oom = Outcome(OutcomeKind.OOM_KILLED, container="main", exit_code=137, reason="OOMKilled")
    assert oom.terminal and oom.failed and oom.memory_related
    assert oom.describe() == "oom_killed (container main, exit 137, OOMKilled)"
    assert not Outcome(OutcomeKind.RUNNING).terminal
    assert not Outcome(OutcomeKind.SUCCEEDED).failed
    assert not Outcome(OutcomeKind.EVICTED, memory_pressure=False).memory_related
    assert Outcome(OutcomeKind.EVICTED, memory_pressure=True).memory_related
    init = Outcome(OutcomeKind.APP_ERROR, container="init", init_container=True, message="boom")
    assert init.describe() == "app_error (init container init): boom"


def test_node_lost_in_says_when_a_pod_on_a_silent_node_will_be_node_lost() -> None:
    """Nothing writes a pod on a silent single node (no kubelet, no eviction), so the
    supervisor must look again by itself when node_lost_timeout would end it."""
    start = "2026-12-01T23:15:07Z"
    pod = {
        "metadata": {"name": "s-a1"},
        "spec": {"containers": [{"name": "main"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": start},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": start},
            ],
            "containerStatuses": [{"name": "main", "state": {"running": {"startedAt": start}}}],
        },
    }
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
    assert node_lost_in(pod, 5, now=t0 + 1) == 4
    assert classify(pod, node_lost_timeout=5, now=t0 + 4.9).kind is OutcomeKind.RUNNING
    assert classify(pod, node_lost_timeout=5, now=t0 + 5).kind is OutcomeKind.NODE_LOST
    assert node_lost_in(pod, 5, now=t0 + 9) == 0
    assert node_lost_in(pod, None) is None
    pod["status"]["conditions"][0]["status"] = "True"  # type: ignore[index]
    assert node_lost_in(pod, 5, now=t0 + 1) is None
