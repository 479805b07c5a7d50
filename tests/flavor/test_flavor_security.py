"""Issue 7 §3: the ZenML API token must travel in a Secret, never as a plain value in a pod
spec (by default; `pass_zenml_token_as_secret=False` keeps ZenML's plain env value). Step pod
templates are built by the flavor's own `step_pod_template`, with the ZenML runtime pieces it
needs stubbed (image lookup and runtime environment, which need a stored build and a stack).
The same on a real cluster and server, for the orchestrator pod and the attempt pods:
integration/zenml/test_token_secret.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
from flavor_builders import make_orchestrator, step_template
from zenml.integrations.kubernetes.constants import KUBERNETES_CRON_JOB_METADATA_KEY
from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import (
    KubernetesPodSettings,
)
from zenml.orchestrators import SubmissionResult
from zenml.utils import source_utils

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorConfig
from zenml_oom_orchestrator.orchestrators import step_pods
from zenml_oom_orchestrator.orchestrators.local_cluster import (
    LocalClusterStepEntrypointConfiguration,
)
from zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator import (
    OOMKubernetesOrchestrator,
)

TOKEN = "zenml-secret-token-value"
SNAPSHOT_ID = uuid4()


def _template(
    monkeypatch: pytest.MonkeyPatch, secrets: dict[str, str] | None = None, **config: Any
) -> dict[str, Any]:
    secrets = {"ZENML_STORE_API_TOKEN": TOKEN} if secrets is None else secrets
    return step_template(monkeypatch, secrets, SNAPSHOT_ID, **config)


def _plain_token_values(pod: dict[str, Any]) -> list[str]:
    containers = [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]
    return [
        f"{c['name']}.env.{e['name']}"
        for c in containers
        for e in c.get("env") or []
        if (e.get("name") == "ZENML_STORE_API_TOKEN" and "value" in e) or e.get("value") == TOKEN
    ]


def _token_refs(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["valueFrom"]["secretKeyRef"]
        for e in pod["spec"]["containers"][0]["env"]
        if e["name"] == "ZENML_STORE_API_TOKEN" and "valueFrom" in e
    ]


def test_the_flavor_passes_the_token_in_a_secret_by_default() -> None:
    field = OOMKubernetesOrchestratorConfig.model_fields["pass_zenml_token_as_secret"]
    assert field.default is True
    assert field.description and "Secret" in field.description
    assert make_orchestrator().config.pass_zenml_token_as_secret is True


def test_by_default_the_token_is_not_in_the_step_pod_spec_but_referenced_from_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = _template(monkeypatch)
    assert _plain_token_values(pod) == []
    assert TOKEN not in json.dumps(pod)
    # The Secret ZenML's submission code creates (and the e2e test reads back).
    assert _token_refs(pod) == [{"name": f"zenml-token-{SNAPSHOT_ID}", "key": "zenml_api_token"}]


def test_pass_token_as_secret_false_keeps_zenmls_plain_env_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = _template(monkeypatch, pass_zenml_token_as_secret=False)
    assert _plain_token_values(pod) == ["main.env.ZENML_STORE_API_TOKEN"]
    assert _token_refs(pod) == []


def test_without_a_token_no_secret_is_referenced(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server without authentication (the local one) gives no token and no Secret is made:
    # a reference to it would keep every attempt pod in CreateContainerConfigError.
    pod = _template(monkeypatch, secrets={})
    env_names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
    assert "ZENML_STORE_API_TOKEN" not in env_names
    assert "ZENML_STORE_URL" in env_names


def test_submission_without_a_token_makes_no_secret_and_no_reference() -> None:
    # ZenML's own context manager, as our orchestrator wraps it; no cluster call without a token
    # (the orchestrator's kube client is never built here: there is no kubeconfig context).
    orchestrator = make_orchestrator()
    environment = {"ZENML_STORE_URL": "http://127.0.0.1:8237"}
    pod_settings = KubernetesPodSettings()
    snapshot = SimpleNamespace(id=SNAPSHOT_ID)
    with orchestrator._create_auth_secret_if_necessary(
        snapshot,  # type: ignore[arg-type]
        environment,
        pod_settings,
    ):
        pass
    assert environment == {"ZENML_STORE_URL": "http://127.0.0.1:8237"}
    assert pod_settings.env == []


def test_a_schedules_token_secret_is_owned_by_its_cronjob(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-ins for the Kubernetes API (named as such): the local cluster has no CronJob API,
    # so the scheduled branch cannot run there. The Job branch runs for real in
    # integration/zenml/test_token_secret.py.
    patches: list[dict[str, Any]] = []
    batch = SimpleNamespace(
        read_namespaced_cron_job=lambda name, namespace: SimpleNamespace(
            metadata=SimpleNamespace(name=name, uid="uid-of-" + name)
        )
    )
    core = SimpleNamespace(patch_namespaced_secret=lambda **kwargs: patches.append(kwargs))
    monkeypatch.setattr(OOMKubernetesOrchestrator, "_k8s_batch_api", property(lambda _: batch))
    monkeypatch.setattr(OOMKubernetesOrchestrator, "_k8s_core_api", property(lambda _: core))
    orchestrator = make_orchestrator(kubernetes_namespace="ns-1")
    snapshot = SimpleNamespace(
        id=SNAPSHOT_ID, schedule=SimpleNamespace(cron_expression="* * * * *")
    )
    orchestrator._own_token_secret(
        snapshot,  # type: ignore[arg-type]
        None,
        SubmissionResult(metadata={KUBERNETES_CRON_JOB_METADATA_KEY: "cron-1"}),
    )
    assert patches == [
        {
            "name": f"zenml-token-{SNAPSHOT_ID}",
            "namespace": "ns-1",
            "body": {
                "metadata": {
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "CronJob",
                            "name": "cron-1",
                            "uid": "uid-of-cron-1",
                        }
                    ]
                }
            },
        }
    ]


def test_a_local_cluster_step_pod_runs_the_entrypoint_that_stays_in_its_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As in the orchestrator pod, whose source root is its main module's directory: ZenML would
    # name the class `local_cluster.LocalCluster...`, which the step pod cannot import.
    monkeypatch.setattr(source_utils, "_CUSTOM_SOURCE_ROOT", str(Path(step_pods.__file__).parent))
    local = _template(monkeypatch, local_cluster=True)["spec"]["containers"][0]
    remote = _template(monkeypatch)["spec"]["containers"][0]
    ours = (
        "zenml_oom_orchestrator.orchestrators.local_cluster.LocalClusterStepEntrypointConfiguration"
    )
    zenmls = "zenml.entrypoints.step_entrypoint_configuration.StepEntrypointConfiguration"
    assert ours in local["args"] and zenmls not in local["args"]
    assert zenmls in remote["args"] and ours not in remote["args"]
    assert [ours if a == zenmls else a for a in remote["args"]] == local["args"]
    assert source_utils.load(ours) is LocalClusterStepEntrypointConfiguration


def test_the_local_cluster_entrypoint_never_makes_or_enters_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ZenML's own makes `/app` on the host as root and fails as a normal user (issue 16)."""
    touched: list[str] = []
    monkeypatch.setattr(os, "makedirs", lambda path, *a, **k: touched.append(str(path)))
    monkeypatch.setattr(os, "chdir", lambda path: touched.append(str(path)))
    cls = LocalClusterStepEntrypointConfiguration
    monkeypatch.setattr(cls, "should_download_code", property(lambda self: False))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(os, "getcwd", lambda: str(tmp_path))
    cls.prepare_code_environment(object.__new__(cls))
    assert touched == []
    assert sys.path[0] == str(tmp_path)


def test_a_step_pods_failure_leaves_its_logs_tail_as_the_termination_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (main,) = _template(monkeypatch)["spec"]["containers"]
    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"
