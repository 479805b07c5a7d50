"""ClusterApi's retry rules, without a server: the calls are fakes that fail on cue."""

import time

import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from zenml_oom_orchestrator.supervisor.cluster import (
    ApiRetry,
    ClusterApi,
    is_retryable,
    retry_after_seconds,
)


def api_exc(status: int, headers: dict[str, str] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.headers = headers or {}
    return exc


def test_what_is_retried() -> None:
    assert is_retryable(api_exc(429)) and is_retryable(api_exc(503)) and is_retryable(api_exc(500))
    assert is_retryable(urllib3.exceptions.ProtocolError("dropped"))
    assert is_retryable(ConnectionResetError())
    assert not is_retryable(api_exc(404)) and not is_retryable(api_exc(409))
    assert not is_retryable(api_exc(422)) and not is_retryable(ValueError())


def test_retry_after_is_read() -> None:
    assert retry_after_seconds(api_exc(429, {"Retry-After": "2"})) == 2.0
    assert retry_after_seconds(api_exc(429, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(api_exc(500, {"Retry-After": "2"})) is None


def make(retry: ApiRetry) -> ClusterApi:
    return ClusterApi(k8s.ApiClient(), "default", retry)


def test_honours_retry_after_and_succeeds() -> None:
    api = make(ApiRetry(max_attempts=5, initial_wait=0.01, max_wait=1.0))
    failures = [api_exc(429, {"Retry-After": "0.3"}), api_exc(500)]

    def call() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    t0 = time.monotonic()
    assert api._call("test", call) == "ok"
    assert time.monotonic() - t0 >= 0.3
    assert api.calls == 3


def test_attempts_are_bounded() -> None:
    api = make(ApiRetry(max_attempts=3, initial_wait=0.01, max_wait=0.02))

    def call() -> None:
        raise api_exc(503)

    with pytest.raises(ApiException):
        api._call("test", call)
    assert api.calls == 3


def test_retry_after_is_capped() -> None:
    api = make(ApiRetry(max_attempts=2, max_wait=0.05))
    t0 = time.monotonic()
    with pytest.raises(ApiException):
        api._call("test", lambda: (_ for _ in ()).throw(api_exc(429, {"Retry-After": "3600"})))
    assert time.monotonic() - t0 < 1


def test_client_errors_are_not_retried() -> None:
    api = make(ApiRetry())
    with pytest.raises(ApiException):
        api._call("test", lambda: (_ for _ in ()).throw(api_exc(403)))
    assert api.calls == 1


def test_nodes_forbidden_warns_once_and_skips_the_check(caplog: pytest.LogCaptureFixture) -> None:
    api = make(ApiRetry())
    calls = []

    def forbidden(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise api_exc(403)

    api.core.list_node = forbidden  # type: ignore[method-assign]
    with caplog.at_level("WARNING"):
        assert api.node_memory() is None
        assert api.node_memory() is None
    assert len(calls) == 1  # not asked again
    warnings = [r for r in caplog.records if "cannot read Nodes" in r.getMessage()]
    assert len(warnings) == 1
