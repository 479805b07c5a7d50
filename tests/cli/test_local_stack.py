"""`zenml-oom local-stack` refuses clearly when there is no local cluster to register on."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from zenml_oom_orchestrator.cli import cli
from zenml_oom_orchestrator.testing.zenml_server import free_port


def _kubeconfig(path: Path, context: str, port: int) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\n"
        f"contexts:\n- name: {context}\n  context: {{cluster: c, user: u}}\n"
        f"current-context: {context}\nusers:\n- name: u\n  user: {{}}\n"
    )
    return path


def test_a_kubeconfig_whose_cluster_is_gone_is_refused_with_the_command_to_start_it(
    tmp_path: Path,
) -> None:
    config = _kubeconfig(tmp_path / "kubeconfig", "oom-local", free_port())
    result = CliRunner().invoke(cli, ["local-stack", "--kubeconfig", str(config)])
    assert result.exit_code == 1, result.output
    assert "does not answer" in result.output
    assert f"zenml-oom cluster up --kubeconfig {config}" in result.output


def test_a_kubeconfig_of_another_cluster_is_refused(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "kubeconfig", "prod", free_port())
    result = CliRunner().invoke(cli, ["local-stack", "--kubeconfig", str(config)])
    assert result.exit_code == 1, result.output
    assert "has no `oom-local` context" in result.output


def test_without_a_kubeconfig_it_says_which_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    result = CliRunner().invoke(cli, ["local-stack"])
    assert result.exit_code == 2
    assert "--kubeconfig" in result.output
