"""`python -m zenml_oom_orchestrator.bench`: the supervisor against the polling baseline on the
local cluster, with simulated attempts. See BENCHMARKS.md for what is measured and how.

`--quick` is the CI smoke: a small scale that prints every figure in seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

from zenml_oom_orchestrator.bench.report import print_churn, print_scenario, print_targets
from zenml_oom_orchestrator.bench.runner import Bench, Figures
from zenml_oom_orchestrator.localcluster.cluster import LocalCluster


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m zenml_oom_orchestrator.bench")
    p.add_argument("--quick", action="store_true", help="CI smoke: small scale, all figures")
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
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--json", help="also write every figure (and RSS samples) here")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.attempt_seconds = "20", 2.0
        args.churn_attempts, args.churn_parallelism, args.churn_attempt_seconds = 120, 40, 0.3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s) for s in str(args.steps).split(",") if s]
    results: dict[str, Any] = {"args": vars(args), "scenarios": [], "churn": None}
    scenarios: list[tuple[Figures, Figures | None]] = []
    # Simulated attempts use no memory: the node only has to admit 500 x 512Mi requests.
    with (
        tempfile.TemporaryDirectory(prefix="oom-bench-") as tmp,
        LocalCluster(memory="2Ti", cpus=64) as cluster,
    ):
        bench = Bench(cluster, Path(tmp), args.jitter)
        for n in sizes:
            ours = bench.supervisor(f"ours-{n}", n, args.attempt_seconds, args.oom_fraction)
            base = None
            if not args.no_baseline:
                base = bench.baseline(f"base-{n}", n, args.attempt_seconds, args.oom_fraction)
            print_scenario(n, args, ours, base)
            scenarios.append((ours, base))
            results["scenarios"].append(
                {"ours": ours.to_dict(), "baseline": base.to_dict() if base else None}
            )
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
    ok = print_targets(scenarios, churn, args.attempt_seconds)
    results["targets_met"] = ok
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    failed_runs = [f for pair in scenarios for f in pair if f is not None and not f.ok]
    return 1 if failed_runs or not churn.ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
