"""The flavor class: name, classes that extend ZenML's Kubernetes ones, ZenML's own checks."""

from __future__ import annotations

from zenml.enums import StackComponentType
from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import (
    KubernetesOrchestratorConfig,
    KubernetesOrchestratorSettings,
)
from zenml.integrations.kubernetes.orchestrators import KubernetesOrchestrator
from zenml.stack.flavor import validate_flavor_source

from zenml_oom_orchestrator.flavors import (
    OOMKubernetesOrchestratorConfig,
    OOMKubernetesOrchestratorFlavor,
    OOMKubernetesOrchestratorSettings,
)
from zenml_oom_orchestrator.policy import OOMPolicy

SOURCE = "zenml_oom_orchestrator.flavors.OOMKubernetesOrchestratorFlavor"


def test_zenml_accepts_the_flavor_source_it_is_registered_with() -> None:
    flavor_class, flavor = validate_flavor_source(SOURCE, StackComponentType.ORCHESTRATOR)
    assert flavor_class is OOMKubernetesOrchestratorFlavor
    assert flavor.name == "oom_kubernetes"
    assert flavor.type is StackComponentType.ORCHESTRATOR


def test_classes_extend_zenmls_kubernetes_ones() -> None:
    flavor = OOMKubernetesOrchestratorFlavor()
    assert issubclass(flavor.config_class, KubernetesOrchestratorConfig)
    assert issubclass(OOMKubernetesOrchestratorSettings, KubernetesOrchestratorSettings)
    assert issubclass(flavor.implementation_class, KubernetesOrchestrator)
    stock = set(KubernetesOrchestratorConfig.model_fields)
    assert stock <= set(OOMKubernetesOrchestratorConfig.model_fields)


def test_docs_urls_are_ours() -> None:
    flavor = OOMKubernetesOrchestratorFlavor()
    assert flavor.docs_url and "docs.zenml.io" not in flavor.docs_url
    assert flavor.sdk_docs_url and "sdkdocs.zenml.io" not in flavor.sdk_docs_url


def test_every_policy_field_is_a_described_setting_and_config_field() -> None:
    for name in OOMPolicy.model_fields:
        for model in (OOMKubernetesOrchestratorSettings, OOMKubernetesOrchestratorConfig):
            field = model.model_fields[name]
            assert field.description and len(field.description) > 40, (model, name)
            assert field.default is None  # unset, so ZenML's merge keeps outer levels


def test_orchestrator_declares_its_own_settings_class(orchestrator: object) -> None:
    # Otherwise ZenML drops the OOM fields as "invalid setting attributes".
    assert orchestrator.settings_class is OOMKubernetesOrchestratorSettings
