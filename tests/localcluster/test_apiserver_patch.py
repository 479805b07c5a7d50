"""The three patch types, as functions and as the client and raw HTTP send them."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from zenml_oom_orchestrator.localcluster.errors import Invalid, UnsupportedMediaType
from zenml_oom_orchestrator.localcluster.patch import (
    apply_patch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

from .apiserver_fixtures import Api, Kube, api, kube, pod_manifest

__all__ = ["api", "kube"]  # fixtures

POD: dict[str, Any] = {
    "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
    "spec": {
        "containers": [
            {"name": "main", "image": "i1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "s1"},
        ],
        "tolerations": [{"key": "k"}],
    },
}


def test_merge_patch_rfc7386() -> None:
    out = merge_patch(
        POD, {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"containers": []}}
    )
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["spec"]["containers"] == []  # lists are replaced
    assert POD["metadata"]["labels"] == {"a": "1", "b": "2"}  # input untouched


def test_strategic_merge_patch_merges_lists_by_name() -> None:
    out = strategic_merge_patch(
        POD,
        {
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}],
                    },
                    {"name": "new", "image": "n"},
                ],
                "tolerations": [{"key": "other"}],
            },
            "metadata": {"finalizers": ["y"], "labels": {"b": None}},
        },
    )
    main, side, new = out["spec"]["containers"]
    assert main["image"] == "i1" and main["env"] == [
        {"name": "A", "value": "9"},
        {"name": "B", "value": "2"},
    ]
    assert side["name"] == "side" and new == {"name": "new", "image": "n"}
    assert out["spec"]["tolerations"] == [{"key": "other"}]  # no merge key: replaced
    assert out["metadata"]["finalizers"] == ["x", "y"] and out["metadata"]["labels"] == {"a": "1"}


def test_strategic_merge_patch_directives() -> None:
    out = strategic_merge_patch(
        POD,
        {
            "spec": {
                "containers": [{"name": "side", "$patch": "delete"}],
                "$setElementOrder/containers": [{"name": "main"}],
            },
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]},
        },
    )
    assert [c["name"] for c in out["spec"]["containers"]] == ["main"]
    assert out["metadata"]["finalizers"] == []
    out = strategic_merge_patch(POD, {"spec": {"$patch": "replace", "containers": []}})
    assert out["spec"] == {"containers": []}
    out = strategic_merge_patch(
        POD, {"spec": {"containers": [{"name": "only", "image": "o"}, {"$patch": "replace"}]}}
    )
    assert out["spec"]["containers"] == [{"name": "only", "image": "o"}]


def test_json_patch_rfc6902() -> None:
    out = json_patch(
        POD,
        [
            {"op": "add", "path": "/metadata/labels/c~1d", "value": "x"},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "i2"},
            {"op": "remove", "path": "/spec/containers/1"},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "z", "image": "z"}},
            {"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/e"},
            {"op": "move", "from": "/metadata/labels/b", "path": "/metadata/labels/f"},
            {"op": "test", "path": "/metadata/labels/f", "value": "2"},
        ],
    )
    assert out["metadata"]["labels"] == {"a": "1", "c/d": "x", "e": "1", "f": "2"}
    assert [c["name"] for c in out["spec"]["containers"]] == ["main", "z"]
    with pytest.raises(Invalid):
        json_patch(POD, [{"op": "test", "path": "/metadata/labels/a", "value": "no"}])
    with pytest.raises(Invalid):
        json_patch(POD, [{"op": "remove", "path": "/metadata/nothing"}])
    with pytest.raises(UnsupportedMediaType):
        apply_patch(POD, {}, "application/apply-patch+yaml")


def test_patches_over_http(api: Api, kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("a", {"x": "1"}))
    # dict bodies go as strategic merge patches: containers merged by name (the image is one
    # of the few fields a pod's spec lets change)
    kube.core.patch_namespaced_pod(
        "a", "default", {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}
    )
    main = kube.core.read_namespaced_pod("a", "default").spec.containers[0]
    assert main.image == "python:3.12"
    assert [(e.name, e.value) for e in main.env] == [("A", "1")]
    # list bodies go as JSON patches
    kube.core.patch_namespaced_pod(
        "a", "default", [{"op": "add", "path": "/metadata/labels/y", "value": "2"}]
    )
    assert kube.core.read_namespaced_pod("a", "default").metadata.labels == {"x": "1", "y": "2"}
    # merge patch, as `kubectl patch --type merge` sends it
    code, _, body = api.raw(
        "PATCH",
        "/api/v1/namespaces/default/pods/a",
        {"metadata": {"labels": {"x": None}}},
        "application/merge-patch+json",
    )
    assert code == 200 and body["metadata"]["labels"] == {"y": "2"}
    code, _, body = api.raw(
        "PATCH", "/api/v1/namespaces/default/pods/a", {}, "application/apply-patch+yaml"
    )
    assert code == 415 and body["reason"] == "UnsupportedMediaType"


def test_patch_conflict_invalid_and_missing(kube: Kube) -> None:
    kube.core.create_namespaced_pod("default", pod_manifest("a"))
    with pytest.raises(ApiException) as e:
        kube.core.patch_namespaced_pod("a", "default", {"metadata": {"resourceVersion": "1"}})
    assert e.value.status == 409
    with pytest.raises(ApiException) as e:
        kube.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"k": "bad value"}}})
    assert e.value.status == 422
    with pytest.raises(ApiException) as e:
        kube.core.patch_namespaced_pod("nope", "default", {"metadata": {"labels": {"k": "v"}}})
    assert e.value.status == 404
