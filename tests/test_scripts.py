"""The minikube scripts: shellcheck-clean, and the RBAC they apply grants what the code calls.

Our CI cannot run minikube, so these checks are what keeps the scripts honest between manual
runs: shell errors, and a Role that drifted from the kubernetes calls in the code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MINIKUBE = ROOT / "integration" / "minikube"
SCRIPTS = sorted(MINIKUBE.glob("*.sh"))
PACKAGE = ROOT / "zenml_oom_orchestrator"

# Kubernetes client method verbs -> RBAC verbs.
_VERBS = {"list": "list", "create": "create", "read": "get", "patch": "patch", "delete": "delete"}
_CALL = re.compile(r"\.(list|create|read|patch|delete)_(?:namespaced_)?([a-z]+)\b")
# ZenML's kube_utils helpers the orchestrator pod calls, by what they call in turn.
_HELPERS = {
    "get_parent_job_name": {("pods", "get")},
    "get_pod_owner_references": {("pods", "get")},
    "update_job": {("jobs", "patch")},
    "delete_secret": {("secrets", "delete")},
}
# The code of the orchestrator pod: what its service account needs.
_ORCHESTRATOR_POD_CODE = [
    PACKAGE / "supervisor" / "cluster.py",
    PACKAGE / "orchestrators" / "oom_kubernetes_orchestrator_entrypoint.py",
]


def test_there_are_scripts_and_they_are_executable() -> None:
    assert {p.name for p in SCRIPTS} >= {
        "start.sh",
        "build-image.sh",
        "register-stack.sh",
        "run-demo.sh",
        "down.sh",
        "all.sh",
    }
    for script in SCRIPTS:
        if script.name != "common.sh":  # sourced, not run
            assert os.access(script, os.X_OK), f"{script.name} is not executable"


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is not installed; .ci/run installs it with apt")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(
        [shellcheck, "-x", *map(str, SCRIPTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _granted(role_name: str) -> set[tuple[str, str]]:
    docs = list(yaml.safe_load_all((MINIKUBE / "rbac.yaml").read_text()))
    granted = set()
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole") and doc["metadata"]["name"] == role_name:
            for rule in doc["rules"]:
                granted |= {(r, v) for r in rule["resources"] for v in rule["verbs"]}
    return granted


def _called() -> set[tuple[str, str]]:
    """(resource, verb) for every kubernetes call in the orchestrator pod's code."""
    called: set[tuple[str, str]] = set()
    for path in _ORCHESTRATOR_POD_CODE:
        text = path.read_text()
        for verb, resource in _CALL.findall(text):
            called.add((resource if resource.endswith("s") else resource + "s", _VERBS[verb]))
        for helper, needs in _HELPERS.items():
            if f"kube_utils.{helper}(" in text:
                called |= needs
        if "watch=True" in text:
            called.add(("pods", "watch"))  # the informer's watch is a list with watch=True
    return called


def test_rbac_grants_the_orchestrator_pod_exactly_what_its_code_calls() -> None:
    if not all(p.exists() for p in _ORCHESTRATOR_POD_CODE):
        pytest.skip("the orchestrator pod's code has not landed yet")
    granted = _granted("zenml-oom-orchestrator") | _granted("zenml-oom-node-reader")
    called = _called()
    assert called - granted == set(), "rbac.yaml misses what the code calls"
    assert granted - called == set(), "rbac.yaml grants more than the code calls"
