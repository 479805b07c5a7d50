"""`zenml-oom attempts` and `explain` on a stand-in run (the real store: integration tests)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from zenml_oom_orchestrator import cli_runs
from zenml_oom_orchestrator.orchestrators import store_sync


def _status(value: str) -> SimpleNamespace:
    return SimpleNamespace(value=value)


def _step_run(status: str, history: list[dict[str, Any]], error: str | None = None) -> Any:
    return SimpleNamespace(
        status=_status(status),
        run_metadata={cli_runs.HISTORY_KEY: history} if history else {},
        exception_info=SimpleNamespace(message=error) if error else None,
    )


def _config(*upstream: str) -> Any:
    return SimpleNamespace(spec=SimpleNamespace(upstream_steps=list(upstream)))


ROWS = [
    {
        "attempt": 1,
        "memory_request": "384Mi",
        "memory_limit": "384Mi",
        "outcome": "oom_killed",
        "exit_code": 137,
        "duration_s": 2.9,
        "message": "step 'greedy' was OOM-killed on attempt 1",
    },
    {
        "attempt": 2,
        "memory_request": "768Mi",
        "memory_limit": "768Mi",
        "outcome": "oom_killed",
        "exit_code": 137,
        "duration_s": 4.0,
        "message": "step 'greedy' was OOM-killed on attempt 2 with 768Mi, which is already max_memory (768Mi)",
    },
]
RUN = SimpleNamespace(
    name="cap_hit-1",
    status=_status("failed"),
    snapshot=SimpleNamespace(
        step_configurations={"greedy": _config(), "publish": _config("greedy")}
    ),
    steps={"greedy": _step_run("failed", ROWS, error="max_memory")},
    exception_info=None,  # the run itself has no error: its step failed
    get_body=lambda: SimpleNamespace(status_reason=None),
)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(cli_runs, "load_run", lambda ref: RUN)
    return CliRunner()


def test_history_key_is_the_one_the_orchestrator_writes() -> None:
    assert cli_runs.HISTORY_KEY == store_sync.HISTORY_KEY


def test_attempts_prints_the_table(runner: CliRunner) -> None:
    result = runner.invoke(cli_runs.attempts, ["cap_hit-1"])
    assert result.exit_code == 0, result.output
    assert "Attempts of run `cap_hit-1` (failed)" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("greedy")]
    assert [line.split()[1:4] for line in lines] == [
        ["1", "384Mi", "384Mi"],
        ["2", "768Mi", "768Mi"],
    ]
    publish = [line for line in result.output.splitlines() if line.startswith("publish")]
    assert publish[0].split() == ["publish", "-", "-", "-", "skipped", "-", "-"]


def test_attempts_json(runner: CliRunner) -> None:
    result = runner.invoke(cli_runs.attempts, ["cap_hit-1", "-o", "json"])
    data = json.loads(result.output)
    assert data["status"] == "failed"
    assert [r["memory_limit"] for r in data["steps"]["greedy"]] == ["384Mi", "768Mi"]
    assert data["steps"]["publish"] == []


def test_explain_one_step_and_the_whole_run(runner: CliRunner) -> None:
    one = runner.invoke(cli_runs.explain, ["cap_hit-1", "greedy"])
    assert one.exit_code == 0, one.output
    assert "max_memory" in one.output and "1536Mi" in one.output
    whole = runner.invoke(cli_runs.explain, ["cap_hit-1"])
    assert "`publish` never started" in whole.output


def test_explain_an_unknown_step_lists_the_steps(runner: CliRunner) -> None:
    result = runner.invoke(cli_runs.explain, ["cap_hit-1", "nope"])
    assert result.exit_code == 1
    assert "its steps: greedy, publish" in result.output
