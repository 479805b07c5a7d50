"""`zenml-oom local-stack`: a ready ZenML stack on the local cluster (`zenml-oom cluster up`).

The local cluster runs pods as processes on this machine, with this Python, and ignores
images. So the stack needs no image builder or container registry: its orchestrator is
registered with ``local_cluster=True``, which skips the image build and code upload and puts
the pipeline's source root on the pods' ``PYTHONPATH`` (see ``orchestrators/local_cluster.py``),
and its artifact store is a local folder, which the pods (processes here) read and write
directly. A user's own pipeline then needs no extra settings.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click
import yaml

FLAVOR_SOURCE = "zenml_oom_orchestrator.flavors.OOMKubernetesOrchestratorFlavor"
CONTEXT = "oom-local"  # the context `zenml-oom cluster up` writes into its kubeconfig
NAMESPACE = "zenml"
STACK = "oom-local"
# Stock Kubernetes orchestrator fields for a cluster on this machine, plus ours.
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "kubernetes_context": CONTEXT,
    "kubernetes_namespace": NAMESPACE,
    "local": True,
    "skip_local_validations": True,
    "local_cluster": True,
}


def use_kubeconfig(path: Path) -> None:
    """Make this process (and the processes it starts) use ``path`` as the kubeconfig.

    The kubernetes client reads ``KUBECONFIG`` once, when it is imported, so its default is
    updated too.
    """
    import kubernetes.config.kube_config as kube_config

    os.environ["KUBECONFIG"] = str(path)
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)


def _wait_for(path: Path, timeout: float) -> None:
    """`cluster up` writes the kubeconfig once the cluster is ready: give it a moment."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() >= deadline:
            raise click.ClickException(
                f"{path} does not exist: start the local cluster first with "
                f"`zenml-oom cluster up --kubeconfig {path}` (it writes the file once ready)."
            )
        time.sleep(0.2)


def check_cluster(kubeconfig: Path) -> str:
    """The local cluster's API server URL; ClickException unless it has the `oom-local`
    context and answers."""
    from kubernetes import client, config

    try:
        contexts = [c.get("name") for c in yaml.safe_load(kubeconfig.read_text())["contexts"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        contexts = []
    if CONTEXT not in contexts:
        raise click.ClickException(
            f"{kubeconfig} has no `{CONTEXT}` context: it is not a local-cluster kubeconfig. "
            f"Pass the file given to `zenml-oom cluster up --kubeconfig`."
        )
    api = config.new_client_from_config(config_file=str(kubeconfig), context=CONTEXT)
    try:
        client.CoreV1Api(api).list_node(_request_timeout=5)
    except Exception as err:  # noqa: BLE001 - any failure means the same to the user
        raise click.ClickException(
            f"the local cluster in {kubeconfig} does not answer at {api.configuration.host} "
            f"({type(err).__name__}). Is `zenml-oom cluster up --kubeconfig {kubeconfig}` "
            "still running?"
        ) from None
    _create_namespace(client.CoreV1Api(api))
    return str(api.configuration.host)


def _create_namespace(core: Any) -> None:
    from kubernetes.client import ApiException

    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as err:
        if err.status != 409:  # 409: it exists already
            raise


def _upsert_component(kind: Any, name: str, flavor: str, config: dict[str, Any]) -> None:
    from zenml.client import Client

    client = Client()
    try:
        existing = client.get_stack_component(kind, name)
    except KeyError:
        client.create_stack_component(name, flavor, kind, configuration=config)
        return
    if existing.flavor_name != flavor:
        raise click.ClickException(
            f"a {kind.value} named `{name}` exists with flavor {existing.flavor_name}, not "
            f"{flavor}: choose another name with --name."
        )
    client.update_stack_component(name, kind, configuration=config)


def register_local_stack(name: str = STACK, **orchestrator_config: Any) -> str:
    """Register (or update) the flavor, an ``oom_kubernetes`` orchestrator and a local
    artifact store named ``name``, and a stack of the two named ``name``; return the artifact
    store's path. Idempotent."""
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.enums import StackComponentType

    client = Client()
    try:
        client.get_flavor_by_name_and_type("oom_kubernetes", StackComponentType.ORCHESTRATOR)
    except KeyError:
        client.create_flavor(FLAVOR_SOURCE, StackComponentType.ORCHESTRATOR)
    _upsert_component(
        StackComponentType.ORCHESTRATOR,
        name,
        "oom_kubernetes",
        {**LOCAL_CLUSTER_CONFIG, **orchestrator_config},
    )
    path = Path(GlobalConfiguration().local_stores_path) / name
    path.mkdir(parents=True, exist_ok=True)
    _upsert_component(StackComponentType.ARTIFACT_STORE, name, "local", {"path": str(path)})
    components = {
        StackComponentType.ORCHESTRATOR: name,
        StackComponentType.ARTIFACT_STORE: name,
    }
    try:
        client.get_stack(name)
    except KeyError:
        client.create_stack(name, components=components)
    else:
        client.update_stack(name, component_updates=components)
    return str(path)


@click.command(name="local-stack")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("KUBECONFIG") or None,
    help="The kubeconfig `zenml-oom cluster up` wrote.  [default: $KUBECONFIG]",
)
@click.option(
    "--name",
    default=STACK,
    show_default=True,
    help="Name of the stack (and of its orchestrator and artifact store).",
)
@click.option(
    "--max-memory",
    default=None,
    help="The orchestrator's max_memory (the cap of OOM retries). Unset: the node's memory.",
)
def local_stack(kubeconfig: Path | None, name: str, max_memory: str | None) -> None:
    """Register a ready stack on the local cluster and make it the active stack.

    Needs a running `zenml-oom cluster up --kubeconfig FILE` and a ZenML server (e.g.
    `zenml login --local`). Run it again at any time: it updates what exists. Then run your
    pipeline with KUBECONFIG=FILE: it needs no image, registry or extra settings.
    """
    if kubeconfig is None:
        raise click.UsageError("pass --kubeconfig FILE (the file of `zenml-oom cluster up`)")
    _wait_for(kubeconfig, timeout=30)
    url = check_cluster(kubeconfig)
    extra = {"max_memory": max_memory} if max_memory else {}
    if max_memory:
        from .flavors import OOMKubernetesOrchestratorSettings

        try:
            OOMKubernetesOrchestratorSettings(max_memory=max_memory)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--max-memory") from None
    from zenml.client import Client

    path = register_local_stack(name, **extra)
    Client().activate_stack(name)
    click.echo(
        f"Stack `{name}` is active: orchestrator `{name}` (oom_kubernetes on the local cluster "
        f"at {url}, context {CONTEXT}, namespace {NAMESPACE}), artifact store `{name}` "
        f"({path}).\nRun a pipeline with: KUBECONFIG={kubeconfig} python my_pipeline.py"
    )
