"""README claim: a step with no memory settings starts at ZenML's default request (400Mi) as
request and limit, not at the policy's bare default (which only a pod without resources gets)."""

from __future__ import annotations

import pytest
from test_flavor_security import _template

from zenml_oom_orchestrator.policy import OOMPolicy, start_memory
from zenml_oom_orchestrator.policy.settings import DEFAULT_MEMORY, ZENML_DEFAULT_REQUEST
from zenml_oom_orchestrator.quantity import memory_bytes


def test_an_unset_step_starts_at_zenmls_default_request(monkeypatch: pytest.MonkeyPatch) -> None:
    pod = _template(monkeypatch)
    resources = pod["spec"]["containers"][0]["resources"]
    start = start_memory(OOMPolicy(), None, resources)
    assert start.request == start.limit == memory_bytes(ZENML_DEFAULT_REQUEST)
    assert start.source == "pod settings resources"
    described = OOMPolicy.model_fields["initial_memory"].description or ""
    assert f"default step-pod request {ZENML_DEFAULT_REQUEST}" in described
    assert f"{DEFAULT_MEMORY} only where a pod has no resources" in described
