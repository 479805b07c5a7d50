"""In-memory stand-ins for ClusterApi and PodInformer, so the engine's state machine can be
driven with recorded pod dicts (the API's JSON) and no server."""

from __future__ import annotations

import copy
from typing import Any

from zenml_oom_orchestrator.supervisor import RunSpec, StepSpec, naming
from zenml_oom_orchestrator.supervisor.engine import Engine
from zenml_oom_orchestrator.supervisor.observer import BaseObserver
from zenml_oom_orchestrator.supervisor.resume import resume
from zenml_oom_orchestrator.supervisor.workqueue import WorkQueue

GI = 2**30


def template(name: str = "main") -> dict[str, Any]:
    return {"spec": {"containers": [{"name": name, "image": "python", "command": ["true"]}]}}


def step(name: str, upstream: tuple[str, ...] = (), **kw: Any) -> StepSpec:
    kw.setdefault("policy", {"initial_memory": "256Mi"})
    return StepSpec(name=name, pod_template=template(), upstream=list(upstream), **kw)


def terminated(pod: dict[str, Any], reason: str, code: int) -> None:
    pod["status"] = {
        "phase": "Succeeded" if code == 0 and reason != "OOMKilled" else "Failed",
        "containerStatuses": [
            {"name": "main", "state": {"terminated": {"exitCode": code, "reason": reason}}}
        ],
    }
    pod["spec"]["nodeName"] = "node-1"


def running(pod: dict[str, Any]) -> None:
    pod["status"] = {
        "phase": "Running",
        "containerStatuses": [{"name": "main", "state": {"running": {}}}],
    }


def unschedulable(pod: dict[str, Any]) -> None:
    pod["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient memory.",
            }
        ],
    }


class FakeCluster:
    def __init__(self, node_memory: int | None = 8 * GI) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []  # (pod, reason, message)
        self.event_objects: list[dict[str, Any]] = []  # the same Events, as the API holds them
        self.creates: list[str] = []
        self.node = node_memory
        self.pod_event_log: dict[str, list[dict[str, Any]]] = {}  # Events outlive their pods
        self._rv = 0

    def largest_node_memory(self, max_age: float = 30.0) -> int | None:
        return self.node

    def create_pod(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        name = manifest["metadata"]["name"]
        self.creates.append(name)
        if name in self.pods:
            return self.pods[name], True
        pod = copy.deepcopy(manifest)
        self._rv += 1
        pod["metadata"].update(uid=f"uid-{name}", resourceVersion=str(self._rv))
        pod["status"] = {"phase": "Pending"}
        self.pods[name] = pod
        return pod, False

    def annotate_pod(self, name: str, annotations: dict[str, str]) -> bool:
        if name not in self.pods:
            return False
        self.pods[name]["metadata"].setdefault("annotations", {}).update(annotations)
        return True

    def delete_pod(self, name: str, grace_period_seconds: int | None = None) -> bool:
        pod = self.pods.pop(name, None)
        if pod is not None:
            self.deleted[name] = pod
        return pod is not None

    def emit_event(
        self,
        pod: dict[str, Any],
        reason: str,
        message: str,
        subject: dict[str, Any] | None = None,
        warning: bool = False,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        key = (pod["metadata"]["name"], reason, message)
        if key not in self.events:  # deterministic names: a repeat is a 409
            self.events.append(key)
            meta = {"labels": labels or {}, "annotations": annotations or {}}
            kind = "Warning" if warning else "Normal"
            self.event_objects.append({"metadata": meta, "reason": reason, "type": kind})

    def run_results(self, run_id: str) -> list[dict[str, Any]]:
        value = naming.label_value(run_id)
        return [e for e in self.event_objects if e["metadata"]["labels"].get("run_id") == value]

    def pod_events(self, pod_name: str) -> list[dict[str, Any]]:
        return self.pod_event_log.get(pod_name, [])

    def lose(self, name: str) -> None:
        """The pod vanishes while no supervisor watches; the kubelet's Events stay."""
        pod = self.pods.pop(name)
        self.pod_event_log[name] = [
            {
                "reason": "Started",
                "involvedObject": {"name": name, "uid": pod["metadata"]["uid"]},
                "firstTimestamp": "2026-01-01T00:00:00Z",
            }
        ]

    def pod(self, run_id: str, step: str, attempt: int) -> dict[str, Any]:
        return self.pods[naming.attempt_name(run_id, step, attempt)]


class FakeInformer:
    """The cache is the fake cluster itself; `vanish` plays a DELETED event."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.tombstones: dict[str, dict[str, Any]] = {}

    def get(self, name: str) -> dict[str, Any] | None:
        return self.cluster.pods.get(name)

    def deleted(self, name: str) -> dict[str, Any] | None:
        return self.tombstones.get(name)

    def forget(self, name: str) -> None:
        self.tombstones.pop(name, None)

    def assume(self, pod: dict[str, Any]) -> None:
        pass

    def items(self) -> list[dict[str, Any]]:
        return list(self.cluster.pods.values())

    def vanish(self, name: str) -> None:
        self.tombstones[name] = self.cluster.pods.pop(name)


class Recorder(BaseObserver):
    def __init__(self, skip: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.skip = skip

    def should_skip(self, step: StepSpec) -> bool:
        return step.name in self.skip

    def on_attempt_started(self, step: str, attempt: Any) -> None:
        self.calls.append(("started", step, attempt.number))

    def on_attempt_waiting(self, step: str, attempt: Any, message: str) -> None:
        self.calls.append(("waiting", step, message))

    def on_attempt_finished(self, step: str, attempt: Any, decision: Any) -> None:
        self.calls.append(("finished", step, attempt.number, decision))

    def on_step_finished(self, step: str, result: Any) -> None:
        self.calls.append(("step", step, result.status.value))


class FakeResizeApi:
    """Stands in for an API server's /version and pods/resize (grow.py's seam): an old server
    (before 1.33, which a test here cannot run) by default; `resized` keeps every patch."""

    def __init__(self, version: tuple[int, int] = (1, 32)) -> None:
        self.server = version
        self.resized: list[tuple[str, str, int, int]] = []

    def version(self) -> tuple[int, int] | None:
        return self.server

    def resize(self, pod: str, container: str, request: int, limit: int) -> dict[str, Any]:
        self.resized.append((pod, container, request, limit))
        return {}


class Harness:
    def __init__(
        self,
        *steps: StepSpec,
        cluster: FakeCluster | None = None,
        observer: Any = None,
        server: tuple[int, int] = (1, 32),
        **run: Any,
    ) -> None:
        self.spec = RunSpec(run_id=run.pop("run_id", "r1"), steps=list(steps), **run)
        self.cluster = cluster or FakeCluster()
        self.informer = FakeInformer(self.cluster)
        self.queue = WorkQueue()
        self.observer = observer or Recorder()
        self.engine = Engine(self.spec, self.cluster, self.informer, self.queue, self.observer)  # type: ignore[arg-type]
        self.resize_api = FakeResizeApi(server)
        self.engine.grower.api = self.resize_api  # type: ignore[assignment]

    def resume(self) -> int:
        return resume(self.engine, self.informer.items())

    def settle(self) -> None:
        """Reconcile every step until nothing is due now (timers in the future are left)."""
        self.engine.enqueue_idle()
        for name, st in self.engine.states.items():
            if st.current is not None:
                self.queue.add(name)
        for _ in range(1000):
            key = self.queue.get(timeout=0)
            if key is None:
                return
            try:
                self.engine.reconcile(str(key))
            finally:
                self.queue.done(key)
        raise AssertionError("engine did not settle")

    def pod(self, step: str, attempt: int) -> dict[str, Any]:
        return self.cluster.pod(self.spec.run_id, step, attempt)

    def status(self, step: str) -> str:
        return self.engine.states[step].status.value
