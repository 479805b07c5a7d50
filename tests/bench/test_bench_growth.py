"""bench.growth's reading of a step's own log: crossing -> limit change, per limit."""

from __future__ import annotations

from zenml_oom_orchestrator.bench.growth import cgroup_latencies, percentile, step_template

MI = 2**20


def test_latency_is_from_each_crossing_to_the_change_of_that_limit() -> None:
    log = "\n".join(
        [
            f"CROSS 100.0 {512 * MI}",
            f"LIMIT 101.25 {512 * MI} {1024 * MI}",
            f"CROSS 110.5 {1024 * MI}",
            f"LIMIT 112.0 {1024 * MI} {2048 * MI}",
            f"CROSS 120.0 {2048 * MI}",  # never grown: no figure
            "DONE 1600",
        ]
    )
    assert cgroup_latencies(log) == [1.25, 1.5]
    assert percentile([1.0, 2.0, 3.0], 0.5) == 2.0 and percentile([1.0, 2.0, 3.0], 0.99) == 3.0


def test_the_step_template_compiles() -> None:
    code = step_template(50, 1200)["spec"]["containers"][0]["command"][2]
    compile(code, "step", "exec")
