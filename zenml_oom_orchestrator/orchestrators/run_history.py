"""The store edge of learned start memory: read a pipeline's recent runs once per run.

The orchestrator pod calls :func:`learned_starts` before the supervisor starts. It costs a
bounded number of store requests, whatever the number of steps or past runs: one list of the
pipeline's last ``N`` finished runs (``N`` = the largest ``learning_window`` of the steps that
learn), then the final step runs of those runs, hydrated (their run metadata comes with them),
in pages of :data:`PAGE_SIZE`. What they say is turned into start memory by the pure
``policy.learned``.

A store that does not answer costs the run nothing but the learning: every step starts at its
policy's start, and the orchestrator log says so once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from zenml.client import Client
from zenml.constants import CODE_HASH_PARAMETER_NAME
from zenml.enums import ExecutionStatus
from zenml.models import PipelineSnapshotResponse

from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY, START_KEY
from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.policy.learned import LearnedMemory, PastRun, PastStep, learn

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
# Finished runs: a run still going (this one, or another in parallel) has nothing final yet.
_FINISHED = [s.value for s in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)] + [
    ExecutionStatus.STOPPED.value
]


def step_code_hash(snapshot: PipelineSnapshotResponse, step_name: str) -> str | None:
    """ZenML's hash of the step function's source code (what its cache key uses too).

    Not the step run's ``code_hash`` field: ZenML 0.98 fills that from the step's
    *parameters*, where the hash is not, so it is always empty.
    """
    step = snapshot.step_configurations.get(step_name)
    if step is None:
        return None
    value = step.config.caching_parameters.get(CODE_HASH_PARAMETER_NAME)
    return str(value) if value else None


def _oneof(values: list[str]) -> str:
    return "oneof:" + json.dumps(values)


def read_history(
    client: Client, pipeline_id: UUID, current_run_id: UUID, window: int
) -> list[PastRun]:
    """The pipeline's last ``window`` finished runs (not ``current_run_id``), newest first."""
    runs = client.list_pipeline_runs(
        pipeline_id=pipeline_id,
        status=_oneof(_FINISHED),
        sort_by="desc:created",
        size=window,
        page=1,
        hydrate=False,
    ).items
    runs = [r for r in runs if r.id != current_run_id]
    if not runs:
        return []
    steps: dict[UUID, dict[str, PastStep]] = {r.id: {} for r in runs}
    page, pages = 1, 1
    while page <= pages:
        result = client.list_run_steps(
            pipeline_run_id=_oneof([str(r.id) for r in runs]),
            exclude_retried=True,  # a step's final step run holds its attempt history
            sort_by="asc:created",
            size=PAGE_SIZE,
            page=page,
            hydrate=True,
        )
        for step_run in result.items:
            past = _past_step(step_run.name, step_run.status, step_run.run_metadata)
            steps.setdefault(step_run.pipeline_run_id, {})[step_run.name] = past
        pages, page = result.total_pages, page + 1
    return [PastRun(name=r.name, steps=steps[r.id]) for r in runs]


def _past_step(name: str, status: ExecutionStatus, metadata: Mapping[str, Any]) -> PastStep:
    step = metadata.get(START_KEY)
    code_hash = step.get("code_hash") if isinstance(step, Mapping) else None
    rows = metadata.get(HISTORY_KEY)
    return PastStep.from_rows(
        name,
        str(code_hash) if code_hash else None,
        [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else [],
        cached=status is ExecutionStatus.CACHED,
    )


def learned_starts(
    client: Client,
    snapshot: PipelineSnapshotResponse,
    run_id: UUID,
    policies: Mapping[str, OOMPolicy],
) -> dict[str, LearnedMemory]:
    """What the pipeline's recent runs say each learning step needs (steps with nothing
    learned are left out). Never raises: without its history the run starts as the policies
    say, and the log says so once."""
    learning = {name: p for name, p in policies.items() if p.learn_start_memory}
    if not learning or snapshot.pipeline is None:
        return {}
    window = max(p.learning_window for p in learning.values())
    try:
        history = read_history(client, snapshot.pipeline.id, run_id, window)
    except Exception as exc:  # noqa: BLE001 - any store failure only costs the learning
        logger.warning(
            "Could not read the last %d runs of pipeline `%s` from the ZenML store (%s: %s): "
            "every step starts at its policy's start memory, without learned start memory.",
            window,
            snapshot.pipeline.name,
            type(exc).__name__,
            exc,
        )
        return {}
    learned = {}
    for name, policy in learning.items():
        found = learn(name, step_code_hash(snapshot, name), history, policy)
        if found is not None:
            learned[name] = found
            logger.info("Step `%s`, from its last runs: %s.", name, found.describe())
    return learned
