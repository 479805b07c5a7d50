"""Helpers for the supervisor's integration tests: step templates whose commands really
allocate memory, a recording observer, and readers for what a user would see with kubectl."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client as k8s

from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.supervisor import (
    BaseObserver,
    RunResult,
    RunSpec,
    StepResult,
    StepSpec,
    Supervisor,
    naming,
)

MI = 2**20


def alloc_code(mib: int, then: str = "") -> str:
    """Python that allocates and touches `mib` MiB (every page), then runs `then`."""
    return (
        f"n={mib}*2**20; b=bytearray(n); b[::4096]=b'\\x01'*len(range(0,n,4096)); "
        f"print('allocated', n, flush=True); {then}"
    )


def template(code: str, image: str = "python:3.11") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"team": "tests"}},
        "spec": {
            "containers": [{"name": "main", "image": image, "command": ["python", "-c", code]}],
            # The command is the container's PID 1 and has no SIGTERM handler: a deleted
            # attempt lives until SIGKILL at the end of its grace, so keep that short.
            "terminationGracePeriodSeconds": 2,
        },
    }


def one_step(
    run_id: str, namespace: str, name: str, code: str, policy: OOMPolicy, **step: Any
) -> RunSpec:
    """A run of the single step `name`, whose main container runs `code` (python:3.11)."""
    return RunSpec(
        run_id=run_id,
        namespace=namespace,
        steps=[StepSpec(name=name, pod_template=template(code), policy=policy, **step)],
    )


class Recorder(BaseObserver):
    """Keeps every hook call, in order, for assertions."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def _add(self, name: str, *args: Any) -> None:
        with self.lock:
            self.calls.append((name, args))

    def on_attempt_started(self, step: str, attempt: Any) -> None:
        self._add("started", step, attempt)

    def on_attempt_waiting(self, step: str, attempt: Any, message: str) -> None:
        self._add("waiting", step, attempt, message)

    def on_attempt_finished(self, step: str, attempt: Any, decision: Any) -> None:
        self._add("finished", step, attempt, decision)

    def on_attempt_grown(self, step: str, attempt: Any, growth: Any) -> None:
        self._add("grown", step, attempt, growth)

    def on_step_finished(self, step: str, result: StepResult) -> None:
        self._add("step", step, result)

    def on_run_finished(self, result: RunResult) -> None:
        self._add("run", result)

    def names(self, kind: str) -> list[Any]:
        return [args for name, args in self.calls if name == kind]


def run(api_client: Any, spec: RunSpec, observer: Any = None) -> RunResult:
    return Supervisor(api_client, spec, observer).run()


def run_in_thread(
    api_client: Any, spec: RunSpec, observer: Any = None
) -> tuple[Supervisor, dict[str, Any], threading.Thread]:
    sup = Supervisor(api_client, spec, observer)
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", sup.run()), daemon=True)
    thread.start()
    return sup, box, thread


def run_pods(api_client: Any, namespace: str, run_id: str) -> list[Any]:
    core = k8s.CoreV1Api(api_client)
    return core.list_namespaced_pod(namespace, label_selector=naming.run_selector(run_id)).items


def events_by_pod(api_client: Any, namespace: str) -> dict[str, list[tuple[str, str]]]:
    """What `kubectl describe pod` shows from us: pod name → [(reason, message)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for ev in k8s.CoreV1Api(api_client).list_namespaced_event(namespace).items:
        if ev.source and ev.source.component == naming.MANAGED_BY:
            out.setdefault(ev.involved_object.name, []).append((ev.reason, ev.message))
    return out


def pod_name(run_id: str, step: str, attempt: int) -> str:
    return naming.attempt_name(run_id, step, attempt)
