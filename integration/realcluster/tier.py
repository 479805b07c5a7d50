"""The real tier as a pytest session resource: `up.sh` (build or reuse, start or reuse) and
`down.sh`, driven from Python. Used by integration/conftest.py for `--cluster=real`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class RealTier:
    """A single real Kubernetes 1.35 node on this machine (see integration/realcluster/up.sh).

    `start()` reuses a tier that is already up (and then `stop()` leaves it up); one it
    started is stopped by `stop()` unless ZENML_OOM_REALTIER_KEEP=1."""

    kind = "real"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.kubeconfig_path: Path | None = None
        self.started = False

    def start(self) -> RealTier:
        self.started = True  # until up.sh says it reused one: a half-started tier is stopped
        with self.log_path.open("w") as log:
            proc = subprocess.run(
                ["bash", str(HERE / "up.sh")], stdout=subprocess.PIPE, stderr=log, text=True
            )
            log.write(proc.stdout)
        out = proc.stdout
        if proc.returncode != 0:
            tail = "\n".join(self.log_path.read_text().splitlines()[-30:])
            raise RuntimeError(
                f"integration/realcluster/up.sh failed (exit {proc.returncode}); "
                f"log {self.log_path}:\n{tail}"
            )
        lines = [line for line in out.splitlines() if line.startswith("KUBECONFIG=")]
        self.kubeconfig_path = Path(lines[-1].split("=", 1)[1])
        self.started = "reusing the running real tier" not in out
        return self

    def stop(self) -> None:
        if not self.started or os.environ.get("ZENML_OOM_REALTIER_KEEP") == "1":
            return
        with self.log_path.open("a") as log:
            subprocess.run(["bash", str(HERE / "down.sh")], stdout=log, stderr=log, check=False)
        self.started = False

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig_path))

    def apply_rbac(self, namespace: str) -> str:
        """zenml_oom_orchestrator/rbac.py's manifests for `namespace`, applied as `kubectl apply`
        would (the ClusterRole is shared by every namespace); the ServiceAccount's name."""
        from kubernetes import client as k8s
        from kubernetes.client.exceptions import ApiException

        from zenml_oom_orchestrator import rbac

        with self.api_client() as api:
            core, authz = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
            sa, role, binding, cluster_role, cluster_binding = rbac.manifests(namespace)
            core.create_namespaced_service_account(namespace, sa)
            authz.create_namespaced_role(namespace, role)
            authz.create_namespaced_role_binding(namespace, binding)
            try:
                authz.create_cluster_role(cluster_role)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                authz.replace_cluster_role(cluster_role["metadata"]["name"], cluster_role)
            authz.create_cluster_role_binding(cluster_binding)
        return str(sa["metadata"]["name"])

    def remove_rbac(self, namespace: str) -> None:
        """The cluster-scoped part of `apply_rbac` (the rest goes with the namespace)."""
        from kubernetes import client as k8s

        from zenml_oom_orchestrator import rbac

        name = rbac.manifests(namespace)[-1]["metadata"]["name"]
        with self.api_client() as api:
            k8s.RbacAuthorizationV1Api(api).delete_cluster_role_binding(name)
