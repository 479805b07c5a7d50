"""Never OOM twice: the demo pipeline run again starts each step at the memory it needed.

Real ZenML server, either cluster (on the real tier the steps run in its step image, and
ZenML uploads examples/ for the pods), real kernel OOM kills; ``examples/oom_pipeline.py`` run
as a user runs it, under a pipeline name of its own (``OOM_DEMO_PIPELINE``) so that no other
test's runs are in its history. One history, in order:

A. learning on (the default), first run: the kills of the demo (320Mi -> 640Mi -> 1280Mi);
B. learning on: no kill, each step starts where it succeeded in A;
C. learning off: A's kills again;
D. the cap lowered to 640Mi: train_2, which needed 1280Mi, starts at the cap (and fails there);
E. the train step's code changed: every train_* step starts fresh, with A's kills.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from zenml.client import Client
from zenml.enums import ExecutionStatus

from zenml_oom_orchestrator import cli_runs
from zenml_oom_orchestrator.bench.learning import EXAMPLES, DemoRun, run_demo
from zenml_oom_orchestrator.orchestrators import run_history
from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.testing.zenml_server import LocalZenServer

# The first test's setup runs the demo five times (about 7 min on the real tier).
pytestmark = [pytest.mark.zenml, pytest.mark.cluster, pytest.mark.timeout(1500)]

PIPELINE = "oom_demo_learned_start"
STEP_IMAGE = "localhost/zenml-oom:dev"  # the real tier's step image (integration/realcluster)
# The demo scaled to the 2Gi test node, as in test_examples.py (and kept so on the shared real
# node): fits, one retry, two retries.
DEMO_ENV = {
    "OOM_DEMO_SIZES_MIB": "40,300,600",
    "OOM_DEMO_START": "320Mi",
    "OOM_DEMO_CAP": "1280Mi",
    "OOM_DEMO_HOLD_SECONDS": "0.5",
}
FIRST_RUN = {
    "train_0": [("320Mi", "succeeded")],
    "train_1": [("320Mi", "oom_killed"), ("640Mi", "succeeded")],
    "train_2": [("320Mi", "oom_killed"), ("640Mi", "oom_killed"), ("1280Mi", "succeeded")],
    "evaluate": [("320Mi", "succeeded")],
}


def changed_examples(tmp: Path) -> Path:
    """A copy of examples/ whose train step has one more line in its body: another code hash."""
    copy = tmp / "examples-changed"
    shutil.copytree(EXAMPLES, copy)
    script = copy / "oom_pipeline.py"
    text = script.read_text()
    body = "    return use_memory(mib, hold_seconds)\n"
    assert body in text
    script.write_text(text.replace(body, "    mib = int(mib)  # changed\n" + body))
    return copy


@pytest.fixture(scope="module")
def runs(
    zenml_server: LocalZenServer,
    oom_stack: str,
    cluster_kind: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, DemoRun]]:
    tmp = tmp_path_factory.mktemp("learned-start")
    real = cluster_kind == "real"
    cluster = request.getfixturevalue("real_cluster" if real else "small_cluster")
    env = {
        **zenml_server.env(),
        **DEMO_ENV,
        "KUBECONFIG": str(cluster.kubeconfig_path),
        "ZENML_ACTIVE_STACK_ID": str(Client().get_stack(oom_stack).id),
    }
    image = STEP_IMAGE if real else None

    def demo(**kwargs: Any) -> DemoRun:
        result = run_demo({**env, **kwargs.pop("env", {})}, PIPELINE, tmp, image=image, **kwargs)
        print(f"\n{result.run.name}: {result.run.status.value} in {result.seconds:.1f}s")
        print({name: result.attempts(name) for name in FIRST_RUN})
        return result

    done: dict[str, DemoRun] = {}
    done["A"] = demo()
    done["B"] = demo()
    done["C"] = demo(learn=False)
    done["D"] = demo(env={"OOM_DEMO_CAP": "640Mi"})
    done["E"] = demo(examples=changed_examples(tmp))
    yield done


def _attempts(result: DemoRun) -> dict[str, list[tuple[str, str]]]:
    return {name: result.attempts(name) for name in FIRST_RUN}


def test_the_second_run_has_no_oom_kill_and_starts_where_the_first_succeeded(
    runs: dict[str, DemoRun],
) -> None:
    first, second = runs["A"], runs["B"]
    assert first.run.status is ExecutionStatus.COMPLETED
    assert _attempts(first) == FIRST_RUN
    assert second.run.status is ExecutionStatus.COMPLETED, second.output[-3000:]
    assert second.oom_kills == 0
    assert _attempts(second) == {name: [rows[-1]] for name, rows in FIRST_RUN.items()}
    # Where it came from, in the run metadata, the attempt table and explain.
    learned = f"learned: succeeded at 1280Mi in run {first.run.name}"
    assert second.first_attempt("train_2")["memory_source"] == learned
    assert "learned" not in str(second.first_attempt("train_0")["memory_source"])  # its start
    table = CliRunner().invoke(cli_runs.attempts, [second.run.name])
    assert f"train_2 started at 1280Mi: {learned}" in table.output, table.output
    said = CliRunner().invoke(cli_runs.explain, [second.run.name, "train_1"])
    assert "It started at 640Mi because of earlier runs (learned: succeeded at 640Mi" in said.output
    # The synchronous run's own output (the client prints the attempt table at the end).
    assert f"train_2 started at 1280Mi: {learned}" in second.output


def test_with_learning_off_a_run_repeats_the_first_runs_kills(runs: dict[str, DemoRun]) -> None:
    off = runs["C"]
    assert off.run.status is ExecutionStatus.COMPLETED
    assert _attempts(off) == FIRST_RUN
    assert off.oom_kills == runs["A"].oom_kills == 3


def test_a_lowered_cap_is_respected_a_step_that_needed_more_starts_at_the_cap(
    runs: dict[str, DemoRun],
) -> None:
    capped = runs["D"]
    attempts = _attempts(capped)
    assert attempts["train_0"] == [("320Mi", "succeeded")]
    assert attempts["train_1"] == [("640Mi", "succeeded")]
    # It needed 1280Mi: it starts at the 640Mi cap, is killed there, and fails with the cap.
    assert attempts["train_2"] == [("640Mi", "oom_killed")]
    source = capped.first_attempt("train_2")["memory_source"]
    assert source == (
        f"learned: succeeded at 1280Mi in run {runs['C'].run.name}, capped at max_memory 640Mi"
    )
    assert capped.run.status is ExecutionStatus.FAILED


def test_a_changed_step_starts_fresh(runs: dict[str, DemoRun]) -> None:
    changed = runs["E"]
    assert changed.run.status is ExecutionStatus.COMPLETED, changed.output[-3000:]
    assert _attempts(changed) == FIRST_RUN
    for name in ("train_0", "train_1", "train_2"):
        assert "learned" not in str(changed.first_attempt(name)["memory_source"])


def test_reading_the_history_costs_two_store_requests_whatever_the_runs_and_steps(
    runs: dict[str, DemoRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    snapshot = client.get_snapshot(runs["B"].run.snapshot.id, hydrate=True)
    assert snapshot.pipeline is not None
    _ = snapshot.pipeline.id, snapshot.step_configurations  # hydrated before counting
    policies = {name: OOMPolicy() for name in snapshot.step_configurations}
    store: Any = client.zen_store
    real_request = store._request
    sent: list[str] = []

    def counting_request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(f"{method} {url.rsplit('/api/v1', 1)[-1]}")
        return real_request(method, url, *args, **kwargs)

    monkeypatch.setattr(store, "_request", counting_request)
    # 5 finished runs x 4 steps in the window: one list of runs, one page of step runs.
    learned = run_history.learned_starts(client, snapshot, runs["E"].run.id, policies)
    assert len(sent) == 2, sent
    # D killed train_2 at its 640Mi cap (one step up: 1280Mi); C succeeded with 1280Mi.
    assert (learned["train_2"].run, learned["train_2"].how) == (runs["C"].run.name, "succeeded")
    # Pages of 3 step runs: more pages, still nothing per step or per past run.
    sent.clear()
    monkeypatch.setattr(run_history, "PAGE_SIZE", 3)
    # A window of 5 finished runs: E (here the "current" run, left out), D, C, B, A.
    history = run_history.read_history(client, snapshot.pipeline.id, runs["E"].run.id, 5)
    step_runs = sum(len(r.steps) for r in history)
    assert len(history) == 4 and step_runs >= 12
    assert len(sent) == 1 + -(-step_runs // 3), sent


def test_a_store_that_does_not_answer_leaves_the_policy_start_and_says_so_once(
    runs: dict[str, DemoRun], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    snapshot = client.get_snapshot(runs["B"].run.snapshot.id, hydrate=True)
    assert snapshot.pipeline is not None
    _ = snapshot.pipeline.id, snapshot.step_configurations
    store: Any = client.zen_store

    def no_answer(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        # Stand-in for a server that is down (we cannot stop the session's server here).
        raise ConnectionError(f"{method} {url}: connection refused")

    monkeypatch.setattr(store, "_request", no_answer)
    policies = {name: OOMPolicy() for name in snapshot.step_configurations}
    with caplog.at_level(logging.WARNING, logger=run_history.__name__):
        learned = run_history.learned_starts(client, snapshot, runs["E"].run.id, policies)
    assert learned == {}
    warnings = [r.getMessage() for r in caplog.records if r.name == run_history.__name__]
    assert len(warnings) == 1, warnings
    assert "every step starts at its policy's start memory" in warnings[0]
    assert PIPELINE in warnings[0] and "connection refused" in warnings[0]
