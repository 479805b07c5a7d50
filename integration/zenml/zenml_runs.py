"""Helpers for the end-to-end tests: run a pipeline on a stack, read back what the store says."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zenml.client import Client
from zenml.models import PipelineRunResponse
from zenml.utils.run_utils import stop_run

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorSettings, PipelineRunFailedError
from zenml_oom_orchestrator.orchestrators.store_sync import OPEN_STATUSES, StoreSync
from zenml_oom_orchestrator.testing.stack import no_build_docker_settings

OPEN = {s.value for s in OPEN_STATUSES}


@dataclass
class Outcome:
    """What one run left in the store."""

    flavor: str
    run: PipelineRunResponse
    seconds: float
    step_runs: dict[str, list[str]] = field(default_factory=dict)  # every version, oldest first

    @property
    def open_step_runs(self) -> int:
        return sum(s in OPEN for versions in self.step_runs.values() for s in versions)

    def row(self) -> str:
        steps = ", ".join(f"{n}={'/'.join(v) or '-'}" for n, v in sorted(self.step_runs.items()))
        return (
            f"{self.flavor:<15} run={self.run.status.value:<10} {self.seconds:6.1f}s  "
            f"open step runs={self.open_step_runs}  {steps}"
        )


def read_outcome(flavor: str, run_id: Any, seconds: float) -> Outcome:
    run = Client().get_pipeline_run(run_id)
    sync = StoreSync(run.id)
    names = list(run.snapshot.step_configurations) if run.snapshot else []
    return Outcome(
        flavor, run, seconds, {n: [s.status.value for s in sync.step_runs(n)] for n in names}
    )


def run_oom(pipeline: Any, oom_settings: dict[str, Any] | None = None, **params: Any) -> Outcome:
    """Run ``pipeline(**params)`` synchronously on the oom_kubernetes stack."""
    Client().activate_stack("oom-stack")
    settings = {
        "docker": no_build_docker_settings(),
        "orchestrator": OOMKubernetesOrchestratorSettings(**(oom_settings or {})),
    }
    started = time.monotonic()
    try:
        run_id = pipeline.with_options(settings=settings)(**params).id
    except PipelineRunFailedError as failed:  # a failed synchronous run raises
        run_id = failed.run_id
    return read_outcome("oom_kubernetes", run_id, time.monotonic() - started)


def run_stock(
    pipeline: Any, orchestrator: dict[str, Any], deadline: float, retry: Any = None, **params: Any
) -> Outcome:
    """Run ``pipeline(**params)`` on the stock-stack, asynchronously, so that a run still open
    after ``deadline`` seconds can be recorded as it is, then stopped."""
    Client().activate_stack("stock-stack")
    settings = {
        "docker": no_build_docker_settings(),
        "orchestrator": {**orchestrator, "synchronous": False},
    }
    started = time.monotonic()
    options: dict[str, Any] = {"settings": settings}
    if retry is not None:
        options["retry"] = retry
    run = pipeline.with_options(**options)(**params)
    assert run is not None
    while time.monotonic() - started < deadline:
        if Client().get_pipeline_run(run.id, hydrate=False).status.is_finished:
            break
        time.sleep(2)
    outcome = read_outcome("kubernetes", run.id, time.monotonic() - started)
    if not outcome.run.status.is_finished:
        stop_run(outcome.run, graceful=False)
    return outcome


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
