"""API fault injection: rates, Retry-After, dropped connections, runtime changes, scoping."""

from __future__ import annotations

import http.client
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from zenml_oom_orchestrator.localcluster.faults import FaultConfig, Faults

from .apiserver_fixtures import Api, Kube, api, kube

__all__ = ["api", "kube"]  # fixtures

N = 400


def statuses(api: Api, path: str = "/api/v1/namespaces/default/pods", n: int = N) -> list[int]:
    conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=10)
    out = []
    for _ in range(n):
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            out.append(resp.status)
            if resp.status == 429:
                assert resp.getheader("Retry-After") == "3"
        except (ConnectionError, http.client.HTTPException):
            out.append(0)  # dropped
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=10)
    conn.close()
    return out


def within(count: int, rate: float, n: int = N) -> bool:
    # Five standard deviations of a binomial: a seeded run fails only if the code is wrong.
    sd = (n * rate * (1 - rate)) ** 0.5
    return abs(count - n * rate) <= 5 * sd + 1


def test_rates_of_each_fault(api: Api) -> None:
    api.server.faults.update(
        throttle_rate=0.2, retry_after_seconds=3, error_rate=0.1, drop_rate=0.1, seed=7
    )
    got = statuses(api)
    assert within(got.count(429), 0.2) and within(got.count(500), 0.1)
    assert within(got.count(0), 0.1) and within(got.count(200), 0.6)
    injected = api.server.faults.injected
    assert injected["429"] == got.count(429) and injected["500"] == got.count(500)
    assert injected["drop"] == got.count(0)


def test_status_bodies_and_client_view(api: Api, kube: Kube) -> None:
    # urllib3 under the client retries a 429 three times, sleeping Retry-After each time.
    api.server.faults.update(throttle_rate=1.0, retry_after_seconds=0)
    with pytest.raises(ApiException) as e:
        kube.core.list_namespaced_pod("default")
    body = json.loads(e.value.body)
    assert e.value.status == 429 and body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 0 and e.value.headers["Retry-After"] == "0"
    assert api.server.request_counts[("list", "pods")] == 4
    api.server.faults.update(throttle_rate=0.0, error_rate=1.0)
    with pytest.raises(ApiException) as e:
        kube.core.list_namespaced_pod("default")
    assert e.value.status == 500 and json.loads(e.value.body)["reason"] == "InternalError"
    api.server.faults.clear()
    assert kube.core.list_namespaced_pod("default").items == []


def test_faults_scoped_by_verb_and_resource(api: Api, kube: Kube) -> None:
    api.server.faults.update(error_rate=1.0, verbs={"create"}, resources={"pods"})
    kube.core.list_namespaced_pod("default")  # not a create
    kube.core.create_namespaced_secret("default", client.V1Secret(metadata={"name": "s"}))
    with pytest.raises(ApiException):
        kube.core.create_namespaced_pod(
            "default",
            {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        )
    assert api.raw("GET", "/version")[0] == 200  # discovery never fails


def test_config_validation_and_construction() -> None:
    faults = Faults(FaultConfig(error_rate=0.5), seed=1)
    assert faults.config.error_rate == 0.5 and faults.config.seed == 1
    with pytest.raises(TypeError):
        faults.update(nonsense=1)
    with pytest.raises(ValueError):
        faults.update(drop_rate=2)
    assert Faults().decide("get", "pods") is None
