"""The demo's live progress: one line per attempt pod state change."""

from __future__ import annotations

from typing import Any

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
