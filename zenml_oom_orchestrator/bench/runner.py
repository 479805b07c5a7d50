"""One benchmark scenario: a client (our supervisor, or the polling baseline) runs a workload
on the local cluster while the API server counts requests and the Store stamps transitions."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zenml_oom_orchestrator.bench import workload
from zenml_oom_orchestrator.bench.procs import Sampled, run_sampled
from zenml_oom_orchestrator.bench.stamps import Stamps, percentile
from zenml_oom_orchestrator.localcluster.cluster import LocalCluster

READ_VERBS = frozenset({"get", "list", "watch"})


@dataclass
class Figures:
    """What one scenario measured (latencies in seconds, RSS in MiB)."""

    client: str  # "supervisor" or "baseline"
    steps: int
    ok: bool
    seconds: float
    attempts: int
    oom_to_next: list[float]
    requests: int
    read_requests: int
    step_minutes: float
    peak_rss: float
    sampled: Sampled

    @property
    def p50(self) -> float | None:
        return percentile(self.oom_to_next, 50)

    @property
    def p99(self) -> float | None:
        return percentile(self.oom_to_next, 99)

    @property
    def per_step_minute(self) -> float:
        return self.requests / self.step_minutes if self.step_minutes else math.nan

    @property
    def reads_per_step_minute(self) -> float:
        return self.read_requests / self.step_minutes if self.step_minutes else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "steps": self.steps,
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "attempts": self.attempts,
            "oom_to_next_p50": self.p50,
            "oom_to_next_p99": self.p99,
            "oom_retries_measured": len(self.oom_to_next),
            "requests": self.requests,
            "read_requests": self.read_requests,
            "step_minutes": round(self.step_minutes, 3),
            "requests_per_step_minute": round(self.per_step_minute, 3),
            "reads_per_step_minute": round(self.reads_per_step_minute, 3),
            "peak_rss_mib": round(self.peak_rss, 1),
            "rss_samples": [
                (round(s.t, 1), round(s.rss_mib, 1), s.progress) for s in self.sampled.samples
            ],
        }


class Bench:
    """A started local cluster with stamps installed; runs scenarios one after another."""

    def __init__(self, cluster: LocalCluster, work_dir: Path, jitter: float = 0.0) -> None:
        self.cluster = cluster
        self.jitter = jitter
        self.work_dir = work_dir
        self.stamps = Stamps()
        assert cluster.store is not None and cluster.kubelet is not None
        cluster.store.write_hooks.append(self.stamps.hook)
        # A real node admits 110 pods; 500 concurrent steps need one node that takes them all.
        cluster.kubelet.max_pods = 2000
        cluster.kubelet.register_node()

    def _namespace(self, name: str) -> str:
        assert self.cluster.store is not None
        self.cluster.store.create("namespaces", {"metadata": {"name": name}})
        return name

    def _counts(self) -> Counter[tuple[str, str]]:
        assert self.cluster.api_server is not None
        return Counter(self.cluster.api_server.request_counts)

    def _measure(
        self, client: str, run_id: str, steps: int, args: list[str], attempt_resource: str
    ) -> Figures:
        before = self._counts()
        sampled = run_sampled(
            args,
            progress=lambda: self.stamps.attempts_finished(run_id),
            log_path=self.work_dir / f"{run_id}.log",
        )
        delta = self._counts() - before
        delta.pop(("get", "discovery"), None)
        return Figures(
            client=client,
            steps=steps,
            ok=sampled.returncode == 0,
            seconds=sampled.seconds,
            attempts=self.stamps.attempts_created(run_id, attempt_resource),
            oom_to_next=self.stamps.oom_to_next(run_id, attempt_resource),
            requests=sum(delta.values()),
            read_requests=sum(n for (verb, _r), n in delta.items() if verb in READ_VERBS),
            step_minutes=self.stamps.step_minutes(run_id),
            peak_rss=sampled.peak_rss,
            sampled=sampled,
        )

    def supervisor(
        self,
        run_id: str,
        steps: int,
        attempt_seconds: float,
        oom_fraction: float,
        max_parallelism: int | None = None,
    ) -> Figures:
        ns = self._namespace(f"bench-{run_id}")
        spec = workload.run_spec(
            run_id, ns, steps, attempt_seconds, oom_fraction, max_parallelism, self.jitter
        )
        spec_path = self.work_dir / f"{run_id}.json"
        spec_path.write_text(json.dumps(spec))
        args = [
            "-m",
            "zenml_oom_orchestrator.supervisor",
            "--spec",
            str(spec_path),
            "--kubeconfig",
            str(self.cluster.kubeconfig_path),
            "--log-level",
            "WARNING",
        ]
        return self._measure("supervisor", run_id, steps, args, "pods")

    def baseline(
        self, run_id: str, steps: int, attempt_seconds: float, oom_fraction: float
    ) -> Figures:
        ns = self._namespace(f"bench-{run_id}")
        args = [
            "-m",
            "zenml_oom_orchestrator.bench.baseline",
            "--kubeconfig",
            str(self.cluster.kubeconfig_path),
            "--namespace",
            ns,
            "--run-id",
            run_id,
            "--steps",
            str(steps),
            "--attempt-seconds",
            str(attempt_seconds),
            "--oom-fraction",
            str(oom_fraction),
            "--jitter",
            str(self.jitter),
        ]
        return self._measure("baseline", run_id, steps, args, "jobs")
