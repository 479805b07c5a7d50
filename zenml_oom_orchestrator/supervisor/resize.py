"""The two API calls in-place growth needs: the server's version (once per run) and a
``pods/resize`` patch. The kubernetes client range this project pins (<26) predates the
``resize`` subresource (added to the generated client with Kubernetes 1.33, client 33), so
the patch goes through the client's own ``call_api`` on the subresource's path, with the
same auth, timeouts and tenacity retries as every other call (ClusterApi._call)."""

from __future__ import annotations

import json
import re
from typing import Any

from kubernetes import client as k8s

from zenml_oom_orchestrator.quantity import format_memory
from zenml_oom_orchestrator.supervisor.cluster import ClusterApi

__all__ = ["RESIZE_SINCE", "ResizeApi", "resize_memory", "server_version"]

RESIZE_SINCE = (1, 33)  # pods/resize: beta and on by default in 1.33, GA in 1.35


def server_version(cluster: ClusterApi) -> tuple[int, int] | None:
    """(major, minor) of the API server; None when it does not say (e.g. "1", "35+")."""
    info = cluster._call("get version", k8s.VersionApi(cluster.core.api_client).get_code)
    major = re.match(r"\d+", str(info.major or ""))
    minor = re.match(r"\d+", str(info.minor or ""))
    if not major or not minor:
        return None
    return int(major.group()), int(minor.group())


def resize_memory(
    cluster: ClusterApi, pod: str, container: str, request: int, limit: int
) -> dict[str, Any]:
    """Set `container`'s memory request and limit through ``pods/resize``; the pod as the
    server returns it. Raises ApiException (404: pod gone or no such subresource)."""
    resources = {"requests": {"memory": format_memory(request)}}
    resources["limits"] = {"memory": format_memory(limit)}
    body = {"spec": {"containers": [{"name": container, "resources": resources}]}}

    def patch() -> Any:
        resp = cluster.core.api_client.call_api(
            "/api/v1/namespaces/{namespace}/pods/{name}/resize",
            "PATCH",
            path_params={"namespace": cluster.namespace, "name": pod},
            header_params={
                "Content-Type": "application/strategic-merge-patch+json",
                "Accept": "application/json",
            },
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=cluster.retry.request_timeout,
        )
        return json.loads(resp.data) if resp.data else {}

    result: dict[str, Any] = cluster._call("resize pod", patch)
    return result


class ResizeApi:
    """The calls above on one cluster (the grower's seam: unit tests give a fake server)."""

    def __init__(self, cluster: ClusterApi) -> None:
        self.cluster = cluster

    def version(self) -> tuple[int, int] | None:
        return server_version(self.cluster)

    def resize(self, pod: str, container: str, request: int, limit: int) -> dict[str, Any]:
        return resize_memory(self.cluster, pod, container, request, limit)
