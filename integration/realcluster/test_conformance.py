"""Issue 11 §4: the local cluster against a real one. The same pod scenarios run on both (the
session's real tier and a local cluster) and what a client sees is compared field by field: the
last status, with the values that must differ masked (uids, times, IPs, container and image
ids), and the order of the updates a watch delivers (a real kubelet reports a container
terminated one update BEFORE the pod's phase turns final), and the kubelet's first status
write (before the pod's sandbox exists). A failure lists every field that differs, local
against real."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.real_only("compares the local cluster with the real tier, so it needs both"),
]

# Fully qualified: the real kubelet reports the normalized name, the local one the spec's.
IMAGE = "docker.io/library/python:3.11"
MASKED = {
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "startTime",
    "lastTransitionTime",
    "lastProbeTime",
    "startedAt",
    "finishedAt",
    "podIP",
    "podIPs",
    "hostIP",
    "hostIPs",
    "containerID",
    "imageID",
    "completionTime",
}
MISSING_IMAGE = "localhost/not-there:1"  # never imported into the real node
ALLOC_600 = "b = bytearray(600 * 2**20); b[::4096] = b'\\x01' * (600 * 2**20 // 4096)"


def container(code: str, memory: str = "256Mi", name: str = "main") -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", code],
        "resources": {"requests": {"memory": memory}, "limits": {"memory": memory}},
    }


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": list(containers), **spec},
    }


def _terminal(p: dict[str, Any]) -> bool:
    return p.get("status", {}).get("phase") in ("Succeeded", "Failed")


def _waiting(reason: str) -> Callable[[dict[str, Any]], bool]:
    def done(p: dict[str, Any]) -> bool:
        statuses = p.get("status", {}).get("containerStatuses") or []
        return any(
            (s.get("state") or {}).get("waiting", {}).get("reason") == reason for s in statuses
        )

    return done


def _unschedulable(p: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
        for c in p.get("status", {}).get("conditions") or []
    )


# name -> (pod manifest, when the pod has reached the state to compare)
POD_SCENARIOS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = {
    "oom-under-limit": (pod("oom", container(ALLOC_600)), _terminal),
    "success": (pod("ok", container("print('ok')")), _terminal),
    "init-container-oom": (
        pod(
            "init-oom",
            container("print('main')"),
            initContainers=[container(ALLOC_600, "128Mi", name="init")],
        ),
        _terminal,
    ),
    "err-image-never-pull": (
        pod(
            "never-pull",
            {**container("print(1)"), "image": MISSING_IMAGE, "imagePullPolicy": "Never"},
        ),
        _waiting("ErrImageNeverPull"),
    ),
    "unschedulable-over-request": (
        pod("too-big", container("print(1)", memory="100Gi")),
        _unschedulable,
    ),
}


def masked(value: Any) -> Any:
    """The value with what must differ between clusters replaced by '<masked>'."""
    if isinstance(value, dict):
        return {k: "<masked>" if k in MASKED else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str):  # generated names: the service-account token volume
        return re.sub(r"^kube-api-access-[a-z0-9]{5}$", "kube-api-access-<masked>", value)
    return value


def by_key(items: list[Any], key: str) -> Any:
    """Lists of named things (conditions, containers) compared by name, not position."""
    if all(isinstance(i, dict) and key in i for i in items):
        return {i[key]: i for i in items}
    return items


def differences(local: Any, real: Any, path: str = "") -> list[str]:
    """Every path where local and real differ, as 'path: local=... real=...'."""
    if isinstance(local, list) and isinstance(real, list):
        for key in ("type", "name"):
            local_keyed, real_keyed = by_key(local, key), by_key(real, key)
            if isinstance(local_keyed, dict) and isinstance(real_keyed, dict):
                return differences(local_keyed, real_keyed, path)
    if isinstance(local, dict) and isinstance(real, dict):
        out = []
        for k in sorted(set(local) | set(real)):
            out += differences(local.get(k, "<absent>"), real.get(k, "<absent>"), f"{path}.{k}")
        return out
    return [] if local == real else [f"{path or '.'}: local={local!r} real={real!r}"]


def milestones(p: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """What a watcher judges on: whether the phase is final (Pending or Running before it
    depends on how fast the container ran) and each container's state (kind and reason)."""
    status = p.get("status", {})
    states = []
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        for kind, detail in (s.get("state") or {}).items():
            states.append(f"{s['name']}:{kind}:{(detail or {}).get('reason', '')}")
    final = status.get("phase") in ("Succeeded", "Failed")
    return status.get("phase", "") if final else "not final", tuple(states)


def first_kubelet_update(seen: list[dict[str, Any]]) -> dict[str, Any]:
    """The kubelet's first status write (the first with container statuses): it comes before
    the pod's sandbox exists, so its conditions and waiting reasons are deterministic."""
    return next((p for p in seen if p.get("status", {}).get("containerStatuses")), {})


def updates_from_first_termination(seen: list[dict[str, Any]]) -> list[Any]:
    """The watch's updates from the first one with a terminated container on, each once."""
    out: list[Any] = []
    started = False
    for p in seen:
        m = milestones(p)
        started = started or any(":terminated:" in s for s in m[1])
        if started and (not out or out[-1] != m):
            out.append(m)
    return out


class Scenarios:
    """Runs scenarios on one cluster, each in a fresh namespace, recording what a watch saw."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.namespaces: list[str] = []

    def namespace(self) -> str:
        name = f"conf-{secrets.token_hex(4)}"
        self.core.create_namespace({"metadata": {"name": name}})
        self.namespaces.append(name)
        return name

    def run_pod(
        self, manifest: dict[str, Any], done: Callable[[dict[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        ns = self.namespace()
        rv = self.core.list_namespaced_pod(ns).metadata.resource_version
        self.core.create_namespaced_pod(ns, manifest)
        return self._watch(self.core.list_namespaced_pod, ns, rv, done)

    def run_job(self, manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
        """The job's pod updates, and the job's conditions in the order they appeared."""
        ns = self.namespace()
        rv = self.batch.list_namespaced_job(ns).metadata.resource_version
        self.batch.create_namespaced_job(ns, manifest)

        def job_failed(j: dict[str, Any]) -> bool:
            return any(
                c.get("type") == "Failed" for c in j.get("status", {}).get("conditions") or []
            )

        jobs = self._watch(self.batch.list_namespaced_job, ns, rv, job_failed)
        conditions: list[Any] = []
        for j in jobs:
            for c in j.get("status", {}).get("conditions") or []:
                key = (c["type"], c["status"], c.get("reason"))
                if key not in conditions:
                    conditions.append(key)
        pods = self.core.list_namespaced_pod(ns).items
        assert len(pods) == 1, [p.metadata.name for p in pods]
        return [self.api_client.sanitize_for_serialization(pods[0])], conditions

    def _watch(
        self, lister: Any, ns: str, rv: str, done: Callable[[dict[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        """Every update a watch delivers until `done`, or for 60 s (the comparison then
        shows where it stopped)."""
        seen: list[dict[str, Any]] = []
        w = watch.Watch()
        for event in w.stream(lister, ns, resource_version=rv, timeout_seconds=60):
            obj = self.api_client.sanitize_for_serialization(event["object"])
            seen.append(obj)
            if done(obj):
                w.stop()
                break
        assert seen, f"no update at all in {ns} within 60 s"
        return seen

    def cleanup(self) -> None:
        for ns in self.namespaces:
            self.core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
            self.core.delete_namespace(ns)


@pytest.fixture(scope="module")
def both(local_cluster: Any, real_cluster: Any) -> Iterator[dict[str, Scenarios]]:
    # The local kubelet has no image store: it is told which image is absent (on the real node
    # it was never imported).
    local_cluster.kubelet.fail_image_pulls(MISSING_IMAGE)
    clients = {"local": local_cluster.api_client(), "real": real_cluster.api_client()}
    runs = {kind: Scenarios(api_client) for kind, api_client in clients.items()}
    yield runs
    for kind, scenarios in runs.items():
        scenarios.cleanup()
        clients[kind].close()


def _report(what: str, diffs: list[str]) -> str:
    return f"{what}: {len(diffs)} field(s) differ, local against real:\n  " + "\n  ".join(diffs)


@pytest.mark.parametrize("scenario", list(POD_SCENARIOS))
def test_pod_status_matches_the_real_kubelet(both: dict[str, Scenarios], scenario: str) -> None:
    manifest, done = POD_SCENARIOS[scenario]
    seen = {kind: runs.run_pod(manifest, done) for kind, runs in both.items()}
    diffs = [
        f"never reached the compared state: {kind}" for kind, s in seen.items() if not done(s[-1])
    ]
    diffs += differences(masked(seen["local"][-1]["status"]), masked(seen["real"][-1]["status"]))
    if scenario != "unschedulable-over-request":  # never reaches a kubelet
        first = {
            kind: masked(first_kubelet_update(s).get("status", {})) for kind, s in seen.items()
        }
        diffs += [f"no kubelet update seen: {kind}" for kind, f in first.items() if not f]
        diffs += [f"first kubelet update: {d}" for d in differences(first["local"], first["real"])]
    order = {kind: updates_from_first_termination(s) for kind, s in seen.items()}
    if order["local"] != order["real"]:
        diffs.append(f"watch order: local={order['local']} real={order['real']}")
    assert not diffs, _report(scenario, diffs)


def test_job_with_backoff_limit_0_oom_matches_the_real_controllers(
    both: dict[str, Scenarios],
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "oom-job"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container(ALLOC_600)]}},
        },
    }
    results = {kind: runs.run_job(job) for kind, runs in both.items()}
    (local_pods, local_conditions), (real_pods, real_conditions) = results["local"], results["real"]
    diffs = differences(masked(local_pods[-1]["status"]), masked(real_pods[-1]["status"]))
    if local_conditions != real_conditions:
        diffs.append(f"job conditions in order: local={local_conditions} real={real_conditions}")
    assert not diffs, _report("job backoffLimit 0 OOM", diffs)
