"""Benchmarks on the local cluster: the supervisor against a polling baseline.

Run `python -m zenml_oom_orchestrator.bench` (see BENCHMARKS.md); `--quick` for a CI smoke.
"""
