"""Fixtures for the flavor tests (builders live in flavor_builders.py)."""

from __future__ import annotations

import pytest
from flavor_builders import make_orchestrator

from zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator import (
    OOMKubernetesOrchestrator,
)


@pytest.fixture
def orchestrator() -> OOMKubernetesOrchestrator:
    return make_orchestrator(max_memory="8Gi", memory_multiplier=3)
