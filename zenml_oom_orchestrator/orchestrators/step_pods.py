"""Each step's pod template, built the way ZenML's stock Kubernetes entrypoint builds step pods.

The supervisor only overwrites the main container's memory per attempt (and adds its own
labels); everything else a stock user configured (pod settings, service accounts, privileged,
tolerations, volumes, the token secret, local store mounts) is kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

from zenml.constants import LINUX_GID_CLAIM_KEY, LINUX_UID_CLAIM_KEY
from zenml.entrypoints.step_entrypoint_configuration import StepEntrypointConfiguration
from zenml.integrations.kubernetes import kube_utils
from zenml.integrations.kubernetes.constants import (
    ENV_ZENML_KUBERNETES_RUN_ID,
    KUBERNETES_SECRET_TOKEN_KEY_NAME,
    STEP_NAME_ANNOTATION_KEY,
    WORKSPACE_USER_ID_ANNOTATION_KEY,
)
from zenml.integrations.kubernetes.manifest_utils import build_pod_manifest
from zenml.models import PipelineRunResponse, PipelineSnapshotResponse
from zenml.stack import Stack
from zenml.utils import env_utils

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorSettings
from zenml_oom_orchestrator.orchestrators import local_cluster
from zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator import (
    TOKEN_ENV,
    OOMKubernetesOrchestrator,
)
from zenml_oom_orchestrator.supervisor.manifests import main_container_of, template_dict


@dataclass
class StepPodContext:
    """What every step pod of one run shares (computed once by the orchestrator pod)."""

    snapshot: PipelineSnapshotResponse
    pipeline_run: PipelineRunResponse
    orchestrator: OOMKubernetesOrchestrator
    stack: Stack
    orchestrator_run_id: str
    shared_env: dict[str, str]
    secrets: dict[str, str]
    oidc_claims: dict[str, Any]
    workspace_user_id: str

    def base_labels(self) -> dict[str, str]:
        return {
            "project_id": kube_utils.sanitize_label_value(str(self.snapshot.project_id)),
            "run_id": kube_utils.sanitize_label_value(str(self.pipeline_run.id)),
            "run_name": kube_utils.sanitize_label_value(str(self.pipeline_run.name)),
            "pipeline": kube_utils.sanitize_label_value(self.snapshot.pipeline_configuration.name),
        }


def _extra_resources(resource_settings: Any) -> dict[str, dict[str, str]]:
    """CPU and GPU from ZenML's ResourceSettings (memory is the supervisor's, per attempt)."""
    if resource_settings.empty:
        return {}
    requests, limits, _ = kube_utils.convert_resource_settings_to_k8s_format(resource_settings)
    requests.pop("memory", None)
    limits.pop("memory", None)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def token_env(ctx: StepPodContext) -> dict[str, str]:
    """The run's secret env values that go into the pod spec as plain values.

    With ``pass_zenml_token_as_secret`` (the default) that excludes the API token, which the
    pod reads from the run's Secret instead (:func:`token_secret_ref`). A server without
    authentication gives no token at all, and then there is no Secret either.
    """
    if ctx.orchestrator.config.pass_zenml_token_as_secret:
        return {k: v for k, v in ctx.secrets.items() if k != TOKEN_ENV}
    return dict(ctx.secrets)


def token_secret_ref(ctx: StepPodContext) -> dict[str, Any] | None:
    """The env entry reading the API token from the run's Secret (created at submission)."""
    if not ctx.orchestrator.config.pass_zenml_token_as_secret or TOKEN_ENV not in ctx.secrets:
        return None
    return {
        "name": TOKEN_ENV,
        "valueFrom": {
            "secretKeyRef": {
                "name": ctx.orchestrator.get_token_secret_name(ctx.snapshot.id),
                "key": KUBERNETES_SECRET_TOKEN_KEY_NAME,
            }
        },
    }


def step_pod_template(ctx: StepPodContext, step_name: str) -> dict[str, Any]:
    """The pod manifest of ``step_name`` as a JSON dict (main container ``main``)."""
    step = ctx.snapshot.step_configurations[step_name]
    settings = cast(OOMKubernetesOrchestratorSettings, ctx.orchestrator.get_settings(step))

    env = dict(ctx.shared_env)
    env[ENV_ZENML_KUBERNETES_RUN_ID] = ctx.orchestrator_run_id
    env.update(env_utils.get_runtime_environment(config=step.config, stack=ctx.stack))
    if ctx.orchestrator.config.local_cluster and "PYTHONPATH" in os.environ:
        # Set at submission to the pipeline's source root here (see local_cluster.py).
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]

    # apply_default_resource_requests mutates its argument: work on a copy.
    pod_settings = settings.pod_settings.model_copy(deep=True) if settings.pod_settings else None
    pod_settings = kube_utils.apply_default_resource_requests(
        memory="400Mi", pod_settings=pod_settings
    )
    for kind, values in _extra_resources(step.config.resource_settings).items():
        pod_settings.resources.setdefault(kind, {}).update(values)
    env.update(token_env(ctx))
    token_ref = token_secret_ref(ctx)
    if token_ref is not None:
        env.pop(TOKEN_ENV, None)
        pod_settings.env.append(token_ref)

    labels = ctx.base_labels()
    labels["step_name"] = kube_utils.sanitize_label_value(step_name)
    entrypoint: type[StepEntrypointConfiguration] = (
        local_cluster.LocalClusterStepEntrypointConfiguration
        if ctx.orchestrator.config.local_cluster
        else StepEntrypointConfiguration
    )
    manifest = build_pod_manifest(
        pod_name=None,
        image_name=OOMKubernetesOrchestrator.get_image(snapshot=ctx.snapshot, step_name=step_name),
        command=entrypoint.get_entrypoint_command(),
        args=entrypoint.get_entrypoint_arguments(step_name=step_name, snapshot_id=ctx.snapshot.id),
        env=env,
        privileged=settings.privileged,
        pod_settings=pod_settings,
        service_account_name=settings.step_pod_service_account_name
        or settings.service_account_name,
        mount_local_stores=ctx.orchestrator.config.is_local,
        termination_grace_period_seconds=settings.pod_stop_grace_period,
        labels=labels,
        annotations={
            WORKSPACE_USER_ID_ANNOTATION_KEY: ctx.workspace_user_id,
            STEP_NAME_ANNOTATION_KEY: step_name,
        },
        run_as_user=ctx.oidc_claims.get(LINUX_UID_CLAIM_KEY),
        run_as_group=ctx.oidc_claims.get(LINUX_GID_CLAIM_KEY),
    )
    template = template_dict(manifest)
    # A failed step's last log lines become its terminated state's message (the kubelet reads
    # them), which the attempt's outcome and the step's error message quote.
    main_container_of(template, "main")["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return template
