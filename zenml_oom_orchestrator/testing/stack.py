"""A ZenML stack on the local cluster: this flavor's orchestrator, or ZenML's stock one.

No container registry or image builder exists here, so pipelines run with
``DockerSettings(skip_build=True, ...)`` (:func:`no_build_docker_settings`): the local cluster
ignores images and runs ``python`` from this interpreter, so step code is imported from the
installed packages and nothing is uploaded or downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zenml.config import DockerSettings
from zenml.enums import StackComponentType

FLAVOR_SOURCE = "zenml_oom_orchestrator.flavors.OOMKubernetesOrchestratorFlavor"
CONTEXT = "oom-local"  # the local cluster's kubeconfig context
NAMESPACE = "zenml"
# Stock Kubernetes orchestrator fields that make it work on a cluster on this machine.
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "kubernetes_context": CONTEXT,
    "kubernetes_namespace": NAMESPACE,
    "local": True,
    "skip_local_validations": True,
}


def use_kubeconfig(path: Path) -> None:
    """Make this process (and the processes it starts) use ``path`` as the kubeconfig.

    The kubernetes client reads ``KUBECONFIG`` once, when it is imported, so its default is
    updated too.
    """
    import kubernetes.config.kube_config as kube_config

    os.environ["KUBECONFIG"] = str(path)
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)


def no_build_docker_settings(image: str = "local/zenml-oom:dev") -> DockerSettings:
    """Docker settings that skip the build and any code upload (see the module doc)."""
    return DockerSettings(
        skip_build=True,
        parent_image=image,
        allow_download_from_artifact_store=False,
        allow_download_from_code_repository=False,
        allow_including_files_in_images=False,
    )


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
