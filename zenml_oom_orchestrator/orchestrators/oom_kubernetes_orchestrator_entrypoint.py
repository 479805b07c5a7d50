"""Entrypoint of the orchestrator pod: build a RunSpec from the snapshot, run the supervisor.

``python -m zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator_entrypoint
--snapshot_id ID [--run_id ID]``, started by ``OOMKubernetesOrchestrator.submit_pipeline``.
Like the stock entrypoint, it continues the same run when its pod is restarted: the run id is
kept on the orchestrator Job, and the supervisor adopts the attempts it finds.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
from contextlib import nullcontext
from typing import Any, cast
from uuid import UUID

from kubernetes import client as k8s_client
from kubernetes.client import ApiException
from zenml.client import Client
from zenml.enums import ExecutionMode, ExecutionStatus
from zenml.integrations.kubernetes import kube_utils
from zenml.integrations.kubernetes.constants import (
    ORCHESTRATOR_RUN_ID_ANNOTATION_KEY,
    RUN_ID_ANNOTATION_KEY,
)
from zenml.logger import get_logger
from zenml.models import PipelineRunResponse, PipelineRunUpdate, PipelineSnapshotResponse
from zenml.orchestrators.step_run_utils import StepRunRequestFactory
from zenml.orchestrators.utils import get_config_environment_vars
from zenml.pipelines.run_utils import create_placeholder_run
from zenml.utils.logging_utils import (
    LoggingContext,
    is_pipeline_logging_enabled,
    setup_logging_context,
)

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorSettings
from zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator import (
    OOMKubernetesOrchestrator,
)
from zenml_oom_orchestrator.orchestrators.retry_budget import user_retry_config
from zenml_oom_orchestrator.orchestrators.run_history import learned_starts
from zenml_oom_orchestrator.orchestrators.step_pods import (
    StepPodContext,
    step_pod_template,
    token_secret_ref,
)
from zenml_oom_orchestrator.orchestrators.store_sync import StoreSync
from zenml_oom_orchestrator.orchestrators.zenml_observer import ZenMLObserver
from zenml_oom_orchestrator.policy import AppRetryConfig
from zenml_oom_orchestrator.supervisor import Supervisor
from zenml_oom_orchestrator.supervisor.spec import FailureMode, RunSpec, StepSpec

logger = get_logger(__name__)

_FAILURE_MODES = {
    ExecutionMode.FAIL_FAST: FailureMode.FAIL_FAST,
    ExecutionMode.STOP_ON_FAILURE: FailureMode.STOP_ON_FAILURE,
    ExecutionMode.CONTINUE_ON_FAILURE: FailureMode.CONTINUE_ON_FAILURE,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--snapshot_id", type=str, required=True)
    parser.add_argument("--run_id", type=str, required=False)
    return parser.parse_args()


def _own_pod_name() -> str:
    # The pod name is the hostname in a container; a local cluster's processes share the host's
    # hostname but get HOSTNAME set to the pod name, as the kubelet does.
    return os.environ.get("HOSTNAME") or socket.gethostname()


def _pipeline_run(
    args: argparse.Namespace,
    snapshot: PipelineSnapshotResponse,
    batch_api: k8s_client.BatchV1Api,
    namespace: str,
    job_name: str,
    pod_name: str,
) -> tuple[PipelineRunResponse, str]:
    """The run and orchestrator run id: continued from the Job's annotations after a restart."""
    client = Client()
    job = batch_api.read_namespaced_job(name=job_name, namespace=namespace)
    annotations = job.metadata.annotations or {}
    run_id = annotations.get(RUN_ID_ANNOTATION_KEY)
    orchestrator_run_id = annotations.get(ORCHESTRATOR_RUN_ID_ANNOTATION_KEY)
    if run_id and orchestrator_run_id:
        logger.info("Continuing existing run `%s`.", run_id)
        return client.get_pipeline_run(UUID(run_id)), orchestrator_run_id
    orchestrator_run_id = pod_name
    if args.run_id:
        run = client.zen_store.update_run(
            run_id=UUID(args.run_id),
            run_update=PipelineRunUpdate(orchestrator_run_id=orchestrator_run_id),
        )
    else:  # a scheduled run: the CronJob started us without a placeholder
        run = create_placeholder_run(snapshot=snapshot, orchestrator_run_id=orchestrator_run_id)
    kube_utils.update_job(
        batch_api=batch_api,
        namespace=namespace,
        job_name=job_name,
        annotations={
            RUN_ID_ANNOTATION_KEY: str(run.id),
            ORCHESTRATOR_RUN_ID_ANNOTATION_KEY: orchestrator_run_id,
        },
    )
    return run, orchestrator_run_id


def _owner(core_api: k8s_client.CoreV1Api, pod_name: str, namespace: str) -> Any:
    """The orchestrator Job as every attempt's owner: deleting it removes them all, and a
    restarted orchestrator pod (same Job) adopts them."""
    try:
        refs = kube_utils.get_pod_owner_references(core_api, pod_name, namespace)
    except Exception as exc:
        logger.warning("no owner for the attempt pods: %s", exc)
        return None
    if not refs:
        return None
    refs[0].controller = False  # we only want the cascade, not to be their controller
    return refs[0]


def _watch_for_stop(client: Client, run_id: UUID, supervisor: Any, interval: float) -> None:
    """`zenml pipeline runs stop` sets the run STOPPING in the store; pass it on."""
    stopped = threading.Event()

    def loop() -> None:
        while not stopped.wait(interval):
            try:
                status = client.get_pipeline_run(run_id, hydrate=False).status
            except Exception as exc:
                logger.warning("could not read the run status: %s", exc)
                continue
            if status in (ExecutionStatus.STOPPING, ExecutionStatus.STOPPED):
                logger.info("Run is %s: stopping the steps in flight.", status.value)
                supervisor.stop()
                return

    threading.Thread(target=loop, name="zenml-stop-watch", daemon=True).start()


def _exit_on_sigterm() -> None:
    """`kubectl delete pod` sends SIGTERM; as PID 1 without a handler Python ignores it and
    keeps starting attempts for the whole grace period. Exit at once instead: the attempts
    keep running, and the Job's next orchestrator pod adopts them (as after a SIGKILL)."""

    def on_sigterm(signum: int, _frame: Any) -> None:
        logger.info("SIGTERM: the orchestrator pod exits; its Job's next pod continues the run.")
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)


def _delete_token_secret(core_api: k8s_client.CoreV1Api, namespace: str, name: str) -> None:
    try:
        kube_utils.delete_secret(core_api=core_api, namespace=namespace, secret_name=name)
    except ApiException as exc:
        if exc.status != 404:  # 404: gone already (deleted with its Job, or by hand)
            logger.error("could not delete the token Secret %s: %s", name, exc)


def main() -> None:
    _exit_on_sigterm()
    args = parse_args()
    client = Client()
    snapshot = client.get_snapshot(args.snapshot_id)
    logs_context: Any = nullcontext()
    if is_pipeline_logging_enabled(snapshot.pipeline_configuration):
        logs_context = setup_logging_context(source="orchestrator")

    with logs_context:
        stack = client.active_stack
        orchestrator = stack.orchestrator
        assert isinstance(orchestrator, OOMKubernetesOrchestrator)
        namespace = orchestrator.config.kubernetes_namespace
        settings = cast(OOMKubernetesOrchestratorSettings, orchestrator.get_settings(snapshot))
        # In-cluster first; a local cluster falls back to the kubeconfig context.
        api_client = orchestrator.get_kube_client(incluster=True)
        core_api = k8s_client.CoreV1Api(api_client)
        batch_api = k8s_client.BatchV1Api(api_client)

        pod_name = _own_pod_name()
        job_name = kube_utils.get_parent_job_name(core_api, pod_name, namespace)
        if not job_name:
            raise RuntimeError(f"the orchestrator pod {pod_name} does not belong to a Job")
        pipeline_run, orchestrator_run_id = _pipeline_run(
            args, snapshot, batch_api, namespace, job_name, pod_name
        )
        if isinstance(logs_context, LoggingContext):
            logs_context.update(pipeline_run=pipeline_run)
            logs_context.attach(pipeline_run)

        shared_env, secrets = get_config_environment_vars()
        ctx = StepPodContext(
            snapshot=snapshot,
            pipeline_run=pipeline_run,
            orchestrator=orchestrator,
            stack=stack,
            orchestrator_run_id=orchestrator_run_id,
            shared_env=shared_env,
            secrets=secrets,
            oidc_claims=client.active_user.oidc_claims,
            workspace_user_id=str(client.active_user.id),
        )
        policies = {
            name: orchestrator.step_policy(name, step)
            for name, step in snapshot.step_configurations.items()
        }
        # Once per run: what the pipeline's last runs say each step needs (run_history.py).
        learned = learned_starts(client, snapshot, pipeline_run.id, policies)
        steps = [
            StepSpec(
                name=name,
                pod_template=step_pod_template(ctx, name),
                policy=policies[name],
                upstream=list(step.spec.upstream_steps),
                app_retry=AppRetryConfig.from_zenml(user_retry_config(step)),
                resource_memory=step.config.resource_settings.memory,
                learned=learned.get(name),
            )
            for name, step in snapshot.step_configurations.items()
        ]
        failure_mode = _FAILURE_MODES[snapshot.pipeline_configuration.execution_mode]
        skip_owner = orchestrator.config.skip_owner_references
        owner = None if skip_owner else _owner(core_api, pod_name, namespace)
        run_spec = RunSpec(
            run_id=str(pipeline_run.id),
            namespace=namespace,
            steps=steps,
            max_parallelism=settings.max_parallelism,
            failure_mode=failure_mode,
            owner=owner,
            name_prefix=snapshot.pipeline_configuration.name,
            orchestrator_pod=pod_name,
            # Owned by the Job, the attempts go with it when its TTL ends: marking each one to
            # expire too would only cost writes.
            finished_ttl_seconds=settings.ttl_seconds_after_finished if owner is None else None,
        )
        observer = ZenMLObserver(
            sync=StoreSync(pipeline_run.id, client),
            factory=StepRunRequestFactory(
                snapshot=snapshot, pipeline_run=pipeline_run, stack=stack
            ),
            pipeline_run=pipeline_run,
            failure_mode=failure_mode,
            use_cache=not settings.prevent_orchestrator_pod_caching,
        )
        supervisor = Supervisor(api_client, run_spec, observer)
        _watch_for_stop(client, pipeline_run.id, supervisor, settings.interrupt_check_interval)
        supervisor.run()
        # The run is over: no attempt pod will read the token Secret again. If the supervisor
        # raised instead, the Secret stays for the Job's next orchestrator pod, which continues
        # the run; the Job owns it (set at submission), so it goes with the Job in any case.
        if token_secret_ref(ctx) is not None and snapshot.schedule is None:
            _delete_token_secret(
                core_api, namespace, orchestrator.get_token_secret_name(snapshot.id)
            )
        logger.info("Orchestrator pod finished.")


if __name__ == "__main__":
    main()
