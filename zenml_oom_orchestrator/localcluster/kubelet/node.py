"""The Node object: registration, Ready conditions and the unreachable taints."""

from __future__ import annotations

import platform
from typing import Any

from ..defaults import UNREACHABLE
from ..errors import AlreadyExists
from ..version import GIT_VERSION
from .events import now, record_event

_READY_ROWS = (
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def node_conditions(ready: bool) -> list[dict[str, Any]]:
    """A ready kubelet's conditions, or what the node lifecycle controller sets once the
    kubelet stops reporting (every condition Unknown)."""
    stamp = now()
    rows = [
        (t, s, r, m)
        if ready
        else (t, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
        for t, s, r, m in _READY_ROWS
    ]
    return [
        {
            "type": t,
            "status": s,
            "reason": r,
            "message": m,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        for t, s, r, m in rows
    ]


def node_object(name: str, allocatable: dict[str, str], cgroups: str) -> dict[str, Any]:
    machine = platform.machine()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
            },
            # Says whether memory limits are really enforced here ("none" means not).
            "annotations": {"zenml-oom.local/memory-cgroups": cgroups},
        },
        "spec": {},
        "status": {
            "capacity": dict(allocatable),
            "allocatable": dict(allocatable),
            "conditions": node_conditions(True),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "kubeletVersion": GIT_VERSION,
                "kubeProxyVersion": "",  # deprecated: kubelets since 1.33 leave it empty
                "operatingSystem": "linux",
                "architecture": machine,
                "kernelVersion": platform.release(),
                "osImage": platform.platform(),
                "containerRuntimeVersion": f"local-process://cgroup-{cgroups}",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def register_node(
    store: Any, name: str, allocatable: dict[str, str], cgroups: str
) -> dict[str, Any]:
    """Create the Node, or take over one a previous kubelet left (fresh, Ready status)."""
    node = node_object(name, allocatable, cgroups)
    try:
        return dict(store.create("nodes", node))
    except AlreadyExists:

        def fn(obj: dict[str, Any]) -> None:
            obj["metadata"].setdefault("labels", {}).update(node["metadata"]["labels"])
            obj["metadata"].setdefault("annotations", {}).update(node["metadata"]["annotations"])
            obj["spec"] = {}
            obj["status"] = node["status"]

        return dict(store.mutate("nodes", None, name, fn))


def set_node_ready_status(store: Any, name: str, ready: bool) -> dict[str, Any]:
    """Flip the Ready condition; NotReady adds the unreachable NoSchedule taint (the NoExecute
    one is the node lifecycle controller's call: `localcluster/nodelifecycle.py`)."""

    def fn(node: dict[str, Any]) -> None:
        node["status"]["conditions"] = node_conditions(ready)
        spec = node.setdefault("spec", {})
        taints = [t for t in spec.get("taints") or [] if t.get("key") != UNREACHABLE]
        if not ready:
            taints += [{"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": now()}]
        spec["taints"] = taints
        if not taints:
            spec.pop("taints")

    node = store.mutate("nodes", None, name, fn)
    word = "NodeReady" if ready else "NodeNotReady"
    record_event(
        store, node, word, f"Node {name} status is now: {word}", component="node-controller"
    )
    return dict(node)
