"""explain_step / explain_run: plain words and the setting that would change the outcome."""

from __future__ import annotations

from typing import Any

import pytest

from zenml_oom_orchestrator.explain import StepFacts, explain_run, explain_step


def row(
    attempt: int, limit: str, outcome: str, message: str = "", exit_code: int = 137
) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "memory_request": limit,
        "memory_limit": limit,
        "outcome": outcome,
        "exit_code": exit_code,
        "message": message,
    }


CAP_MESSAGE = (
    "step 'greedy' was OOM-killed on attempt 2 with 768Mi (exit 137, OOMKilled), which is "
    "already max_memory (768Mi) (memory tried: 384Mi, 768Mi); raise max_memory above 768Mi "
    "or reduce the step's memory use."
)


def test_cap_hit_names_max_memory_with_a_larger_example_value() -> None:
    facts = StepFacts(
        "greedy",
        "failed",
        [row(1, "384Mi", "oom_killed"), row(2, "768Mi", "oom_killed", CAP_MESSAGE)],
    )
    text = explain_step(facts)
    assert "failed after 2 attempts (384Mi -> 768Mi)" in text
    assert "768Mi is already its max_memory" in text
    assert 'OOMKubernetesOrchestratorSettings(max_memory="1536Mi")' in text
    assert CAP_MESSAGE in text


@pytest.mark.parametrize(
    ("outcome", "message", "names"),
    [
        ("oom_killed", "...; all 3 OOM retries are used (memory tried: 1Gi)", "max_oom_retries"),
        (
            "oom_killed",
            "..., which is already the largest node's allocatable memory (7Gi)",
            "Add a node",
        ),
        ("app_error", "failed", "StepRetryConfig"),
        ("killed", "was killed without a reason", 'sigkill_without_reason="oom"'),
        ("disrupted", "was disrupted", "max_infrastructure_retries"),
        ("unschedulable", "could not be scheduled", "pending_timeout_seconds"),
        (
            "unschedulable",
            "... and this run's orchestrator pod holds 400Mi of it ..., so it can never fit",
            "orchestrator_pod_settings",
        ),
        ("image_error", "could not pull", "imagePullSecrets"),
        ("deadline_exceeded", "ran past", "active_deadline_seconds"),
    ],
)
def test_each_failure_points_at_its_setting(outcome: str, message: str, names: str) -> None:
    text = explain_step(StepFacts("s", "failed", [row(1, "1Gi", outcome, message)]))
    assert names in text
    assert "What would change the outcome:" in text


def test_a_completed_step_after_retries_suggests_starting_higher() -> None:
    facts = StepFacts(
        "big", "completed", [row(1, "512Mi", "oom_killed"), row(2, "1Gi", "succeeded", exit_code=0)]
    )
    text = explain_step(facts)
    assert "completed on attempt 2 with 1Gi" in text
    assert 'initial_memory="1Gi"' in text


def test_a_step_oom_killed_after_it_completed_says_it_was_not_run_again() -> None:
    said = "oom_killed (...), after the step had reported success: not run again"
    facts = StepFacts("save", "completed", [row(1, "320Mi", "oom_killed", said)])
    text = explain_step(facts)
    assert "completed on attempt 1 with 320Mi" in text
    assert "then ended oom_killed (exit 137) after the step had reported success" in text
    assert "`save`" in explain_run("r", "completed", [facts])  # not a plain success


def test_a_step_that_never_started_names_the_failed_upstream() -> None:
    text = explain_step(StepFacts("publish", None, upstream=["greedy"], failed_upstream=["greedy"]))
    assert "never started" in text and "`greedy`" in text


def test_a_failure_without_attempts_shows_the_stored_error() -> None:
    text = explain_step(StepFacts("s", "failed", [], error="ValueError: boom"))
    assert "ValueError: boom" in text


def test_explain_run_puts_failures_first_and_skips_plain_successes() -> None:
    steps = [
        StepFacts("ok", "completed", [row(1, "1Gi", "succeeded", exit_code=0)]),
        StepFacts("publish", None, failed_upstream=["greedy"]),
        StepFacts("greedy", "failed", [row(1, "768Mi", "oom_killed", CAP_MESSAGE)]),
    ]
    text = explain_run("r1", "failed", steps)
    assert text.startswith("Run `r1` is failed.")
    assert text.index("`greedy` failed") < text.index("`publish` never started")
    assert "`ok`" not in text
    everyone_fine = explain_run("r2", "completed", steps[:1])
    assert "Every step completed on its first attempt" in everyone_fine


def test_a_failed_run_where_no_step_started_blames_the_orchestrator() -> None:
    steps = [StepFacts("train", None), StepFacts("evaluate", None, failed_upstream=["train"])]
    text = explain_run("r3", "failed", steps, run_error="ImagePullBackOff on the orchestrator")
    assert text.startswith("Run `r3` is failed. The run's own error: ImagePullBackOff")
    assert "No step of it started: the orchestrator failed" in text
    assert "orchestrator logs" in text
    # Steps that never started because the run was stopped are not the orchestrator's fault.
    stopped = explain_run("r4", "stopped", steps)
    assert "orchestrator failed" not in stopped
    assert "`train` never started" in stopped


def test_a_run_stopped_by_hand_says_stopped_not_fix_that_step() -> None:
    steps = [
        StepFacts("train", "stopped"),
        StepFacts("evaluate", None, upstream=["train"], failed_upstream=["train"]),
    ]
    text = explain_run("r5", "stopped", steps)
    assert "Step `train` was stopped." in text
    assert "`evaluate` never started: the run was stopped before it could" in text
    assert "Fix that step first" not in text


def test_a_learned_start_is_explained_with_its_run_and_how_to_turn_it_off() -> None:
    first = row(1, "1280Mi", "succeeded", exit_code=0)
    first["memory_source"] = "learned: succeeded at 1280Mi in run oom_demo-1"
    facts = StepFacts("train_2", "completed", [first])
    text = explain_step(facts)
    assert "completed on attempt 1 with 1280Mi" in text
    assert "It started at 1280Mi because of earlier runs (learned: succeeded at 1280Mi in run " in (
        text
    )
    assert "learn_start_memory=False" in text
    # A run where every step completed at once still lists the learned ones.
    whole = explain_run(
        "r5",
        "completed",
        [facts, StepFacts("ok", "completed", [row(1, "1Gi", "succeeded", exit_code=0)])],
    )
    assert "`train_2`" in whole and "`ok`" not in whole


def test_growths_in_place_are_in_the_row_the_table_and_explain() -> None:
    from zenml_oom_orchestrator.orchestrators.attempt_table import format_attempt_table
    from zenml_oom_orchestrator.orchestrators.zenml_observer import attempt_row
    from zenml_oom_orchestrator.outcome import Outcome, OutcomeKind
    from zenml_oom_orchestrator.policy import AttemptRecord, Growth

    mi = 2**20
    grew = Growth(10.0, 512 * mi, 512 * mi, 1024 * mi, 1024 * mi, "in_force", 0.9)
    stuck = Growth(20.0, 1024 * mi, 1024 * mi, 2048 * mi, 2048 * mi, "infeasible", 0.2, "Node")
    record = AttemptRecord(
        1, 1024 * mi, 1024 * mi, Outcome(OutcomeKind.SUCCEEDED), growths=(grew, stuck)
    )
    stored = attempt_row(record, None)
    assert stored["memory_limit"] == "1Gi"
    assert [(g["from"], g["to"], g["outcome"]) for g in stored["growths"]] == [
        ("512Mi", "1Gi", "in_force"),
        ("1Gi", "2Gi", "infeasible"),
    ]
    assert "growths" not in attempt_row(AttemptRecord(1, mi, mi), None)
    table = format_attempt_table({"train": [stored]}, {"train": "completed"})
    assert table.splitlines()[-1] == (
        "train attempt 1 grew in place: 512Mi -> 1Gi (in force, 0.9 s), "
        "1Gi -> 2Gi (infeasible, 0.2 s: Node)"
    )
    text = explain_run("r", "completed", [StepFacts("train", "completed", [stored])])
    assert "completed on attempt 1 with 1Gi" in text
    assert (
        "Attempt 1 was grown in place 1 time while it ran, keeping its work: 512Mi -> 1Gi" in text
    )
