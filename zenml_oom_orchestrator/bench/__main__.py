"""`python -m zenml_oom_orchestrator.bench`: the supervisor against the polling baseline with
simulated attempts, on the local cluster (`--cluster local`, the default) or on a real control
plane with KWOK nodes (`--cluster real-kwok`). See BENCHMARKS.md for what is measured and how.

`--quick` is the CI smoke: a small scale that prints every figure in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zenml_oom_orchestrator.bench.realkwok import KwokControlPlane
from zenml_oom_orchestrator.bench.report import print_churn, print_scenario, print_targets
from zenml_oom_orchestrator.bench.runner import Bench, Figures
from zenml_oom_orchestrator.bench.targets import KwokTarget, LocalTarget, Target
from zenml_oom_orchestrator.localcluster.cluster import LocalCluster


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m zenml_oom_orchestrator.bench")
    p.add_argument("--quick", action="store_true", help="CI smoke: small scale, all figures")
    p.add_argument(
        "--cluster",
        choices=["local", "real-kwok"],
        default="local",
        help="local: the project's local cluster; real-kwok: etcd, kube-apiserver, "
        "kube-controller-manager, kube-scheduler and KWOK nodes (binaries from "
        "$ZENML_OOM_REALTIER_CACHE, see BENCHMARKS.md)",
    )
    p.add_argument("--steps", default="50,200,500", help="concurrent steps per scenario")
    p.add_argument("--attempt-seconds", type=float, default=30.0, help="simulated attempt length")
    p.add_argument("--oom-fraction", type=float, default=0.2)
    p.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="spread attempt lengths by +-this fraction (0: every step ends at once, worst case)",
    )
    p.add_argument("--churn-attempts", type=int, default=5000, help="attempts for the RSS run")
    p.add_argument("--churn-parallelism", type=int, default=500)
    p.add_argument("--churn-attempt-seconds", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=50, help="concurrent runs (0: skip)")
    p.add_argument("--run-steps", type=int, default=40, help="steps per concurrent run")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="real-kwok: skip the floor scenario (the workload's pods alone, no orchestrator), "
        "which shows what each client's own requests cost the control plane",
    )
    p.add_argument("--json", help="also write every figure (and RSS samples) here")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.attempt_seconds = "20", 2.0
        args.churn_attempts, args.churn_parallelism, args.churn_attempt_seconds = 120, 40, 0.3
        args.runs, args.run_steps = 3, 5
    return args


@contextlib.contextmanager
def started(cluster: str, work_dir: Path) -> Iterator[Target]:
    if cluster == "real-kwok":
        with KwokControlPlane(nodes=2, work_dir=work_dir / "cluster") as plane:
            yield KwokTarget(plane)
    else:
        # Simulated attempts use no memory: the node only has to admit the memory requests.
        with LocalCluster(memory="20Ti", cpus=512) as local:
            yield LocalTarget(local)


def machine() -> dict[str, Any]:
    """What the figures were measured on, load included (the machine may be shared)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit or "?",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # SIGTERM unwinds like Ctrl-C, so the control plane's processes are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(s) for s in str(args.steps).split(",") if s]
    results: dict[str, Any] = {"args": vars(args), "machine": machine(), "scenarios": []}
    print(f"== cluster {args.cluster}; {results['machine']} ==", flush=True)
    scenarios: list[tuple[Figures, Figures | None]] = []
    with (
        tempfile.TemporaryDirectory(prefix="oom-bench-") as tmp,
        started(args.cluster, Path(tmp)) as target,
    ):
        bench = Bench(target, Path(tmp), args.jitter)

        def pair(n: int, runs: int) -> None:
            ours = bench.supervisor(
                f"ours-{n}", n, args.attempt_seconds, args.oom_fraction, runs=runs
            )
            base = None
            if not args.no_baseline:
                base = bench.baseline(
                    f"base-{n}", n, args.attempt_seconds, args.oom_fraction, runs=runs
                )
            floor = None
            if runs == 1 and args.cluster == "real-kwok" and not args.no_floor:
                floor = bench.floor(f"floor-{n}", n, args.attempt_seconds, args.oom_fraction)
            print_scenario(n, args, ours, base, floor)
            scenarios.append((ours, base))
            results["scenarios"].append(
                {
                    "ours": ours.to_dict(),
                    "baseline": base.to_dict() if base else None,
                    "floor": floor.to_dict() if floor else None,
                }
            )

        for n in sizes:
            pair(n, 1)
        if args.runs:
            pair(args.run_steps, args.runs)
        steps = math.ceil(args.churn_attempts / (1 + args.oom_fraction))
        churn = bench.supervisor(
            "churn",
            steps,
            args.churn_attempt_seconds,
            args.oom_fraction,
            args.churn_parallelism,
        )
        print_churn(churn, args)
        results["churn"] = churn.to_dict()
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    ok = print_targets(scenarios, churn, args.attempt_seconds, args.cluster)
    results["targets_met"] = ok
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    failed_runs = [f for pair in scenarios for f in pair if f is not None and not f.ok]
    return 1 if failed_runs or not churn.ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
