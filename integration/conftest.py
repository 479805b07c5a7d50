"""Shared fixtures: the cluster the integration tests run on, chosen with `--cluster`.

- `--cluster=local` (default): the project's local cluster (`local_cluster`, from the plugin
  below); what `bash scripts/test` runs.
- `--cluster=real`: a single real Kubernetes 1.35 node on this machine (integration/realcluster:
  kube-apiserver, kubelet, containerd), brought up once per session or reused if it is up.

The same tests run on both through the cluster-neutral fixtures `cluster` (the session's
cluster: `.kubeconfig_path`, `.api_client()`), `cluster_kind`, `k8s_api_client`,
`cluster_namespace`, and `unpullable_image` and `lose_pod` for the two faults both can make. A test that can only run on the local cluster (it injects faults into the
local API server or kubelet, or reads its store) is marked `local_only("why")` and is skipped
on the real tier with that reason; one that needs the real tier is marked `real_only("why")`
and is deselected on the local one.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

pytest_plugins = ["zenml_oom_orchestrator.localcluster.testing"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        choices=("local", "real"),
        default="local",
        help="the cluster integration tests run on: the local cluster (default) or the real "
        "tier of integration/realcluster (root, memory cgroups, Go; first build 15-30 min)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "local_only(reason): runs on the local cluster only; the reason says why"
    )
    config.addinivalue_line(
        "markers", "real_only(reason): needs the real tier (--cluster=real); the reason says why"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"cluster: {config.getoption('--cluster')}"


# Whole directories that run on clusters of their own making, with the reason.
LOCAL_ONLY_PATHS = {
    "zenml": "these ZenML tests drive the local cluster itself (its store, its kubeconfig, "
    "`zenml-oom cluster up`) or a server on 127.0.0.1; the #3440 scenario, the cap case and the "
    "stock flavor side by side (zenml/test_zenml_e2e.py), the orchestrator pod deleted "
    "mid-run (zenml/test_orchestrator_pod_deleted.py), and stop, caching, max_parallelism, "
    "the execution modes and the user's retry limit (zenml/test_zenml_running.py), the "
    "examples (zenml/test_examples.py), a step no node can hold (zenml/test_failures_explained"
    ".py), growth in place (zenml/test_grow_in_place.py), the learned start "
    "(zenml/test_learned_start.py) and the token Secret (zenml/test_token_secret.py) run on "
    "the real tier too, and the "
    "exhausted node (zenml/test_node_exhausted.py) only there",
    "test_demo.py": "`zenml-oom demo` runs on the embedded local cluster by design (no Go needed)",
    "bench": "benchmarks the local cluster's simulated kubelet",
}
# Files inside those directories that run on both clusters.
BOTH_CLUSTERS = {
    "zenml/test_zenml_e2e.py",
    "zenml/test_orchestrator_pod_deleted.py",
    "zenml/test_zenml_running.py",
    "zenml/test_examples.py",
    "zenml/test_failures_explained.py",
    "zenml/test_grow_in_place.py",
    "zenml/test_learned_start.py",
    "zenml/test_token_secret.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real = config.getoption("--cluster") == "real"
    here = Path(__file__).parent
    keep, deselected = [], []
    for item in items:
        path = Path(str(item.path))
        both = any(path == here / part for part in BOTH_CLUSTERS)
        for part, reason in LOCAL_ONLY_PATHS.items():
            marked = item.get_closest_marker("local_only") or item.get_closest_marker("real_only")
            if path.is_relative_to(here / part) and not (both or marked):
                item.add_marker(pytest.mark.local_only(reason))
        local_only = item.get_closest_marker("local_only")
        real_only = item.get_closest_marker("real_only")
        if real_only and not real:
            deselected.append(item)
            continue
        if local_only and real:
            item.add_marker(pytest.mark.skip(reason=f"local cluster only: {local_only.args[0]}"))
        elif real and not real_only and "local_cluster" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(
                f"{item.nodeid} uses the local_cluster fixture but is not marked local_only: "
                "use the cluster-neutral fixtures, or mark it local_only('why')"
            )
        keep.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real tier, up for the session (build it first with integration/realcluster/build.sh:
    a cold build takes longer than a test's timeout)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "realcluster"))
    from tier import RealTier

    from zenml_oom_orchestrator.localcluster.testing import sigterm_interrupts

    tier = RealTier(tmp_path_factory.mktemp("realtier") / "up.log")
    with sigterm_interrupts():  # a killed test run still stops the tier
        try:
            yield tier.start()
        finally:
            tier.stop()


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Any:
    """The session's cluster, local or real (`--cluster`)."""
    if request.config.getoption("--cluster") == "real":
        return request.getfixturevalue("real_cluster")
    return request.getfixturevalue("local_cluster")


@pytest.fixture
def cluster_namespace(k8s_api_client: Any) -> Iterator[str]:
    """A namespace of its own for one test; it and everything in it go afterwards."""
    from zenml_oom_orchestrator.localcluster.testing import wait_for

    core = k8s.CoreV1Api(k8s_api_client)
    name = f"test-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        # Grace 0: a container whose PID 1 ignores SIGTERM would hold the namespace 30 s.
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    # Deletion waits for the pods' processes to stop; don't let them pile up across tests.
    wait_for(lambda: _gone(core, name), timeout=60, interval=0.1, what=f"namespace {name} to go")


def _gone(core: Any, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


@pytest.fixture(scope="session")
def cluster_kind(request: pytest.FixtureRequest) -> str:
    """The session cluster's kind: local or real."""
    return str(request.config.getoption("--cluster"))


@pytest.fixture
def unpullable_image(cluster: Any, cluster_kind: str) -> str:
    """An image name whose pull fails on the session's cluster: the local kubelet is told so;
    the real tier's containerd sends every pull to a closed loopback port."""
    image = "registry.invalid/sup-test/nope:1"
    if cluster_kind == "local":
        cluster.kubelet.fail_image_pulls("registry.invalid/sup-test/*")
    return image


@pytest.fixture
def lose_pod(cluster: Any, cluster_kind: str, k8s_api_client: Any) -> Any:
    """`lose_pod(namespace, name)`: the pod goes with no final status, as when its node
    vanished. The local kubelet drops it; on the real tier it is force-deleted (grace 0), which
    is what pod GC does to the pods of a deleted node."""

    def lose(namespace: str, name: str) -> None:
        if cluster_kind == "local":
            cluster.kubelet.lose_pod(namespace, name)
        else:
            k8s.CoreV1Api(k8s_api_client).delete_namespaced_pod(
                name, namespace, grace_period_seconds=0
            )

    return lose
