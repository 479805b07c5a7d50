"""The `pods/resize` subresource over HTTP, answered as kube-apiserver 1.35.4 answered the same
requests on the real tier (status codes, Status reasons and messages, generation)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .apiserver_fixtures import Api, api, pod_manifest

__all__ = ["api"]  # fixture

SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATH = "/api/v1/namespaces/default/pods/p/resize"


def memory(value: str, request: str | None = None, cpu: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"limits": {"memory": value}, "requests": {"memory": request or value}}
    if cpu:
        res["limits"]["cpu"] = res["requests"]["cpu"] = cpu
    return {"spec": {"containers": [{"name": "main", "resources": res}]}}


def make(api: Api, resources: dict[str, Any] | None = None) -> dict[str, Any]:
    body = pod_manifest()
    if resources is not None:
        body["spec"]["containers"][0]["resources"] = resources
    return api.store.create("pods", body, namespace="default")


def test_patch_changes_resources_and_bumps_generation(api: Api) -> None:
    make(api)
    code, _, pod = api.raw("PATCH", PATH, memory("1Gi"), SMP)
    assert code == 200, pod
    assert (
        pod["spec"]["containers"][0]["resources"]
        == memory("1Gi")["spec"]["containers"][0]["resources"]
    )
    assert pod["metadata"]["generation"] == 2
    code, _, got = api.raw("GET", PATH)
    assert (code, got["kind"], got["metadata"]["generation"]) == (200, "Pod", 2)
    assert api.server.request_counts[("patch", "pods/resize")] == 1


def test_other_fields_are_dropped_silently(api: Api) -> None:
    """An image or label change through resize: 200, nothing changes, no new generation."""
    make(api)
    body = {
        "metadata": {"labels": {"a": "b"}},
        "spec": {"containers": [{"name": "main", "image": "x:2"}]},
    }
    code, _, pod = api.raw("PATCH", PATH, body, SMP)
    assert code == 200
    assert pod["spec"]["containers"][0]["image"] == "python:3.11"
    assert "a" not in (pod["metadata"].get("labels") or {})
    assert pod["metadata"]["generation"] == 1


@pytest.mark.parametrize(
    ("resources", "patch", "ctype", "message"),
    [
        (
            None,
            [{"op": "remove", "path": "/spec/containers/0/resources/limits"}],
            JSON_PATCH,
            'Pod "p" is invalid: spec.containers[0].resources.limits: Forbidden: resource '
            "limits cannot be removed",
        ),
        (
            # JSON merge patch replaces the containers list: the requests go (and are
            # defaulted from the limits), the limits go: refused.
            {"limits": {"memory": "512Mi"}, "requests": {"memory": "256Mi"}},
            {
                "spec": {
                    "containers": [{"name": "main", "resources": {"requests": {"memory": "512Mi"}}}]
                }
            },
            MERGE,
            'Pod "p" is invalid: spec.containers[0].resources.limits: Forbidden: resource '
            "limits cannot be removed",
        ),
        (
            {
                "limits": {"memory": "256Mi", "cpu": "100m"},
                "requests": {"memory": "256Mi", "cpu": "100m"},
            },
            {
                "spec": {
                    "containers": [{"name": "main", "resources": {"limits": {"memory": "1Gi"}}}]
                }
            },
            SMP,
            'Pod "p" is invalid: spec: Invalid value: "Guaranteed": Pod QOS Class may not '
            "change as a result of resizing",
        ),
        (
            {},
            memory("1Gi"),
            SMP,
            'Pod "p" is invalid: spec: Invalid value: "BestEffort": Pod QOS Class may not '
            "change as a result of resizing",
        ),
        (
            None,
            memory("1Gi", request="2Gi"),
            SMP,
            'Pod "p" is invalid: spec.containers[0].resources.requests: Invalid value: "2Gi": '
            "must be less than or equal to memory limit of 1Gi",
        ),
        (
            None,
            {
                "spec": {
                    "containers": [{"name": "nope", "resources": {"limits": {"memory": "1Gi"}}}]
                }
            },
            SMP,
            "spec.containers: Forbidden: containers may not be added or removed on resize",
        ),
        (
            None,
            {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "resizePolicy": [
                                {"resourceName": "memory", "restartPolicy": "RestartContainer"}
                            ],
                        }
                    ]
                }
            },
            SMP,
            'Pod "p" is invalid: [spec.containers[0].resizePolicy: Invalid value: '
            "\"RestartContainer\": must be 'NotRequired' when `restartPolicy` is 'Never', spec: "
            "Forbidden: only cpu and memory resources are mutable]",
        ),
        (
            None,
            {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "resizePolicy": [
                                {"resourceName": "memory", "restartPolicy": "NotRequired"}
                            ],
                        }
                    ]
                }
            },
            SMP,
            'Pod "p" is invalid: spec: Forbidden: only cpu and memory resources are mutable',
        ),
        (
            None,
            {
                "spec": {
                    "containers": [
                        {"name": "main", "resources": {"limits": {"ephemeral-storage": "1Gi"}}}
                    ]
                }
            },
            SMP,
            'Pod "p" is invalid: spec: Forbidden: only cpu and memory resources are mutable',
        ),
    ],
    ids=[
        "limits-removed",
        "merge-patch-drops-limits",
        "qos-guaranteed",
        "qos-besteffort",
        "request-over-limit",
        "container-added",
        "resize-policy",
        "resize-policy-not-required",
        "ephemeral-storage",
    ],
)
def test_refusals_are_the_real_servers(
    api: Api, resources: dict[str, Any] | None, patch: Any, ctype: str, message: str
) -> None:
    make(api, resources)
    code, _, status = api.raw("PATCH", PATH, patch, ctype)
    assert (code, status["reason"]) == (422, "Invalid"), status
    assert message in status["message"]
    assert api.store.get("pods", "default", "p")["metadata"]["generation"] == 1


def test_merge_and_json_patch_and_put(api: Api) -> None:
    make(api, {"limits": {"memory": "512Mi"}, "requests": {"memory": "256Mi"}})
    # requests removed: defaulted from the limits again, not refused (as the real server)
    ops = [{"op": "remove", "path": "/spec/containers/0/resources/requests"}]
    code, _, pod = api.raw("PATCH", PATH, ops, JSON_PATCH)
    assert code == 200 and pod["spec"]["containers"][0]["resources"]["requests"] == {
        "memory": "512Mi"
    }
    code, _, pod = api.raw(
        "PATCH",
        PATH,
        {"spec": {"containers": [{"name": "main", "resources": {"limits": {"memory": "600Mi"}}}]}},
        MERGE,
    )
    # the list replaced: requests defaulted from the new limit, as on the real server
    assert code == 200 and pod["spec"]["containers"][0]["resources"] == {
        "limits": {"memory": "600Mi"},
        "requests": {"memory": "600Mi"},
    }
    ops = [
        {"op": "replace", "path": "/spec/containers/0/resources/limits/memory", "value": "700Mi"},
        {"op": "replace", "path": "/spec/containers/0/resources/requests/memory", "value": "700Mi"},
    ]
    code, _, pod = api.raw("PATCH", PATH, ops, JSON_PATCH)
    assert code == 200 and pod["metadata"]["generation"] == 4
    pod["spec"]["containers"][0]["resources"] = memory("800Mi")["spec"]["containers"][0][
        "resources"
    ]
    code, _, put = api.raw("PUT", PATH, pod)
    assert code == 200 and put["metadata"]["generation"] == 5
    code, _, status = api.raw("PUT", PATH, pod)  # pod carries the old resourceVersion
    assert (code, status["reason"]) == (409, "Conflict")
    code, _, status = api.raw(
        "PATCH", "/api/v1/namespaces/default/pods/gone/resize", memory("1Gi"), SMP
    )
    assert (code, status["reason"]) == (404, "NotFound")


def test_discovery_lists_pods_resize_and_kubectl_uses_it(api: Api, tmp_path: Path) -> None:
    code, _, doc = api.raw("GET", "/api/v1")
    entry = next(r for r in doc["resources"] if r["name"] == "pods/resize")
    assert (entry["kind"], entry["verbs"]) == ("Pod", ["get", "patch", "update"])
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return  # the HTTP side above is the subresource; kubectl is checked where it exists
    make(api)
    out = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(api.kubeconfig),
            "patch",
            "pod",
            "p",
            "--subresource",
            "resize",
            "-p",
            '{"spec":{"containers":[{"name":"main","resources":'
            '{"limits":{"memory":"1Gi"},"requests":{"memory":"1Gi"}}}]}}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    pod = api.store.get("pods", "default", "p")
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"


def test_the_pod_itself_refuses_a_resources_change(api: Api) -> None:
    """As kube-apiserver 1.35: resources change only through pods/resize."""
    make(api)
    code, _, status = api.raw("PATCH", "/api/v1/namespaces/default/pods/p", memory("1Gi"), SMP)
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"].startswith(
        'Pod "p" is invalid: spec: Forbidden: pod updates may not change fields other than '
        "`spec.containers[*].image`,"
    )
    code, _, pod = api.raw("GET", "/api/v1/namespaces/default/pods/p")
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"memory": "256Mi"}
