"""fetch_status reads the latest attempt; the attempt table is readable and complete."""

from __future__ import annotations

from kubernetes.client import V1ObjectMeta, V1Pod, V1PodStatus
from zenml.enums import ExecutionStatus

from zenml_oom_orchestrator.orchestrators.attempt_table import format_attempt_table
from zenml_oom_orchestrator.orchestrators.status_view import latest_attempt_statuses


def _pod(step: str, attempt: int | None, phase: str) -> V1Pod:
    labels = {"run_id": "r"} | ({"attempt": str(attempt)} if attempt else {})
    return V1Pod(
        metadata=V1ObjectMeta(
            name=f"{step}-{attempt}", labels=labels, annotations={"zenml.io/step-name": step}
        ),
        status=V1PodStatus(phase=phase),
    )


def test_latest_attempt_wins_once_the_orchestrator_is_gone() -> None:
    pods = [
        _pod("train", 2, "Succeeded"),
        _pod("train", 1, "Failed"),  # an earlier OOM kill must not decide
        _pod("eval", 1, "Failed"),
        _pod("eval", 10, "Running"),  # numeric, not lexical, order
        _pod("orchestrator", None, "Running"),  # not an attempt pod
    ]
    assert latest_attempt_statuses(pods, orchestrator_done=True) == {
        "train": ExecutionStatus.COMPLETED,
        "eval": ExecutionStatus.FAILED,  # left running by a dead orchestrator: settled
    }


def test_nothing_is_reported_while_the_supervisor_is_the_writer() -> None:
    assert latest_attempt_statuses([_pod("train", 1, "Failed")], orchestrator_done=False) == {}


def test_attempt_table_lists_every_attempt_and_steps_without_any() -> None:
    rows = [
        {"attempt": 1, "memory_request": "320Mi", "memory_limit": "320Mi",
         "outcome": "oom_killed", "exit_code": 137, "duration_s": 4.25, "message": "x" * 200},
        {"attempt": 2, "memory_request": "640Mi", "memory_limit": "640Mi",
         "outcome": "succeeded", "exit_code": 0, "duration_s": 3.0, "message": "ok"},
    ]  # fmt: skip
    table = format_attempt_table({"train": rows}, {"train": "completed", "after": "skipped"})
    lines = table.splitlines()
    assert lines[0].split() == [
        "step", "attempt", "request", "limit", "outcome", "exit", "duration", "message",
    ]  # fmt: skip
    assert "320Mi" in lines[2] and "oom_killed" in lines[2] and "137" in lines[2]
    assert "4.2s" in lines[2] or "4.3s" in lines[2]
    assert lines[2].endswith("...")  # long messages are cut
    assert "640Mi" in lines[3] and "succeeded" in lines[3]
    assert lines[4].split()[:2] == ["after", "-"] and "skipped" in lines[4]


def test_a_long_message_is_shortened_at_a_word_and_a_step_without_attempts_says_why() -> None:
    words = "step 'train' was OOM-killed on attempt 1 with 320Mi (exit 137, OOMKilled); retrying"
    rows = [{"attempt": 1, "outcome": "oom_killed", "message": words}]
    why = "step 'big': the step starts with 4Gi from initial_memory, but the largest node has 2Gi"
    table = format_attempt_table({"train": rows, "big": []}, {"big": "failed"}, {"big": why})
    train, big = table.splitlines()[2:]
    shown = train[train.index("step 'train'") :]
    assert shown.endswith(" ...") and words.startswith(shown.removesuffix(" ...") + " ")
    assert "failed" in big and "the step starts with 4Gi" in big


def test_attempt_table_says_where_a_learned_start_memory_came_from() -> None:
    learned = "learned: succeeded at 1280Mi in run oom_demo-1"
    rows = {
        "train": [
            {"attempt": 1, "memory_request": "1280Mi", "memory_limit": "1280Mi",
             "outcome": "succeeded", "exit_code": 0, "memory_source": learned},
        ],
        "evaluate": [
            {"attempt": 1, "memory_request": "320Mi", "memory_limit": "320Mi",
             "outcome": "succeeded", "exit_code": 0, "memory_source": "initial_memory='320Mi'"},
        ],
    }  # fmt: skip
    lines = format_attempt_table(rows).splitlines()
    assert lines[-1] == f"train started at 1280Mi: {learned}"
    assert not any(line.startswith("evaluate started") for line in lines)  # the policy's own
