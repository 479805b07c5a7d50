"""``OOMKubernetesOrchestrator``: ZenML's Kubernetes orchestrator, with the attempt supervisor.

What differs from the stock orchestrator, and why:

- ``get_docker_builds`` (the one hook before the snapshot is stored) validates every step's
  merged OOM policy and raises its ``retry.max_retries`` so the server accepts a step run for
  each attempt the policy allows (see ``retry_budget``); dynamic pipelines are refused there.
- ``submit_pipeline`` starts the orchestrator Job on this package's entrypoint, which runs the
  supervisor; ``ResourceSettings(memory=...)`` is the start memory, not ignored.
- with ``local_cluster=True`` (``zenml-oom local-stack``) nothing is built or uploaded and the
  pods import the code from this machine (see ``local_cluster``);
- the ZenML API token goes to the pods in a Secret by default (``pass_zenml_token_as_secret``);
  the Secret is owned by the orchestrator Job (a schedule's CronJob), so it goes with it, and
  a server without authentication (no token) gets no Secret instead of a failed submission.
- a synchronous run prints its attempt table when it ends and, if it FAILED, raises
  ``PipelineRunFailedError`` with each failed step's reason, so the script exits non-zero
  (ZenML's local orchestrator raises too; the stock Kubernetes one returns normally);
- ``fetch_status`` reads the latest attempt of each step; ``_stop_run`` asks the supervisor to
  stop (it is the only writer) instead of deleting pods behind its back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from kubernetes.client import ApiException
from zenml.client import Client
from zenml.config.base_settings import BaseSettings
from zenml.config.step_configurations import Step
from zenml.enums import ExecutionStatus
from zenml.integrations.kubernetes import kube_utils
from zenml.integrations.kubernetes.constants import (
    KUBERNETES_CRON_JOB_METADATA_KEY,
    ORCHESTRATOR_ANNOTATION_KEY,
)
from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import (
    KubernetesPodSettings,
)
from zenml.integrations.kubernetes.orchestrators import KubernetesOrchestrator
from zenml.integrations.kubernetes.orchestrators.kubernetes_orchestrator_entrypoint_configuration import (  # noqa: E501
    KubernetesOrchestratorEntrypointConfiguration,
)
from zenml.logger import get_logger
from zenml.models import PipelineSnapshotBase
from zenml.orchestrators import SubmissionResult

from zenml_oom_orchestrator.flavors.oom_kubernetes_orchestrator_flavor import (
    InvalidPolicyError,
    OOMKubernetesOrchestratorConfig,
    OOMKubernetesOrchestratorSettings,
    PipelineRunFailedError,
)
from zenml_oom_orchestrator.orchestrators import local_cluster, status_view
from zenml_oom_orchestrator.orchestrators.retry_budget import apply_retry_budget
from zenml_oom_orchestrator.policy import OOMPolicy, PolicyError, start_memory

if TYPE_CHECKING:
    from zenml.config.build_configuration import BuildConfiguration
    from zenml.models import PipelineRunResponse, PipelineSnapshotResponse
    from zenml.stack import Stack, StackValidator

logger = get_logger(__name__)

TOKEN_ENV = "ZENML_STORE_API_TOKEN"
ENTRYPOINT_MODULE = "zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator_entrypoint"


class DynamicPipelineNotSupportedError(RuntimeError):
    """Dynamic pipelines are not run by this flavor (yet)."""


def _validation_text(err: Exception) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in errors())
    return str(err)


class OOMKubernetesOrchestrator(KubernetesOrchestrator):
    """Runs each step as a sequence of attempts and retries OOM-killed ones with more memory."""

    @property
    def config(self) -> OOMKubernetesOrchestratorConfig:
        return cast(OOMKubernetesOrchestratorConfig, self._config)

    @property
    def settings_class(self) -> type[BaseSettings] | None:
        # Without this, ZenML drops the OOM fields as "invalid setting attributes".
        return OOMKubernetesOrchestratorSettings

    @property
    def validator(self) -> StackValidator | None:
        if self.config.local_cluster:
            return None  # nothing is built or pulled: no image builder or registry needed
        return super().validator

    # ---- per step --------------------------------------------------------------------------
    def step_settings(self, name: str, step: Step) -> OOMKubernetesOrchestratorSettings:
        """The step's settings merged the ZenML way (step over pipeline over component)."""
        try:
            return cast(OOMKubernetesOrchestratorSettings, self.get_settings(step))
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            text = _validation_text(err)
            prefix = "Invalid OOM policy: "
            if text.startswith(prefix):
                text = text.removeprefix(prefix)
            raise InvalidPolicyError(f"Invalid OOM policy for step `{name}`: {text}") from None

    def step_policy(self, name: str, step: Step) -> OOMPolicy:
        """The step's OOM policy; :class:`InvalidPolicyError` naming the step if it can't work."""
        settings = self.step_settings(name, step)
        policy = settings.oom_policy(step_name=name)
        pod_resources = settings.pod_settings.resources if settings.pod_settings else None
        try:
            start_memory(
                policy,
                resource_memory=step.config.resource_settings.memory,
                pod_resources=pod_resources,
            )
        except PolicyError as err:
            raise InvalidPolicyError(f"Invalid OOM policy for step `{name}`: {err}") from None
        return policy

    # ---- submission ------------------------------------------------------------------------
    def get_docker_builds(self, snapshot: PipelineSnapshotBase) -> list[BuildConfiguration]:
        """Validate the run and raise each step's retry budget, before the snapshot is stored.

        ZenML calls this more than once on the same snapshot; the budget change is idempotent.
        """
        if isinstance(snapshot, PipelineSnapshotBase):
            self._refuse_dynamic(snapshot)
            if self.config.local_cluster:
                local_cluster.skip_builds(snapshot)
            policies = {
                name: self.step_policy(name, step)
                for name, step in snapshot.step_configurations.items()
            }
            apply_retry_budget(
                snapshot,
                lambda name, _step: (
                    policies[name].max_oom_retries + policies[name].max_infrastructure_retries
                ),
            )
        return super().get_docker_builds(snapshot)

    def _refuse_dynamic(self, snapshot: Any) -> None:
        if snapshot.is_dynamic:
            raise DynamicPipelineNotSupportedError(
                f"The `{self.name}` orchestrator (flavor oom_kubernetes) runs static pipelines "
                "only: its supervisor needs the whole DAG up front. Run this dynamic pipeline "
                "with the stock `kubernetes` orchestrator, or make it static."
            )

    def submit_pipeline(
        self,
        snapshot: PipelineSnapshotResponse,
        stack: Stack,
        base_environment: dict[str, str],
        step_environments: dict[str, dict[str, str]],
        placeholder_run: PipelineRunResponse | None = None,
    ) -> SubmissionResult | None:
        """Start the orchestrator Job running this package's entrypoint (the supervisor)."""
        self._refuse_dynamic(snapshot)
        for name, step in snapshot.step_configurations.items():
            if step.config.resource_settings.memory:
                logger.info(
                    "Step `%s` starts with ResourceSettings(memory=%s) unless its OOM policy "
                    "sets initial_memory.",
                    name,
                    step.config.resource_settings.memory,
                )
        # Nothing of this machine's environment (e.g. its KUBECONFIG path) goes into the pod:
        # it talks to the API server with its in-cluster config. Unbuffered: a synchronous run
        # streams this pod's log and prints each line it reads, so a line block-buffered stdout
        # flushed half (at an 8 KiB boundary) would be shown cut off mid-word, never completed.
        environment = {"PYTHONUNBUFFERED": "1", **base_environment}
        if self.config.local_cluster:
            environment["PYTHONPATH"] = local_cluster.code_path()
        result = self._submit_orchestrator_job(
            snapshot=snapshot,
            command=["python", "-m", ENTRYPOINT_MODULE],
            args=KubernetesOrchestratorEntrypointConfiguration.get_entrypoint_arguments(
                snapshot_id=snapshot.id,
                run_id=placeholder_run.id if placeholder_run else None,
            ),
            environment=environment,
            placeholder_run=placeholder_run,
        )
        if result is None or result.wait_for_completion is None or placeholder_run is None:
            return result
        wait = result.wait_for_completion
        run_id = placeholder_run.id

        def wait_then_report() -> None:
            try:
                wait()
            finally:
                run = Client().get_pipeline_run(run_id)
                print(status_view.attempt_table_for_run(run))
            if run.status is ExecutionStatus.FAILED:
                raise PipelineRunFailedError(run.name, run.id, status_view.failed_step_reasons(run))

        return SubmissionResult(wait_for_completion=wait_then_report, metadata=result.metadata)

    # ---- the token Secret ------------------------------------------------------------------
    @contextmanager
    def _create_auth_secret_if_necessary(
        self,
        snapshot: PipelineSnapshotResponse,
        environment: dict[str, str],
        pod_settings: KubernetesPodSettings,
    ) -> Iterator[None]:
        """ZenML's: the token moves from ``environment`` into the Secret, the orchestrator pod
        gets a secretKeyRef, and the Secret is deleted if the submission fails.

        Only when there is a token: a server without authentication gives none, and ZenML's
        version would fail the submission with a KeyError.
        """
        if TOKEN_ENV not in environment:
            yield
            return
        with super()._create_auth_secret_if_necessary(snapshot, environment, pod_settings):
            yield

    def _submit_orchestrator_job(
        self,
        snapshot: PipelineSnapshotResponse,
        command: list[str],
        args: list[str],
        environment: dict[str, str],
        placeholder_run: PipelineRunResponse | None = None,
    ) -> SubmissionResult | None:
        """ZenML's, then the token Secret gets the Job (or CronJob) as its owner."""
        token_in_secret = self.config.pass_zenml_token_as_secret and TOKEN_ENV in environment
        result = super()._submit_orchestrator_job(
            snapshot=snapshot,
            command=command,
            args=args,
            environment=environment,
            placeholder_run=placeholder_run,
        )
        if token_in_secret and not self.config.skip_owner_references:
            self._own_token_secret(snapshot, placeholder_run, result)
        return result

    def _token_secret_owner(
        self,
        snapshot: PipelineSnapshotResponse,
        placeholder_run: PipelineRunResponse | None,
        result: SubmissionResult | None,
    ) -> dict[str, Any] | None:
        namespace = self.config.kubernetes_namespace
        cron_job_name = ((result.metadata if result else None) or {}).get(
            KUBERNETES_CRON_JOB_METADATA_KEY
        )
        if snapshot.schedule and cron_job_name:
            cron_job = self._k8s_batch_api.read_namespaced_cron_job(
                name=cron_job_name, namespace=namespace
            )
            kind, meta = "CronJob", cron_job.metadata
        elif placeholder_run is not None:
            selector = f"run_id={kube_utils.sanitize_label_value(str(placeholder_run.id))}"
            jobs = [
                j
                for j in self._k8s_batch_api.list_namespaced_job(
                    namespace=namespace, label_selector=selector
                ).items
                if ORCHESTRATOR_ANNOTATION_KEY in (j.metadata.annotations or {})
            ]
            if len(jobs) != 1:
                return None
            kind, meta = "Job", jobs[0].metadata
        else:
            return None
        return {"apiVersion": "batch/v1", "kind": kind, "name": meta.name, "uid": meta.uid}

    def _own_token_secret(
        self,
        snapshot: PipelineSnapshotResponse,
        placeholder_run: PipelineRunResponse | None,
        result: SubmissionResult | None,
    ) -> None:
        """Make the orchestrator Job (a schedule's CronJob) the token Secret's owner.

        Kubernetes then deletes the Secret with it: after ``ttl_seconds_after_finished``, on
        ``kubectl delete job``, or when the schedule is deleted. The orchestrator pod still
        deletes it when the run ends; the owner covers an orchestrator pod that never got there.
        """
        secret_name = self.get_token_secret_name(snapshot.id)
        try:
            owner = self._token_secret_owner(snapshot, placeholder_run, result)
            if owner is None:
                logger.warning(
                    "Token Secret `%s`: no orchestrator Job found to own it; it is deleted "
                    "when the run ends.",
                    secret_name,
                )
                return
            self._k8s_core_api.patch_namespaced_secret(
                name=secret_name,
                namespace=self.config.kubernetes_namespace,
                body={"metadata": {"ownerReferences": [owner]}},
            )
        except ApiException as err:
            logger.warning(
                "Could not make the orchestrator %s the owner of token Secret `%s` (%s %s); "
                "it is deleted when the run ends.",
                "CronJob" if snapshot.schedule else "Job",
                secret_name,
                err.status,
                err.reason,
            )

    def submit_dynamic_pipeline(
        self,
        snapshot: PipelineSnapshotResponse,
        stack: Stack,
        environment: dict[str, str],
        placeholder_run: PipelineRunResponse | None = None,
    ) -> SubmissionResult | None:
        self._refuse_dynamic(snapshot)
        return None  # unreachable: every snapshot that gets here is dynamic

    # ---- status and stop -------------------------------------------------------------------
    def fetch_status(
        self, run: PipelineRunResponse, include_steps: bool = False
    ) -> tuple[ExecutionStatus | None, dict[str, ExecutionStatus] | None]:
        """The run's status from its orchestrator Job, each step's from its latest attempt."""
        selector = f"run_id={kube_utils.sanitize_label_value(str(run.id))}"
        try:
            jobs = self._k8s_batch_api.list_namespaced_job(
                namespace=self.config.kubernetes_namespace, label_selector=selector
            ).items
            pods = (
                self._k8s_core_api.list_namespaced_pod(
                    namespace=self.config.kubernetes_namespace, label_selector=selector
                ).items
                if include_steps
                else []
            )
        except ApiException as err:
            logger.warning("Failed to read the cluster for run %s: %s", run.id, err)
            return None, None
        orchestrator_jobs = [
            j for j in jobs if ORCHESTRATOR_ANNOTATION_KEY in (j.metadata.annotations or {})
        ]
        pipeline_status = None
        if orchestrator_jobs and not run.status.is_finished:
            pipeline_status = self._map_job_status_to_execution_status(orchestrator_jobs[0])
        if not include_steps:
            return pipeline_status, None
        orchestrator_done = pipeline_status is not None
        step_statuses = {
            name: status
            for name, status in status_view.latest_attempt_statuses(pods, orchestrator_done).items()
            if name in run.steps and not run.steps[name].status.is_finished
        }
        return pipeline_status, step_statuses

    def _stop_run(self, run: PipelineRunResponse, graceful: bool = True) -> None:
        """Nothing to do here: the run is STOPPING in the store already.

        The orchestrator pod watches for that and has the supervisor, the only writer, delete
        the attempts in flight and end their steps STOPPED. Deleting pods from here would race
        with it (a vanished pod looks like a lost node, which is retried).
        """
        logger.info("Run `%s` is STOPPING; its orchestrator pod stops the steps.", run.name)
