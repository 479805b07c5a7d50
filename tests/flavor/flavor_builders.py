"""Builders for flavor tests: steps merged the way ZenML merges them, with no store or server.

A module of its own (not conftest) so that `from flavor_builders import ...` is unambiguous when
the integration tests' conftest is collected in the same session.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

from zenml.config.compiler import Compiler
from zenml.config.pipeline_configurations import PipelineConfiguration
from zenml.config.resource_settings import ResourceSettings
from zenml.config.step_configurations import Step, StepConfiguration
from zenml.enums import StackComponentType
from zenml.models import PipelineSnapshotBase
from zenml.utils import pydantic_utils, settings_utils

from zenml_oom_orchestrator.flavors import (
    OOMKubernetesOrchestratorConfig,
    OOMKubernetesOrchestratorSettings,
)
from zenml_oom_orchestrator.orchestrators import step_pods
from zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator import (
    OOMKubernetesOrchestrator,
)

StepFactory = Callable[..., Step]


def make_orchestrator(**config: Any) -> OOMKubernetesOrchestrator:
    return OOMKubernetesOrchestrator(
        name="oom",
        id=uuid4(),
        config=OOMKubernetesOrchestratorConfig(kubernetes_context="oom-local", **config),
        flavor="oom_kubernetes",
        type=StackComponentType.ORCHESTRATOR,
        user=None,
        created=datetime.now(),
        updated=datetime.now(),
    )


def compile_step(
    orchestrator: OOMKubernetesOrchestrator,
    name: str = "train",
    step_settings: dict[str, Any] | None = None,
    pipeline_settings: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    resource_memory: str | None = None,
) -> Step:
    """A compiled step, merged as ZenML does: component defaults into the pipeline's settings
    (compiler), then the step's over the pipeline's (as the server rebuilds stored steps)."""
    key = settings_utils.get_stack_component_name_setting_key(orchestrator)
    pipeline_settings_merged = pydantic_utils.update_model(
        Compiler()._get_default_settings(orchestrator),
        update=OOMKubernetesOrchestratorSettings(**(pipeline_settings or {})),
    )
    settings: dict[str, Any] = {}
    if step_settings is not None:
        settings[key] = OOMKubernetesOrchestratorSettings(**step_settings)
    if resource_memory is not None:
        settings["resources"] = ResourceSettings(memory=resource_memory)
    overrides = StepConfiguration(name=name, settings=settings, retry=retry)
    pipeline = PipelineConfiguration(name="p", settings={key: pipeline_settings_merged})
    # Through JSON, as the server stores and rebuilds them.
    data = {
        "spec": {
            "source": "tests.flavor.flavor_builders.compile_step",
            "upstream_steps": [],
            "invocation_id": name,
        },
        "step_config_overrides": json.loads(overrides.model_dump_json()),
    }
    return Step.from_dict(
        data,
        pipeline_configuration=PipelineConfiguration.model_validate_json(
            pipeline.model_dump_json()
        ),
        exclude_hook_sources=False,
    )


def make_snapshot(steps: dict[str, Step]) -> PipelineSnapshotBase:
    return PipelineSnapshotBase(
        run_name_template="run",
        pipeline_configuration=PipelineConfiguration(name="p"),
        step_configurations=steps,
        client_version="0.98.0",
        server_version="0.98.0",
    )


def step_template(
    monkeypatch: Any, secrets: dict[str, str], snapshot_id: UUID | None = None, **config: Any
) -> dict[str, Any]:
    """The step pod template of step `train`, built by the flavor's own `step_pod_template`
    for an orchestrator with `config`; the image lookup and the runtime environment, which
    need a stored build and a stack, are stubbed through `monkeypatch`."""
    monkeypatch.setattr(OOMKubernetesOrchestrator, "get_image", lambda **_: "img:1")
    monkeypatch.setattr(step_pods.env_utils, "get_runtime_environment", lambda **_: {})
    orchestrator = make_orchestrator(**config)
    snapshot = SimpleNamespace(
        **vars(make_snapshot({"train": compile_step(orchestrator)})),
        id=snapshot_id or uuid4(),
        project_id=uuid4(),
    )
    ctx = step_pods.StepPodContext(
        snapshot=snapshot,  # type: ignore[arg-type]
        pipeline_run=SimpleNamespace(id=uuid4(), name="run-1"),  # type: ignore[arg-type]
        orchestrator=orchestrator,
        stack=SimpleNamespace(),  # type: ignore[arg-type]
        orchestrator_run_id="orch-1",
        shared_env={"ZENML_STORE_URL": "https://zenml.example"},
        secrets=secrets,
        oidc_claims={},
        workspace_user_id="user-1",
    )
    return step_pods.step_pod_template(ctx, "train")
