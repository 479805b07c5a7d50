"""Issue 7 §3 on a real cluster and server: the ZenML API token reaches the orchestrator pod and
the attempt pods through a Secret, never as a value in a pod or Job spec.

`zenml login --local` runs without authentication, so no token exists there; these tests start
a second ZenML server that requires a login (AuthenticatedZenServer), submit a run to the
session's cluster (either: `--cluster`) from a client process logged in to it, and read through
the API what the cluster held while and after it ran. The pods have no credential for that
server other than the token in their spec (on the local cluster the kubelet's environment is
this process's, logged in to the other server; on the real tier a pod has only its spec), so a
completed run also proves the kubelet resolved the secretKeyRef."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from zenml_oom_orchestrator.testing import stack
from zenml_oom_orchestrator.testing.zenml_server import (
    AuthenticatedZenServer,
    LocalZenServer,
    authenticated_zen_server,
)

pytestmark = [pytest.mark.zenml, pytest.mark.cluster]

DRIVER = Path(__file__).with_name("token_secret_run.py")
TOKEN_KEY = "zenml_api_token"  # ZenML's KUBERNETES_SECRET_TOKEN_KEY_NAME


@pytest.fixture(scope="module")
def auth_server(
    tmp_path_factory: pytest.TempPathFactory, zenml_server: LocalZenServer
) -> Iterator[AuthenticatedZenServer]:
    """It listens where the session's server does, an address the pods reach."""
    root = tmp_path_factory.mktemp("zenml-auth")
    with authenticated_zen_server(root, host=zenml_server.host) as server:
        server.cli("orchestrator", "flavor", "register", stack.FLAVOR_SOURCE)
        yield server


Objects = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def objects(run_cluster: tuple[Any, str]) -> Objects:
    """``objects(resource, selector=None)``: the pods, jobs or secrets of the run namespace,
    as the API serves them: its JSON, not the client's models, which refuse a podFailurePolicy
    rule without onPodConditions (as a real API server serves ZenML's rules) unless ZenML's
    kube_utils, which patches that model, was imported (here the run is in another process)."""
    api, namespace = run_cluster
    core, batch = k8s.CoreV1Api(api), k8s.BatchV1Api(api)
    listers = {
        "pods": core.list_namespaced_pod,
        "jobs": batch.list_namespaced_job,
        "secrets": core.list_namespaced_secret,
    }

    def read(resource: str, selector: str | None = None) -> list[dict[str, Any]]:
        answer = listers[resource](namespace, label_selector=selector or "", _preload_content=False)
        items: list[dict[str, Any]] = json.loads(answer.data)["items"]
        return items

    return read


@pytest.fixture
def driver_config(cluster_kind: str, request: pytest.FixtureRequest) -> list[str]:
    """The driver's orchestrator fields for the session's cluster (none: the local one's)."""
    if cluster_kind == "local":
        return []
    return ["--config", json.dumps(request.getfixturevalue("real_orchestrator_config"))]


def _run(
    server: AuthenticatedZenServer,
    objects: Objects,
    tmp_path: Path,
    name: str,
    *flags: str,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Run the driver; return its result and the last state of every token Secret that
    existed meanwhile (the orchestrator pod deletes it when the run ends)."""
    before = {s["metadata"]["name"] for s in objects("secrets")}
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(DRIVER), name, name, *flags],
            env=server.client_env(),
            stdout=stdout,
            stderr=stderr,
        )
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 600
        while proc.poll() is None:
            for secret in objects("secrets"):
                secret_name = secret["metadata"]["name"]
                if secret_name.startswith("zenml-token-") and secret_name not in before:
                    seen[secret_name] = secret
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
    lines = out.read_text().strip().splitlines()
    assert proc.returncode == 0 and lines, f"driver failed:\n{out.read_text()}\n{err.read_text()}"
    return json.loads(lines[-1]), seen


def _env(pod: dict[str, Any], name: str) -> list[dict[str, Any]]:
    containers = [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]
    return [e for c in containers for e in c.get("env") or [] if e["name"] == name]


def test_by_default_the_token_reaches_every_pod_through_a_secret_owned_by_the_job(
    auth_server: AuthenticatedZenServer, objects: Objects, driver_config: list[str], tmp_path: Path
) -> None:
    result, seen = _run(auth_server, objects, tmp_path, "token-default", *driver_config)
    print("\n" + json.dumps(result))
    assert result["status"] == "completed"
    assert result["steps"] == {"sleep": "completed"}

    secret_name = f"zenml-token-{result['snapshot_id']}"
    assert list(seen) == [secret_name]
    token = base64.b64decode(seen[secret_name]["data"][TOKEN_KEY]).decode()
    assert len(token) > 20

    selector = f"run_id={result['run_id']}"
    jobs = objects("jobs", selector)
    assert len(jobs) == 1
    job = jobs[0]["metadata"]
    assert seen[secret_name]["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": job["name"], "uid": job["uid"]}
    ]

    pods = objects("pods", selector)
    attempts = [p for p in pods if "step_name" in p["metadata"]["labels"]]
    orchestrator_pods = [p for p in pods if "step_name" not in p["metadata"]["labels"]]
    assert [p["metadata"]["labels"]["step_name"] for p in attempts] == ["sleep"]
    assert len(orchestrator_pods) == 1
    reference = {
        "name": "ZENML_STORE_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": secret_name, "key": TOKEN_KEY}},
    }
    for pod in [*orchestrator_pods, *attempts]:
        assert _env(pod, "ZENML_STORE_API_TOKEN") == [reference], pod["metadata"]["name"]
    for obj in [*pods, *jobs]:
        assert token not in json.dumps(obj), f"token in {obj['metadata']['name']}"

    # The run is over: the orchestrator pod deleted the Secret before it exited.
    assert secret_name not in {s["metadata"]["name"] for s in objects("secrets")}


def test_pass_token_as_secret_false_keeps_zenmls_plain_env_value(
    auth_server: AuthenticatedZenServer, objects: Objects, driver_config: list[str], tmp_path: Path
) -> None:
    flags = ("--pass-token-as-secret", "false", *driver_config)
    result, seen = _run(auth_server, objects, tmp_path, "token-plain", *flags)
    print("\n" + json.dumps(result))
    assert result["status"] == "completed"
    assert seen == {}
    pods = objects("pods", f"run_id={result['run_id']}")
    assert len(pods) == 2  # the orchestrator pod and the one attempt
    for pod in pods:
        [entry] = _env(pod, "ZENML_STORE_API_TOKEN")
        assert len(entry.get("value", "")) > 20, pod["metadata"]["name"]
