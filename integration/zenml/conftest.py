"""Fixtures for the ZenML integration tests: one real local ZenML server per session, and the
cluster the pipelines run on, with this flavor and ZenML's stock Kubernetes flavor registered.

- `--cluster=local`: one small local cluster per session (its pods are processes here).
- `--cluster=real`: the session's real tier. Its pods are containers on the node's bridge, so
  the ZenML server listens on the bridge address; the step image is the tier's
  (integration/realcluster/build.sh: zenml and this package from the working tree, also named
  `local/zenml-oom:dev` there); the orchestrator pod of this flavor runs as the ServiceAccount
  of rbac.py; the artifact store is a local folder that `local=True` mounts into every pod (the
  node is this machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import real_stacks
from kubernetes import config as k8s_config

from zenml_oom_orchestrator.localcluster.cluster import LocalCluster
from zenml_oom_orchestrator.testing import stack
from zenml_oom_orchestrator.testing.zenml_server import LocalZenServer, local_zen_server

# Small on purpose: four steps at their escalated 640Mi (plus the orchestrator pod's 400Mi
# request) cannot all run at once, so escalated attempts wait for memory others hold.
NODE_MEMORY = "2Gi"
OOM_STACK = "oom-stack"
STOCK_STACK = "stock-stack"


@pytest.fixture(scope="session")
def zenml_server(
    tmp_path_factory: pytest.TempPathFactory, cluster_kind: str, request: pytest.FixtureRequest
) -> Iterator[LocalZenServer]:
    """A local ZenML server (`zenml login --local`), active in this process for the session.
    On the real tier it listens on the node's bridge, so the tier comes up first (a session of
    ZenML tests alone, the tier down, had no bridge to listen on)."""
    host = "127.0.0.1"
    if cluster_kind == "real":
        request.getfixturevalue("real_cluster")
        host = real_stacks.REAL_TIER_BRIDGE
    with local_zen_server(tmp_path_factory.mktemp("zenml-config"), host=host) as server:
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
def real_namespace(zenml_server: LocalZenServer, real_cluster: Any) -> Iterator[str]:
    """A namespace of the session on the real tier, with rbac.py's ServiceAccount and Role."""
    with real_stacks.real_namespace(real_cluster) as name:
        yield name


@pytest.fixture(scope="session")
def real_orchestrator_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The fields that put this flavor's orchestrator on the real tier: its context, the
    session's namespace, and rbac.py's ServiceAccount for the orchestrator pod."""
    return real_stacks.real_orchestrator_config(request.getfixturevalue("real_namespace"))


@pytest.fixture(scope="session")
def flavor_registered(zenml_server: LocalZenServer) -> str:
    """`zenml orchestrator flavor register ...`, exactly as the README says."""
    result = zenml_server.cli("orchestrator", "flavor", "register", stack.FLAVOR_SOURCE)
    return result.stdout


@pytest.fixture(scope="session")
def oom_stack(flavor_registered: str, cluster_kind: str, request: pytest.FixtureRequest) -> str:
    """Local: the stack `zenml-oom local-stack` registers (the product's own code). Real: the
    flavor on the real tier, its orchestrator pod as rbac.py's ServiceAccount. Growing in place
    is off on the component: these tests count OOM kills, and a burst that thrashes at its
    limit for a second could be grown instead. test_grow_in_place.py turns it on per run."""
    if cluster_kind == "real":
        namespace = request.getfixturevalue("real_namespace")
        real_stacks.register_real_oom_stack(OOM_STACK, namespace, grow_in_place=False)
    else:
        request.getfixturevalue("small_cluster")
        stack.register_local_stack(OOM_STACK, grow_in_place=False)
    return OOM_STACK


@pytest.fixture(scope="session")
def stock_stack(cluster_kind: str, request: pytest.FixtureRequest) -> str:
    """ZenML's stock flavor; on the real tier with its defaults (in-cluster config, and the
    ServiceAccount it makes itself), on the local one with what its pods need there."""
    if cluster_kind == "real":
        real_stacks.register_real_stock_stack(
            STOCK_STACK, request.getfixturevalue("real_namespace")
        )
        return STOCK_STACK
    small_cluster: LocalCluster = request.getfixturevalue("small_cluster")
    stack.register_stack(
        STOCK_STACK,
        "stock-k8s",
        "kubernetes",
        orchestrator_pod_settings=stack.stock_orchestrator_pod_settings(
            small_cluster.kubeconfig_path
        ),
    )
    return STOCK_STACK


@pytest.fixture
def run_cluster(oom_stack: str, cluster_kind: str, request: pytest.FixtureRequest) -> Any:
    """(API client, namespace) of the cluster the oom_stack runs pipelines on."""
    if cluster_kind == "real":
        namespace = request.getfixturevalue("real_namespace")
        return request.getfixturevalue("real_cluster").api_client(), namespace
    small_cluster = request.getfixturevalue("small_cluster")
    return k8s_config.new_client_from_config(
        config_file=str(small_cluster.kubeconfig_path)
    ), stack.NAMESPACE
