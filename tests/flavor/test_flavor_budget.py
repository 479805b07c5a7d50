"""The retry budget hook: raised enough for the policy, idempotent, stored, user's limit kept."""

from __future__ import annotations

import json

import pytest
from flavor_builders import compile_step, make_orchestrator, make_snapshot
from zenml.config.pipeline_configurations import PipelineConfiguration
from zenml.config.step_configurations import Step

from zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator import (
    DynamicPipelineNotSupportedError,
    OOMKubernetesOrchestrator,
)
from zenml_oom_orchestrator.orchestrators.retry_budget import user_retry_config


def _stored_and_rebuilt(step: Step) -> Step:
    """What the server keeps (no merged `config`) and rebuilds for create_run_step."""
    data = json.loads(step.model_dump_json(exclude={"config"}))
    return Step.from_dict(
        data, pipeline_configuration=PipelineConfiguration(name="p"), exclude_hook_sources=False
    )


def test_budget_covers_oom_and_infrastructure_retries_on_top_of_the_users() -> None:
    orchestrator = make_orchestrator(max_oom_retries=4, max_infrastructure_retries=2)
    snapshot = make_snapshot(
        {
            "plain": compile_step(orchestrator, name="plain"),
            "retried": compile_step(orchestrator, name="retried", retry={"max_retries": 3}),
        }
    )
    orchestrator.get_docker_builds(snapshot)
    steps = snapshot.step_configurations
    assert steps["plain"].config.retry is not None
    assert steps["plain"].config.retry.max_retries == 6
    assert steps["retried"].config.retry is not None
    assert steps["retried"].config.retry.max_retries == 9
    assert user_retry_config(steps["plain"]) is None
    user = user_retry_config(steps["retried"])
    assert user is not None and user.max_retries == 3


def test_hook_is_idempotent_when_zenml_calls_it_twice(
    orchestrator: OOMKubernetesOrchestrator,
) -> None:
    snapshot = make_snapshot({"train": compile_step(orchestrator, retry={"max_retries": 2})})
    orchestrator.get_docker_builds(snapshot)
    first = snapshot.model_dump_json()
    orchestrator.get_docker_builds(snapshot)
    assert snapshot.model_dump_json() == first


def test_raise_survives_what_the_server_stores(orchestrator: OOMKubernetesOrchestrator) -> None:
    # The default policy: 3 OOM + 3 infrastructure retries.
    snapshot = make_snapshot({"train": compile_step(orchestrator, retry={"max_retries": 1})})
    orchestrator.get_docker_builds(snapshot)
    rebuilt = _stored_and_rebuilt(snapshot.step_configurations["train"])
    assert rebuilt.config.retry is not None and rebuilt.config.retry.max_retries == 7
    user = user_retry_config(rebuilt)
    assert user is not None and user.max_retries == 1


def test_per_step_policy_gives_per_step_budget() -> None:
    orchestrator = make_orchestrator(max_oom_retries=1, max_infrastructure_retries=0)
    snapshot = make_snapshot(
        {
            "small": compile_step(orchestrator, name="small"),
            "big": compile_step(orchestrator, name="big", step_settings={"max_oom_retries": 5}),
        }
    )
    orchestrator.get_docker_builds(snapshot)
    retry = {n: s.config.retry for n, s in snapshot.step_configurations.items()}
    assert retry["small"] is not None and retry["small"].max_retries == 1
    assert retry["big"] is not None and retry["big"].max_retries == 5


def test_dynamic_pipelines_are_refused_before_anything_is_stored(
    orchestrator: OOMKubernetesOrchestrator,
) -> None:
    snapshot = make_snapshot({"train": compile_step(orchestrator)})
    snapshot = snapshot.model_copy(update={"is_dynamic": True})
    with pytest.raises(DynamicPipelineNotSupportedError, match="static pipelines only"):
        orchestrator.get_docker_builds(snapshot)
