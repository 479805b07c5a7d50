"""A real API server on a free port for tests, with the official client configured through a
generated kubeconfig. Import the fixtures into a test module: `from .apiserver_fixtures import
api, kube  # noqa: F401`."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from zenml_oom_orchestrator.localcluster import Store
from zenml_oom_orchestrator.localcluster.apiserver import ApiServer
from zenml_oom_orchestrator.localcluster.kubeconfig import write_kubeconfig


@dataclass
class Api:
    store: Store
    server: ApiServer
    kubeconfig: Path
    logs: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def raw(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, dict[str, str], Any]:
        """One plain HTTP request: (status, headers, decoded JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server.url + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, headers, raw = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            status, headers, raw = e.code, dict(e.headers), e.read()
        try:
            return status, headers, json.loads(raw)
        except ValueError:
            return status, headers, raw.decode()


@dataclass
class Kube:
    api_client: client.ApiClient
    core: client.CoreV1Api
    batch: client.BatchV1Api
    rbac: client.RbacAuthorizationV1Api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    store = Store(history_size=200)
    logs: dict[tuple[str, str, str], str] = {}

    def log_reader(ns: str, pod: str, container: str, previous: bool, tail: int | None) -> str:
        text = logs.get((ns, pod, container), "")
        if tail is not None:
            text = "".join(text.splitlines(keepends=True)[-tail:]) if tail else ""
        return text

    server = ApiServer(store, log_reader=log_reader, bookmark_interval=0.2).start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    try:
        yield Api(store, server, kubeconfig, logs)
    finally:
        server.stop()


@pytest.fixture
def kube(api: Api) -> Iterator[Kube]:
    api_client = config.new_client_from_config(str(api.kubeconfig), context="oom-local")
    try:
        yield Kube(
            api_client,
            client.CoreV1Api(api_client),
            client.BatchV1Api(api_client),
            client.RbacAuthorizationV1Api(api_client),
        )
    finally:
        api_client.close()


def pod_manifest(name: str = "p", labels: dict[str, str] | None = None, **spec: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11",
                    "command": ["python", "-c", "print(1)"],
                    "env": [{"name": "A", "value": "1"}],
                    "resources": {"limits": {"memory": "256Mi"}},
                }
            ],
            "restartPolicy": "Never",
            **spec,
        },
    }


def job_manifest(name: str = "j") -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "python:3.11"}],
                }
            },
        },
    }
