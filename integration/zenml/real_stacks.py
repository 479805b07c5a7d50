"""The ZenML side of the real tier, shared by the test fixtures (conftest.py) and the
benchmarks (integration/bench/no_overhead.py): a namespace with rbac.py's ServiceAccount, and
this flavor's and ZenML's stock stacks on it.

Its pods are containers on the node's bridge, so the ZenML server must listen on
`REAL_TIER_BRIDGE`; the artifact store is a local folder that `local=True` mounts into every
pod (the node is this machine).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from zenml_oom_orchestrator import rbac
from zenml_oom_orchestrator.testing import stack

REAL_TIER_BRIDGE = "10.88.0.1"  # the real node's bridge address (integration/realcluster/up.sh)
REAL_TIER_CONTEXT = "realk8s"  # the context of the real tier's kubeconfig


@contextmanager
def real_namespace(real_cluster: Any) -> Iterator[str]:
    """A namespace of its own on the real tier, with rbac.py's ServiceAccount and Role; it and
    everything in it go afterwards."""
    stack.use_kubeconfig(Path(real_cluster.kubeconfig_path))
    name = f"zenml-e2e-{secrets.token_hex(3)}"
    with real_cluster.api_client() as api:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    real_cluster.apply_rbac(name)
    try:
        yield name
    finally:
        real_cluster.remove_rbac(name)
        with real_cluster.api_client() as api:
            core = k8s.CoreV1Api(api)
            core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
            core.delete_namespace(name)


def real_orchestrator_config(namespace: str) -> dict[str, Any]:
    """The fields that put this flavor's orchestrator on the real tier: its context, the
    namespace, and rbac.py's ServiceAccount for the orchestrator pod."""
    return {
        "kubernetes_context": REAL_TIER_CONTEXT,
        "kubernetes_namespace": namespace,
        "service_account_name": rbac.NAME,
    }


def register_real_oom_stack(name: str, namespace: str, **config: Any) -> None:
    """This flavor on the real tier (`real_orchestrator_config`)."""
    stack.register_stack(
        name, "oom-k8s", "oom_kubernetes", **real_orchestrator_config(namespace), **config
    )


def register_real_stock_stack(name: str, namespace: str) -> None:
    """ZenML's stock flavor on the real tier with its defaults (in-cluster config, and the
    ServiceAccount it makes itself)."""
    stack.register_stack(
        name,
        "stock-k8s",
        "kubernetes",
        kubernetes_context=REAL_TIER_CONTEXT,
        kubernetes_namespace=namespace,
    )
