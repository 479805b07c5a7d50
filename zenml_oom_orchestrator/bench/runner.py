"""One benchmark scenario: a client (our supervisor, or the polling baseline) runs a workload
on a cluster (the local one, or a real control plane with KWOK nodes: see `targets`) while the
API server counts requests and server-side stamps time the transitions."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zenml_oom_orchestrator.bench import workload
from zenml_oom_orchestrator.bench.procs import Sampled, run_sampled_many
from zenml_oom_orchestrator.bench.stamps import percentile
from zenml_oom_orchestrator.bench.targets import Target

READ_VERBS = frozenset({"get", "list", "watch"})


@dataclass
class Figures:
    """What one scenario measured (latencies in seconds, RSS in MiB)."""

    client: str  # "supervisor" or "baseline"
    cluster: str  # "local" or "real-kwok"
    runs: int  # concurrent runs (one client process each)
    steps: int  # in all runs
    ok: bool
    seconds: float
    attempts: int
    oom_to_next: list[float]
    requests: int  # the client's own, as the API server counted them
    read_requests: int  # get/list/watch of every client of the API server
    server_requests: int  # every resource request the API server served, all components
    by_verb: dict[str, int]  # "verb resource" -> count, all components
    cpu: dict[str, float]  # CPU seconds per cluster component during the run
    step_minutes: float
    peak_rss: float
    sampled: Sampled
    per_process_peak_rss: list[float] = field(default_factory=list)
    loadavg: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start and end

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
    def control_plane_cpu(self) -> float:
        """kube-apiserver + etcd CPU seconds (local: the local cluster's process, whose API
        server, store, scheduler, kubelet and job controller share one interpreter)."""
        return sum(v for k, v in self.cpu.items() if k in ("kube-apiserver", "etcd", "local"))

    @property
    def cpu_per_step_minute(self) -> float:
        return self.control_plane_cpu / self.step_minutes if self.step_minutes else math.nan

    @property
    def server_per_step_minute(self) -> float:
        return self.server_requests / self.step_minutes if self.step_minutes else math.nan

    @property
    def reads_per_step_minute(self) -> float:
        return self.read_requests / self.step_minutes if self.step_minutes else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "cluster": self.cluster,
            "runs": self.runs,
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
            "server_requests": self.server_requests,
            "server_requests_per_step_minute": round(self.server_per_step_minute, 3),
            "requests_by_verb": dict(sorted(self.by_verb.items())),
            "cpu_seconds": {k: round(v, 2) for k, v in sorted(self.cpu.items())},
            "control_plane_cpu_seconds": round(self.control_plane_cpu, 2),
            "control_plane_cpu_per_step_minute": round(self.cpu_per_step_minute, 4),
            "per_process_peak_rss_mib": [round(r, 1) for r in self.per_process_peak_rss],
            "loadavg_start_end": [round(x, 2) for x in self.loadavg],
            "peak_rss_mib": round(self.peak_rss, 1),
            "rss_samples": [
                (round(s.t, 1), round(s.rss_mib, 1), s.progress) for s in self.sampled.samples
            ],
        }


class Bench:
    """A started cluster target; runs scenarios one after another."""

    def __init__(self, target: Target, work_dir: Path, jitter: float = 0.0) -> None:
        self.target = target
        self.jitter = jitter
        self.work_dir = work_dir
        self.stamps = target.stamps

    def _progress(self, run_ids: list[str]) -> int:
        self.target.poll()
        return sum(self.stamps.attempts_finished(r) for r in run_ids)

    def _measure(
        self,
        client: str,
        run_ids: list[str],
        steps: int,
        arg_lists: list[list[str]],
        kind: str,
        pods_at_once: int | None = None,
    ) -> Figures:
        """Run one client process per run at once; `kind` is what counts as the next attempt
        (`pods` for the supervisor, `jobs` for the Job-based baseline)."""
        self.target.prepare(pods_at_once or steps)
        before, client_before = self.target.scrape()
        cpu_before = self.target.cpu()
        load_before = os.getloadavg()[0]
        sampled = run_sampled_many(
            arg_lists,
            progress=lambda: self._progress(run_ids),
            log_paths=[self.work_dir / f"{r}.log" for r in run_ids],
        )
        after, client_after = self.target.scrape()
        cpu_after = self.target.cpu()
        self.target.poll()
        delta = after - before
        stamps = self.stamps
        self.target.finish(run_ids)
        return Figures(
            client=client,
            cluster=self.target.name,
            runs=len(run_ids),
            steps=steps,
            ok=all(s.returncode == 0 for s in sampled),
            seconds=max(s.seconds for s in sampled),
            attempts=sum(stamps.attempts_created(r, kind) for r in run_ids),
            oom_to_next=[x for r in run_ids for x in stamps.oom_to_next(r, kind)],
            requests=client_after - client_before,
            read_requests=sum(n for (verb, _r), n in delta.items() if verb in READ_VERBS),
            server_requests=sum(delta.values()),
            by_verb={f"{verb} {resource}": n for (verb, resource), n in delta.items() if n},
            cpu={k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
            step_minutes=sum(stamps.step_minutes(r) for r in run_ids),
            peak_rss=max(s.peak_rss for s in sampled),
            sampled=sampled[0],
            per_process_peak_rss=[s.peak_rss for s in sampled],
            loadavg=(load_before, os.getloadavg()[0]),
        )

    def supervisor(
        self,
        run_id: str,
        steps: int,
        attempt_seconds: float,
        oom_fraction: float,
        max_parallelism: int | None = None,
        runs: int = 1,
    ) -> Figures:
        """`runs` supervisors at once (one per run, as one orchestrator pod each), `steps`
        steps each."""
        run_ids = [run_id] if runs == 1 else [f"{run_id}-r{i:02d}" for i in range(runs)]
        arg_lists = []
        for rid in run_ids:
            ns = self.target.namespace(f"bench-{rid}")
            spec = workload.run_spec(
                rid,
                ns,
                steps,
                attempt_seconds,
                oom_fraction,
                max_parallelism,
                self.jitter,
                self.target.sim,
            )
            spec_path = self.work_dir / f"{rid}.json"
            spec_path.write_text(json.dumps(spec))
            arg_lists.append(
                [
                    "-m",
                    "zenml_oom_orchestrator.supervisor",
                    "--spec",
                    str(spec_path),
                    "--kubeconfig",
                    str(self.target.kubeconfig_path),
                    "--log-level",
                    "WARNING",
                ]
            )
        return self._measure("supervisor", run_ids, steps * runs, arg_lists, "pods")

    def floor(
        self, run_id: str, steps: int, attempt_seconds: float, oom_fraction: float
    ) -> Figures:
        """Every attempt pod of the workload created at once, no orchestration (`floor`)."""
        ns = self.target.namespace(f"bench-{run_id}")
        args = [
            *("-m", "zenml_oom_orchestrator.bench.floor", "--kubeconfig"),
            str(self.target.kubeconfig_path),
            *("--namespace", ns, "--run-id", run_id, "--steps", str(steps)),
            *("--attempt-seconds", str(attempt_seconds), "--oom-fraction", str(oom_fraction)),
            *("--jitter", str(self.jitter), "--sim", self.target.sim),
        ]
        pods = steps + sum(workload.is_oom_step(i, oom_fraction) for i in range(steps))
        figures = self._measure("floor", [run_id], steps, [args], "pods", pods_at_once=pods)
        figures.oom_to_next = []  # its second attempts are created before the first ones end
        return figures

    def baseline(
        self, run_id: str, steps: int, attempt_seconds: float, oom_fraction: float, runs: int = 1
    ) -> Figures:
        run_ids = [run_id] if runs == 1 else [f"{run_id}-r{i:02d}" for i in range(runs)]
        arg_lists = []
        for rid in run_ids:
            ns = self.target.namespace(f"bench-{rid}")
            arg_lists.append(
                [
                    "-m",
                    "zenml_oom_orchestrator.bench.baseline",
                    "--kubeconfig",
                    str(self.target.kubeconfig_path),
                    "--namespace",
                    ns,
                    "--run-id",
                    rid,
                    "--steps",
                    str(steps),
                    "--attempt-seconds",
                    str(attempt_seconds),
                    "--oom-fraction",
                    str(oom_fraction),
                    "--jitter",
                    str(self.jitter),
                    "--sim",
                    self.target.sim,
                ]
            )
        return self._measure("baseline", run_ids, steps * runs, arg_lists, "jobs")
