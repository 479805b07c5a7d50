"""The clusters a benchmark runs on, behind one small interface: where the clients connect,
how the API server's request counters and the control plane's CPU are read, and where the
server-side stamps come from."""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Protocol

from zenml_oom_orchestrator.bench.audit import AuditStamps
from zenml_oom_orchestrator.bench.realkwok import NODE_PODS, KwokControlPlane, cpu_seconds
from zenml_oom_orchestrator.bench.stamps import Stamps
from zenml_oom_orchestrator.localcluster.cluster import LocalCluster


class Target(Protocol):
    name: str  # "local" or "real-kwok"
    sim: str  # who plays the attempts: "local" (simulated kubelet) or "kwok"
    stamps: Stamps
    kubeconfig_path: Path

    def prepare(self, steps: int) -> None:
        """Make room for `steps` pods at once."""

    def namespace(self, name: str) -> str: ...

    def scrape(self) -> tuple[Counter[tuple[str, str]], int]:
        """(requests by (verb, resource) of all clients, the bench clients' own total)."""
        ...

    def cpu(self) -> dict[str, float]: ...

    def poll(self) -> None:
        """Bring `stamps` up to date."""

    def finish(self, run_ids: list[str]) -> None:
        """Done with these runs' namespaces."""


class LocalTarget:
    """The local cluster: its Store stamps writes in place; its API server only serves the
    bench clients, so all it counts is theirs."""

    name, sim = "local", "local"

    def __init__(self, cluster: LocalCluster) -> None:
        assert cluster.store is not None and cluster.kubelet is not None
        self.cluster = cluster
        self.stamps = Stamps()
        assert cluster.kubeconfig_path is not None
        self.kubeconfig_path = Path(cluster.kubeconfig_path)
        cluster.store.write_hooks.append(self.stamps.hook)
        # A real node admits 110 pods; 500 concurrent steps need one node that takes them all.
        cluster.kubelet.max_pods = 20_000
        cluster.kubelet.register_node()

    def prepare(self, steps: int) -> None:
        pass

    def namespace(self, name: str) -> str:
        assert self.cluster.store is not None
        self.cluster.store.create("namespaces", {"metadata": {"name": name}})
        return name

    def scrape(self) -> tuple[Counter[tuple[str, str]], int]:
        assert self.cluster.api_server is not None
        counts = Counter(self.cluster.api_server.request_counts)
        counts.pop(("get", "discovery"), None)
        return counts, sum(counts.values())

    def cpu(self) -> dict[str, float]:
        # The whole local cluster runs in this process (threads), so does the RSS sampler.
        return {"local": cpu_seconds(os.getpid()) or 0.0}

    def poll(self) -> None:
        pass

    def finish(self, run_ids: list[str]) -> None:
        pass


class KwokTarget:
    """A real control plane with KWOK nodes (`realkwok`): stamps from its audit log, requests
    from its /metrics, CPU of its processes from /proc."""

    name, sim = "real-kwok", "kwok"

    def __init__(self, plane: KwokControlPlane) -> None:
        self.plane = plane
        self.stamps = Stamps()
        self.kubeconfig_path = plane.kubeconfig_path
        self.audit = AuditStamps(plane.audit_log, self.stamps)

    def prepare(self, steps: int) -> None:
        # 10 % spare pod slots per node: the next attempt is created before the last one is gone
        self.plane.add_nodes(max(self.plane.nodes, math.ceil(steps / (NODE_PODS * 0.9))))

    def namespace(self, name: str) -> str:
        self.plane.kubectl("create", "namespace", name)
        # Pods are refused until the service-account controller made `default`.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.plane.kubectl("-n", name, "get", "serviceaccounts", "-o", "name").strip():
                return name
            time.sleep(0.2)
        raise RuntimeError(f"namespace {name}: no default ServiceAccount after 60 s")

    def scrape(self) -> tuple[Counter[tuple[str, str]], int]:
        return self.plane.scrape()

    def cpu(self) -> dict[str, float]:
        return self.plane.cpu()

    def poll(self) -> None:
        self.audit.poll()

    def finish(self, run_ids: list[str]) -> None:
        # Keep etcd and the watch cache the same size for every scenario.
        names = [f"bench-{r}" for r in run_ids]
        self.plane.kubectl("delete", "namespace", *names, "--timeout=600s")
