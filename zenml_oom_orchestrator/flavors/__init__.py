"""ZenML flavors of this package.

Register with ``zenml orchestrator flavor register
zenml_oom_orchestrator.flavors.OOMKubernetesOrchestratorFlavor``.
"""

from zenml_oom_orchestrator.flavors.oom_kubernetes_orchestrator_flavor import (
    FLAVOR_NAME,
    InvalidPolicyError,
    OOMKubernetesOrchestratorConfig,
    OOMKubernetesOrchestratorFlavor,
    OOMKubernetesOrchestratorSettings,
    PipelineRunFailedError,
)

__all__ = [
    "FLAVOR_NAME",
    "InvalidPolicyError",
    "OOMKubernetesOrchestratorConfig",
    "OOMKubernetesOrchestratorFlavor",
    "OOMKubernetesOrchestratorSettings",
    "PipelineRunFailedError",
]
