"""The demo's live progress: one line per attempt pod state change."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from zenml_oom_orchestrator import demo
from zenml_oom_orchestrator.demo import ProgressPrinter, pod_progress
from zenml_oom_orchestrator.supervisor import naming


def attempt_pod(
    step: str, attempt: int, limit: str, phase: str, reason: str | None = None
) -> dict[str, Any]:
    statuses = [{"name": "main", "state": {"terminated": {"reason": reason, "exitCode": 137}}}]
    return {
        "metadata": {
            "labels": {naming.LABEL_ATTEMPT: str(attempt)},
            "annotations": {naming.ANN_ZENML_STEP: step, naming.ANN_MEMORY_LIMIT: limit},
        },
        "spec": {"containers": [{"name": "main"}]},
        "status": {"phase": phase, "containerStatuses": statuses if reason else []},
    }


def test_pod_progress_reads_step_attempt_memory_and_state() -> None:
    assert pod_progress(attempt_pod("train", 2, "1Gi", "Running")) == ("train", 2, "1Gi", "Running")
    assert pod_progress(attempt_pod("train", 1, "512Mi", "Failed", "OOMKilled"))[3] == "OOMKilled"
    orchestrator_pod = {"metadata": {"labels": {"run_id": "x"}}, "status": {"phase": "Running"}}
    assert pod_progress(orchestrator_pod) is None


def test_printer_prints_only_changes() -> None:
    lines: list[str] = []
    printer = ProgressPrinter(echo=lines.append)
    printer.update([attempt_pod("train", 1, "512Mi", "Running")])
    printer.update([attempt_pod("train", 1, "512Mi", "Running")])
    printer.update(
        [
            attempt_pod("train", 1, "512Mi", "Failed", "OOMKilled"),
            attempt_pod("train", 2, "1Gi", "Pending"),
        ]
    )
    assert [line.split()[1:] for line in lines] == [
        ["train", "attempt", "1", "512Mi", "Running"],
        ["train", "attempt", "1", "512Mi", "OOMKilled"],
        ["train", "attempt", "2", "1Gi", "Pending"],
    ]


def test_changes_seen_in_one_poll_print_in_the_order_they_happened() -> None:
    """train_2 completed, then evaluate started: listed by name, evaluate would come first."""
    lines: list[str] = []
    printer = ProgressPrinter(echo=lines.append)
    done = attempt_pod("train_2", 3, "2Gi", "Succeeded", "Completed")
    done["metadata"]["resourceVersion"] = "41"
    started = attempt_pod("evaluate", 1, "512Mi", "Running")
    started["metadata"]["resourceVersion"] = "42"
    printer.update([started, done])  # the store lists by name
    assert [line.split()[1] for line in lines] == ["train_2", "evaluate"]


def test_a_failed_demo_run_is_explained_before_the_server_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zenml.client
    from test_cli_runs import RUN  # a failed stand-in run: greedy over its cap

    class FakeClient:
        def get_pipeline(self, name: str) -> Any:
            return SimpleNamespace(last_run=SimpleNamespace(id="r1"))

        def get_pipeline_run(self, run_id: str) -> Any:
            return RUN

    monkeypatch.setattr(zenml.client, "Client", FakeClient)
    assert demo._report(0, tmp_path / "pipeline.log") == 1
    out = capsys.readouterr().out
    assert "ended FAILED" in out
    assert "`greedy` failed after 2 attempts" in out and "max_memory" in out


def test_a_pod_no_node_can_take_says_why_while_it_waits() -> None:
    pod = attempt_pod("train", 2, "1Gi", "Pending")
    message = "0/1 nodes are available: 1 Insufficient memory."
    pod["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    ]
    assert pod_progress(pod)[3] == f"Pending (Unschedulable: {message})"


def test_piped_or_no_color_output_has_no_escape_sequences() -> None:
    """The demo's own log lines (the cluster's, through ZenML's formatter) when piped."""
    import subprocess
    import sys

    code = (
        "import logging, os, sys\n"
        "from zenml_oom_orchestrator import demo\n"
        "if demo.plain_output(os.environ, sys.stdout):\n"
        "    os.environ[demo.ENV_NO_ZENML_COLOURS] = 'true'\n"
        "import zenml\n"
        "logging.getLogger('zenml_oom_orchestrator.localcluster').info('memory cgroups: v1')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", demo.ENV_NO_ZENML_COLOURS)}
    piped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "memory cgroups: v1" in piped.stdout + piped.stderr
    assert "\x1b[" not in piped.stdout + piped.stderr
    assert demo.plain_output({"NO_COLOR": "1"}, SimpleNamespace(isatty=lambda: True))
    assert not demo.plain_output({}, SimpleNamespace(isatty=lambda: True))
