"""`python -m zenml_oom_orchestrator.bench.table A.json B.json ...`: the figures of several
benchmark runs (`--json` of `python -m zenml_oom_orchestrator.bench`, e.g. one per cluster) as
one Markdown table per scenario size, ours against the baseline, side by side."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

COLUMNS = (
    "cluster",
    "client",
    "attempts",
    "OOM→next p50 / p99 (n)",
    "client req: total, / step-min",
    "all API req / step-min",
    "CPU s: total, / step-min",
    "wall",
    "peak RSS",
)


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(ours: float | None, base: float | None) -> str:
    return "-" if not ours or not base else f"**{ours / base:.3f}**"


def _row(f: dict[str, Any], load: str) -> str:
    if "loadavg_start_end" in f:  # this scenario's own, else the whole run's
        load = "→".join(f"{x:.1f}" for x in f["loadavg_start_end"])
    cpu_label = "local process" if f["cluster"] == "local" else "apiserver+etcd"
    cells = [
        f"{f['cluster']} (load {load})",
        f["client"],
        str(f["attempts"]),
        f"{_num(f['oom_to_next_p50'], '.3f')} / {_num(f['oom_to_next_p99'], '.3f')} s "
        f"({f['oom_retries_measured']})",
        f"{f['requests']:,}, {_num(f['requests_per_step_minute'], '.2f')}",
        _num(f.get("server_requests_per_step_minute"), ".2f"),
        f"{_num(f.get('control_plane_cpu_seconds'), '.1f')}, "
        f"{_num(f.get('control_plane_cpu_per_step_minute'), '.3f')} ({cpu_label})",
        f"{f['seconds']:.0f} s",
        f"{f['peak_rss_mib']:.0f} MiB",
    ]
    return "| " + " | ".join(cells) + " |"


def _ratio_row(ours: dict[str, Any], base: dict[str, Any]) -> str:
    cells = [
        ours["cluster"],
        "ours / baseline",
        "",
        "",
        f"{_ratio(ours['requests'], base['requests'])}, "
        + _ratio(ours["requests_per_step_minute"], base["requests_per_step_minute"]),
        _ratio(
            ours.get("server_requests_per_step_minute"),
            base.get("server_requests_per_step_minute"),
        ),
        f"{_ratio(ours.get('control_plane_cpu_seconds'), base.get('control_plane_cpu_seconds'))}, "
        + _ratio(
            ours.get("control_plane_cpu_per_step_minute"),
            base.get("control_plane_cpu_per_step_minute"),
        ),
        "",
        "",
    ]
    return "| " + " | ".join(cells) + " |"


def _above_floor_row(ours: dict[str, Any], base: dict[str, Any], floor: dict[str, Any]) -> str:
    """apiserver+etcd CPU each client adds on top of the pods alone (the floor), as a ratio."""
    cpu = "control_plane_cpu_seconds"
    own, theirs = ours[cpu] - floor[cpu], base[cpu] - floor[cpu]
    cells = [ours["cluster"], "ours / baseline above the floor", "", "", "", ""]
    cells += [f"{_ratio(own, theirs)} ({own:.1f} s / {theirs:.1f} s)", "", ""]
    return "| " + " | ".join(cells) + " |"


def render(results: list[dict[str, Any]]) -> str:
    groups: dict[str, list[str]] = defaultdict(list)
    for result in results:
        machine = result.get("machine") or {}
        load = "/".join(f"{x:.1f}" for x in (machine.get("loadavg") or [])[:1])
        load += "→" + "/".join(f"{x:.1f}" for x in (machine.get("loadavg_end") or [])[:1])
        for scenario in result["scenarios"]:
            ours, base = scenario["ours"], scenario["baseline"]
            runs = ours.get("runs", 1)
            title = (
                f"{runs} concurrent runs × {ours['steps'] // runs} steps"
                if runs > 1
                else f"{ours['steps']} steps in flight"
            )
            groups[title].append(_row(ours, load))
            if base is not None:
                groups[title].append(_row(base, load))
                groups[title].append(_ratio_row(ours, base))
            floor = scenario.get("floor")
            if floor is not None:
                groups[title].append(_row(floor, load))
                if base is not None:
                    groups[title].append(_above_floor_row(ours, base, floor))
        churn = result.get("churn")
        if churn:
            groups[f"supervisor churn, {churn['steps']} steps"].append(_row(churn, load))
    out = []
    for title, rows in groups.items():
        out += [f"#### {title}", "", "| " + " | ".join(COLUMNS) + " |"]
        out += ["|" + "---|" * len(COLUMNS), *rows, ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zenml_oom_orchestrator.bench.table")
    parser.add_argument("json", nargs="+", help="files written by the benchmark's --json")
    args = parser.parse_args(argv)
    print(render([json.loads(Path(p).read_text()) for p in args.json]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
