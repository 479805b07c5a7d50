"""ZenML stacks on the local cluster for tests: this flavor's (the product's own
``register_local_stack``, as ``zenml-oom local-stack`` registers it), or ZenML's stock one.

The stock orchestrator knows nothing of the local cluster, so its pipelines run with
``DockerSettings(skip_build=True, ...)`` (:func:`no_build_docker_settings`) on a stack with a
placeholder registry and image builder (:func:`register_stack`): the local cluster ignores
images and runs ``python`` from this interpreter, so step code is imported from the installed
packages and nothing is uploaded or downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zenml.config import DockerSettings
from zenml.enums import StackComponentType

from zenml_oom_orchestrator.local_stack import (
    CONTEXT,
    FLAVOR_SOURCE,
    NAMESPACE,
    register_local_stack,
    use_kubeconfig,
)
from zenml_oom_orchestrator.orchestrators import local_cluster

__all__ = [
    "CONTEXT",
    "FLAVOR_SOURCE",
    "NAMESPACE",
    "no_build_docker_settings",
    "register_local_stack",
    "register_stack",
    "stock_orchestrator_pod_settings",
    "use_kubeconfig",
]

# Stock Kubernetes orchestrator fields that make it work on a cluster on this machine (the
# oom_kubernetes stack of `register_local_stack` needs no more than its `local_cluster`).
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "kubernetes_context": CONTEXT,
    "kubernetes_namespace": NAMESPACE,
    "local": True,
    "skip_local_validations": True,
}


def no_build_docker_settings(image: str = local_cluster.LOCAL_IMAGE) -> DockerSettings:
    """Docker settings that skip the build and any code upload (see the module doc)."""
    return local_cluster.no_build_docker_settings(image=image)


def register_stack(
    stack_name: str, orchestrator_name: str, flavor: str, **orchestrator_config: Any
) -> None:
    """Register an orchestrator and a stack around it (default artifact store, a placeholder
    registry and image builder that ZenML's Kubernetes validator asks for)."""
    from zenml.client import Client

    client = Client()
    config = {**LOCAL_CLUSTER_CONFIG, **orchestrator_config}
    client.create_stack_component(
        orchestrator_name, flavor, StackComponentType.ORCHESTRATOR, configuration=config
    )
    for kind, name, flavor_name, conf in (
        (
            StackComponentType.CONTAINER_REGISTRY,
            "local-registry",
            "default",
            {"uri": "localhost:5000"},
        ),
        (StackComponentType.IMAGE_BUILDER, "local-builder", "local", {}),
    ):
        try:
            client.get_stack_component(kind, name)
        except KeyError:
            client.create_stack_component(name, flavor_name, kind, configuration=conf)
    client.create_stack(
        stack_name,
        components={
            StackComponentType.ORCHESTRATOR: orchestrator_name,
            StackComponentType.ARTIFACT_STORE: "default",
            StackComponentType.CONTAINER_REGISTRY: "local-registry",
            StackComponentType.IMAGE_BUILDER: "local-builder",
        },
    )


def stock_orchestrator_pod_settings(kubeconfig: Path) -> dict[str, Any]:
    """What ZenML's stock orchestrator pod needs on the local cluster, which this flavor's
    orchestrator does by itself: the kubeconfig (no in-cluster config here) and its pod name
    as hostname (see ``hostname_shim/sitecustomize.py``)."""
    shim = Path(__file__).with_name("hostname_shim")
    return {
        "env": [
            {"name": "KUBECONFIG", "value": str(kubeconfig)},
            {"name": "PYTHONPATH", "value": str(shim)},
        ]
    }
