"""The minikube and real-tier scripts: shellcheck-clean, and the RBAC files agree with the
package's.

Our CI cannot run minikube, so these checks are what keeps the scripts honest between manual
runs: shell errors, and RBAC that drifted from what the code needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from zenml_oom_orchestrator import rbac

ROOT = Path(__file__).resolve().parents[1]
MINIKUBE = ROOT / "integration" / "minikube"
SCRIPTS = sorted(MINIKUBE.glob("*.sh"))
# integration/realcluster: up.sh, down.sh, build.sh and the pieces they run (lib/)
REALCLUSTER_SCRIPTS = sorted((ROOT / "integration" / "realcluster").rglob("*.sh"))


def test_there_are_scripts_and_they_are_executable() -> None:
    assert {p.name for p in SCRIPTS} >= {
        "start.sh",
        "build-image.sh",
        "register-stack.sh",
        "run-demo.sh",
        "down.sh",
        "all.sh",
    }
    assert {p.name for p in REALCLUSTER_SCRIPTS} >= {"build.sh", "up.sh", "down.sh"}
    for script in SCRIPTS + REALCLUSTER_SCRIPTS:
        if script.name != "common.sh":  # sourced, not run
            assert os.access(script, os.X_OK), f"{script.name} is not executable"


def assert_shellcheck_clean(scripts: list[Path]) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is not installed; .ci/run installs it with apt")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(
        [shellcheck, "-x", *map(str, scripts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_are_shellcheck_clean() -> None:
    assert_shellcheck_clean(SCRIPTS + REALCLUSTER_SCRIPTS)


def test_rbac_yaml_is_what_the_rbac_module_prints() -> None:
    """rbac.yaml is the readable copy; zenml_oom_orchestrator.rbac is checked against the
    code's Kubernetes calls (tests/security/test_rbac.py) and is what start.sh applies."""
    docs = list(yaml.safe_load_all((MINIKUBE / "rbac.yaml").read_text()))
    assert docs == rbac.manifests("zenml")


def test_submitter_role_parses() -> None:
    (role,) = yaml.safe_load_all((MINIKUBE / "rbac-submitter.yaml").read_text())
    assert role["kind"] == "Role"
    assert {r for rule in role["rules"] for r in rule["resources"]} == {
        "jobs",
        "pods",
        "pods/log",
        "secrets",
    }


CGROUPV2_SCRIPTS = sorted((ROOT / "integration" / "cgroupv2").glob("*.sh"))


def test_cgroupv2_tier_scripts_are_executable_and_shellcheck_clean() -> None:
    assert {p.name for p in CGROUPV2_SCRIPTS} == {
        "build-image.sh",
        "run-vm.sh",
        "vmtest.sh",
        "run.sh",
    }
    assert all(os.access(p, os.X_OK) for p in CGROUPV2_SCRIPTS)
    assert_shellcheck_clean(CGROUPV2_SCRIPTS)
