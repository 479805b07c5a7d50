"""Fixtures for the ZenML integration tests: one real local ZenML server and one small local
cluster per session, with this flavor and ZenML's stock Kubernetes flavor registered on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zenml_oom_orchestrator.localcluster.cluster import LocalCluster
from zenml_oom_orchestrator.testing import stack
from zenml_oom_orchestrator.testing.zenml_server import LocalZenServer, local_zen_server

# Small on purpose: four steps at their escalated 640Mi (plus the orchestrator pod's 400Mi
# request) cannot all run at once, so escalated attempts wait for memory others hold.
NODE_MEMORY = "2Gi"
OOM_STACK = "oom-stack"
STOCK_STACK = "stock-stack"


@pytest.fixture(scope="session")
def zenml_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalZenServer]:
    """A local ZenML server (`zenml login --local`), active in this process for the session."""
    with local_zen_server(tmp_path_factory.mktemp("zenml-config")) as server:
        server.activate_in_process()
        yield server


@pytest.fixture(scope="session")
def small_cluster(zenml_server: LocalZenServer) -> Iterator[LocalCluster]:
    """A local cluster with one small node. Started after the server is active: pods inherit
    this process's environment, as the image's environment in a real cluster."""
    with LocalCluster(memory=NODE_MEMORY, cpus=2) as cluster:
        assert cluster.store is not None and cluster.kubeconfig_path is not None
        cluster.store.create("namespaces", {"metadata": {"name": stack.NAMESPACE}})
        stack.use_kubeconfig(cluster.kubeconfig_path)
        yield cluster


@pytest.fixture(scope="session")
def flavor_registered(zenml_server: LocalZenServer) -> str:
    """`zenml orchestrator flavor register ...`, exactly as the README says."""
    result = zenml_server.cli("orchestrator", "flavor", "register", stack.FLAVOR_SOURCE)
    return result.stdout


@pytest.fixture(scope="session")
def oom_stack(flavor_registered: str, small_cluster: LocalCluster) -> str:
    """The stack `zenml-oom local-stack` registers (the product's own code), with growing in
    place off on the component: these tests count OOM kills, and a burst that thrashes at its
    limit for a second could be grown instead. test_grow_in_place.py turns it on per run."""
    stack.register_local_stack(OOM_STACK, grow_in_place=False)
    return OOM_STACK


@pytest.fixture(scope="session")
def stock_stack(small_cluster: LocalCluster) -> str:
    stack.register_stack(
        STOCK_STACK,
        "stock-k8s",
        "kubernetes",
        orchestrator_pod_settings=stack.stock_orchestrator_pod_settings(
            small_cluster.kubeconfig_path
        ),
    )
    return STOCK_STACK
