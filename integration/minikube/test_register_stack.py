"""register-stack.sh, run for real against the local cluster instead of minikube.

CI has no minikube, but everything this script does after finding minikube's host address is
plain ZenML: a local server, the flavor, the components with their flags, the stack. Pointing
it at the local cluster's kubeconfig context (and 127.0.0.1) checks all of that for real.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from zenml_oom_orchestrator.localcluster.cluster import LocalCluster
from zenml_oom_orchestrator.testing.zenml_server import LocalZenServer, free_port

pytestmark = [
    pytest.mark.zenml,
    pytest.mark.cluster,
    pytest.mark.local_only("registers a stack against the local cluster it starts"),
]

SCRIPT = Path(__file__).resolve().with_name("register-stack.sh")


def test_register_stack_script_registers_a_valid_active_stack(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    assert local_cluster.kubeconfig_path is not None
    work = tmp_path / "work"
    port = free_port()
    env = {
        **os.environ,
        "WORK_DIR": str(work),
        "ZENML_CONFIG_PATH": str(work / "zenml-config"),
        "ZENML_SERVER_IP": "127.0.0.1",
        "ZENML_PORT": str(port),
        "KUBE_CONTEXT": "oom-local",
        "KUBECONFIG": str(local_cluster.kubeconfig_path),
    }
    server = LocalZenServer(config_path=work / "zenml-config", port=port)
    try:
        proc = subprocess.run(
            ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
        )
        print(proc.stdout[-4000:], proc.stderr[-4000:])
        assert proc.returncode == 0
        orchestrator = server.cli("orchestrator", "describe", "oom_minikube")
        text = orchestrator.stdout + orchestrator.stderr
        for expected in ("oom_kubernetes", "oom-local", "zenml-oom-orchestrator"):
            assert expected in text, expected
        active = server.cli("stack", "get")
        assert "oom_minikube" in active.stdout + active.stderr
    finally:
        server.stop()
