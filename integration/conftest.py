"""Shared fixtures: the local cluster (`local_cluster`, `cluster_namespace`, `k8s_api_client`)."""

pytest_plugins = ["zenml_oom_orchestrator.localcluster.testing"]
