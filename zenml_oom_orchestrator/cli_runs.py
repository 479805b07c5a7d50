"""`zenml-oom attempts RUN` and `zenml-oom explain RUN [STEP]`: a run's attempts, from the store.

Both read only the ZenML store (the ``oom_attempts`` run metadata the orchestrator writes on
each step's final step run), so users without cluster rights can use them. RUN is a run's
name, id or id prefix, or a pipeline name for that pipeline's last run.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from .explain import StepFacts, explain_run, explain_step

if TYPE_CHECKING:
    from zenml.models import PipelineRunResponse

# Kept equal to orchestrators.store_sync.HISTORY_KEY (a test checks); not imported from there
# so that `--help` stays fast (store_sync imports ZenML).
HISTORY_KEY = "oom_attempts"


def load_run(ref: str) -> PipelineRunResponse:
    """The run named by ``ref`` (name, id, id prefix), else the last run of pipeline ``ref``."""
    from zenml.client import Client

    client = Client()
    try:
        return client.get_pipeline_run(ref)
    except (KeyError, ValueError):
        pass
    try:
        last = client.get_pipeline(ref).last_run
    except (KeyError, ValueError, RuntimeError):
        last = None
    if last is None:
        raise click.ClickException(
            f"No pipeline run (name, id or id prefix) and no pipeline with runs called {ref!r}. "
            "List runs with `zenml pipeline runs list`."
        )
    return client.get_pipeline_run(last.id)


def _history(step_run: Any) -> list[dict[str, Any]]:
    history = step_run.run_metadata.get(HISTORY_KEY)
    return list(history) if isinstance(history, list) else []


def _error(step_run: Any) -> str | None:
    info = step_run.exception_info
    return info.message if info is not None and info.message else None


def run_error(run: PipelineRunResponse) -> str | None:
    """The run's own stored reason for its status, if the store has one."""
    info = run.exception_info
    if info is not None and info.message:
        return str(info.message)
    return run.get_body().status_reason or None


def step_facts(run: PipelineRunResponse) -> list[StepFacts]:
    """What the store knows about each step of ``run``, in the pipeline's order."""
    configs = run.snapshot.step_configurations if run.snapshot else {}
    names = list(configs) or list(run.steps)
    steps = run.steps
    statuses = {n: (steps[n].status.value if n in steps else None) for n in names}
    facts = []
    for name in names:
        upstream = list(configs[name].spec.upstream_steps) if name in configs else []
        failed_upstream = [u for u in upstream if statuses.get(u) not in ("completed", "cached")]
        step_run = steps.get(name)
        facts.append(
            StepFacts(
                name=name,
                status=statuses[name],
                history=_history(step_run) if step_run is not None else [],
                error=_error(step_run) if step_run is not None else None,
                upstream=upstream,
                failed_upstream=failed_upstream,
            )
        )
    return facts


@click.command(name="attempts")
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON (step -> attempt rows) for scripts.",
)
def attempts(run_ref: str, output: str) -> None:
    """Print the attempt table of RUN, from the ZenML store.

    One row per attempt of each step: memory request and limit, outcome, exit code, duration
    and the orchestrator's message. RUN is a run name, id or id prefix, or a pipeline name (its last run). Reads only the
    ZenML store.
    """
    from .orchestrators.status_view import attempt_table_for_run

    run = load_run(run_ref)
    if output == "json":
        rows = {f.name: list(f.history) for f in step_facts(run)}
        click.echo(
            json.dumps({"run": run.name, "status": run.status.value, "steps": rows}, indent=2)
        )
        return
    click.echo(attempt_table_for_run(run))


@click.command(name="explain")
@click.argument("run_ref", metavar="RUN")
@click.argument("step", required=False)
def explain(run_ref: str, step: str | None) -> None:
    """Say why a step failed, and which setting would change that.

    Explains STEP of RUN, or every step of RUN that failed, never started or needed retries.
    RUN is a run name, id or id prefix, or a pipeline name (its last run).
    """
    run = load_run(run_ref)
    facts = step_facts(run)
    if step is None:
        click.echo(explain_run(run.name, run.status.value, facts, run_error(run)))
        return
    chosen = [f for f in facts if f.name == step]
    if not chosen:
        names = ", ".join(f.name for f in facts)
        raise click.ClickException(f"Run `{run.name}` has no step {step!r}; its steps: {names}.")
    click.echo(explain_step(chosen[0], run.status.value))
