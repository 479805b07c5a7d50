"""Every script in examples/ as the README runs it (``python examples/X.py`` from the clone),
on either cluster (``--cluster``), with one test body for both:

- local: the README's "Using it" path, for real: `zenml-oom cluster up`, `zenml-oom
  local-stack`, then the scripts, nothing else;
- real: as a user of a real cluster runs them (the README's minikube path): the session's stack
  with this flavor active, and ``ZENML_OOM_RUN_CONFIG`` naming a run config with the real tier's
  step image and ``skip_build``, so ZenML uploads examples/ to the artifact store and the pods
  download it. The steps run in that image on the real kubelet, and the kernel OOM-kills them
  in containerd's memory cgroups.

It lives next to the flavor's end-to-end tests to share their session ZenML server (started by
`zenml login --local`, as the README says): a twin server in another folder would fight over
the process-wide ZenML client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from zenml.client import Client
from zenml.enums import ExecutionStatus
from zenml.models import PipelineRunResponse

from zenml_oom_orchestrator import cli_runs
from zenml_oom_orchestrator.localcluster.testing import wait_for
from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY, OPEN_STATUSES
from zenml_oom_orchestrator.testing.zenml_server import LocalZenServer

pytestmark = [pytest.mark.zenml, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
VERIFY = REPO / "integration" / "minikube" / "verify_run.py"
ZENML_OOM = str(Path(sys.executable).with_name("zenml-oom"))
NODE_MEMORY = "2Gi"
STEP_IMAGE = "localhost/zenml-oom:dev"  # the real tier's step image (integration/realcluster)
# The demo scaled to the local 2Gi node, and kept so on the real node, which other tests share:
# fits at once, one retry, two retries (at most 1280Mi for one step, 1920Mi for all three).
DEMO_ENV = {
    "OOM_DEMO_SIZES_MIB": "40,300,600",
    "OOM_DEMO_START": "320Mi",
    "OOM_DEMO_CAP": "1280Mi",
    "OOM_DEMO_HOLD_SECONDS": "0.5",
}


@dataclass
class ReadmeSetup:
    kubeconfig: Path
    server: LocalZenServer
    stack_output: str
    run_env: dict[str, str] = field(default_factory=dict)  # what else the user's shell sets

    def env(self, **extra: str) -> dict[str, str]:
        """The shell of a user who followed the README: its ZenML config and KUBECONFIG."""
        return {**self.server.env(), "KUBECONFIG": str(self.kubeconfig), **self.run_env, **extra}


@pytest.fixture(scope="module")
def readme(
    zenml_server: LocalZenServer, flavor_registered: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReadmeSetup]:
    """`zenml-oom cluster up --kubeconfig F` in its own "terminal" (no ZenML variables of this
    session), then `zenml-oom local-stack --kubeconfig F` against the session's server.

    The flavor is registered first by the session (`zenml orchestrator flavor register`, which
    refuses a second time); `local-stack` registers it itself on a server without it (the demo
    test sees that). `local-stack` activates its stack in the session's ZenML config: the stack
    active before is restored afterwards, for the other modules of the session.
    """
    active_before = Client().active_stack_model.id
    tmp = tmp_path_factory.mktemp("readme")
    kubeconfig = tmp / "kubeconfig"
    terminal = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "KUBECONFIG"))}
    terminal["ZENML_CONFIG_PATH"] = str(tmp / "cluster-terminal-zenml")
    cluster = subprocess.Popen(
        [ZENML_OOM, "cluster", "up", "--kubeconfig", str(kubeconfig), "--memory", NODE_MEMORY],
        env=terminal,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(kubeconfig.exists, timeout=60, what="the local cluster's kubeconfig")
        setup = ReadmeSetup(kubeconfig, zenml_server, "")
        registered = subprocess.run(
            [ZENML_OOM, "local-stack", "--kubeconfig", str(kubeconfig)],
            env=setup.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert registered.returncode == 0, registered.stdout + registered.stderr
        setup.stack_output = registered.stdout
        yield setup
    finally:
        Client().activate_stack(active_before)
        cluster.send_signal(signal.SIGINT)
        try:
            cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cluster.kill()
            cluster.wait()


@pytest.fixture(scope="module")
def shell(
    cluster_kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReadmeSetup]:
    """The shell the examples run in: after the README's local commands (`readme`), or on the
    real tier with the session's oom_stack active and a run config naming the step image (the
    README's minikube path). The stack active before is restored afterwards."""
    if cluster_kind == "local":
        yield request.getfixturevalue("readme")
        return
    server: LocalZenServer = request.getfixturevalue("zenml_server")
    oom_stack: str = request.getfixturevalue("oom_stack")
    kubeconfig = Path(request.getfixturevalue("real_cluster").kubeconfig_path)
    run_config = tmp_path_factory.mktemp("examples") / "run-config.yaml"
    run_config.write_text(
        f"settings:\n  docker:\n    parent_image: {STEP_IMAGE}\n    skip_build: true\n"
    )
    active_before = Client().active_stack_model.id
    Client().activate_stack(oom_stack)
    try:
        yield ReadmeSetup(kubeconfig, server, "", {"ZENML_OOM_RUN_CONFIG": str(run_config)})
    finally:
        Client().activate_stack(active_before)


@dataclass
class ExampleRun:
    proc: subprocess.CompletedProcess[str]
    run: PipelineRunResponse

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr


def run_example(setup: ReadmeSetup, script: str, **env: str) -> ExampleRun:
    """``python examples/<script>`` from the clone, as the README says; and its last run."""
    proc = subprocess.run(
        [sys.executable, f"examples/{script}"],
        cwd=REPO,
        env=setup.env(**env),
        capture_output=True,
        text=True,
        timeout=900,  # a pod imports ZenML in ~20 s on the real tier's 2 shared cores
    )
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    pipeline = Path(script).stem if script != "oom_pipeline.py" else "oom_demo"
    run = Client().get_pipeline(pipeline).last_run
    assert run is not None
    return ExampleRun(proc, Client().get_pipeline_run(run.id))


Example = Callable[..., ExampleRun]


@pytest.fixture
def example(shell: ReadmeSetup) -> Example:
    """``example("X.py", **env)`` runs examples/X.py in the `shell`."""

    def run(script: str, **env: str) -> ExampleRun:
        return run_example(shell, script, **env)

    return run


@pytest.mark.local_only(
    "`zenml-oom local-stack` registers a stack for the local cluster (local_cluster=True: no "
    "image, code imported from this machine); the real tier runs the examples on a stack "
    "with the step image instead"
)
def test_local_stack_registers_an_active_stack_with_no_builder_or_registry(
    readme: ReadmeSetup,
) -> None:
    assert "Stack `oom-local` is active" in readme.stack_output
    described = readme.server.cli("stack", "describe")
    assert "oom-local" in described.stdout + described.stderr
    stack = Client().get_stack("oom-local")
    assert set(stack.components) == {"orchestrator", "artifact_store"}
    # Run again: it updates what exists instead of failing.
    again = subprocess.run(
        [ZENML_OOM, "local-stack"], env=readme.env(), capture_output=True, text=True, timeout=180
    )
    assert again.returncode == 0, again.stdout + again.stderr


def attempts(run: PipelineRunResponse, step: str) -> list[tuple[Any, Any]]:
    history = run.steps[step].run_metadata.get(HISTORY_KEY) or []
    return [(row["memory_limit"], row["outcome"]) for row in history]


def memory_path(run: PipelineRunResponse, step: str) -> tuple[list[str], list[str]]:
    """Every limit the step ran at, and how it left each: an attempt grown in place (growth is
    on by default on the README's stack) left the limits it grew out of as "grown". Which of a
    kill or a growth comes first depends on how fast the step allocates on a loaded machine;
    the limits follow the same arithmetic either way, and that is what these tests check."""
    limits, outcomes = [], []
    for row in run.steps[step].run_metadata.get(HISTORY_KEY) or []:
        for growth in row.get("growths") or []:
            if growth["outcome"] == "in_force":
                limits.append(growth["from"])
                outcomes.append("grown")
        limits.append(row["memory_limit"])
        outcomes.append(row["outcome"])
    return limits, outcomes


def escalated(run: PipelineRunResponse, step: str, limits: list[str], last: str) -> None:
    """The step went through `limits`, killed or grown out of each but the last, ending `last`."""
    ran, outcomes = memory_path(run, step)
    assert ran == limits, (ran, outcomes)
    assert outcomes[-1] == last and set(outcomes[:-1]) <= {"oom_killed", "grown"}, outcomes


def open_step_runs(run: PipelineRunResponse) -> list[str]:
    page = Client().list_run_steps(pipeline_run_id=run.id, size=1000)
    return [f"{s.name}={s.status.value}" for s in page.items if s.status in OPEN_STATUSES]


def test_oom_pipeline_escalates_every_step_to_success(example: Example, shell: ReadmeSetup) -> None:
    ran = example("oom_pipeline.py", **DEMO_ENV)
    run = ran.run
    assert ran.proc.returncode == 0, ran.output[-3000:]
    # The synchronous run's own output ends with its attempt table.
    assert f"Attempts of run `{run.name}` (completed)" in ran.proc.stdout
    assert run.status is ExecutionStatus.COMPLETED
    assert open_step_runs(run) == []
    assert attempts(run, "train_0") == [("320Mi", "succeeded")]
    assert attempts(run, "train_1") == [("320Mi", "oom_killed"), ("640Mi", "succeeded")]
    assert attempts(run, "train_2") == [
        ("320Mi", "oom_killed"),
        ("640Mi", "oom_killed"),
        ("1280Mi", "succeeded"),
    ]
    assert run.steps["evaluate"].status is ExecutionStatus.COMPLETED
    # The check run-demo.sh makes after a minikube run, on this run.
    verify = subprocess.run(
        [sys.executable, str(VERIFY), "--pipeline", "oom_demo", "--first-attempt", "train_0"]
        + ["--escalated", "train_1", "--escalated", "train_2"],
        env=shell.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    table = CliRunner().invoke(cli_runs.attempts, [run.name])
    assert table.exit_code == 0, table.output
    assert len([line for line in table.output.splitlines() if line.startswith("train_2")]) == 3


def test_per_step_policy(example: Example) -> None:
    ran = example("per_step_policy.py")
    run = ran.run
    assert ran.proc.returncode == 0, ran.output[-3000:]
    assert run.status is ExecutionStatus.COMPLETED
    assert open_step_runs(run) == []
    # ResourceSettings(memory="384MiB") starts it; 1.5x but at least +256Mi; under 2Gi.
    escalated(run, "embed", ["384Mi", "640Mi", "960Mi"], "succeeded")
    assert [outcome for _, outcome in attempts(run, "score")] == ["succeeded"]


def test_pipeline_default_policy(example: Example) -> None:
    ran = example("pipeline_default_policy.py")
    run = ran.run
    assert ran.proc.returncode == 0, ran.output[-3000:]
    assert run.status is ExecutionStatus.COMPLETED
    assert open_step_runs(run) == []
    escalated(run, "features", ["320Mi", "960Mi"], "succeeded")
    # The step's own max_memory, the pipeline's initial_memory.
    assert attempts(run, "report") == [("320Mi", "succeeded")]


def test_cap_hit_fails_clearly_and_explain_names_the_setting(example: Example) -> None:
    ran = example("cap_hit.py")
    run = ran.run
    # The expected failure is reported, not raised: the script succeeds in showing it.
    assert ran.proc.returncode == 0, ran.output[-3000:]
    assert "The run failed as expected: step 'greedy' was OOM-killed" in ran.proc.stdout
    assert "Traceback" not in ran.output
    assert run.status is ExecutionStatus.FAILED
    assert open_step_runs(run) == []
    escalated(run, "greedy", ["384Mi", "768Mi"], "oom_killed")
    greedy = Client().zen_store.get_run_step(run.steps["greedy"].id)
    assert greedy.status is ExecutionStatus.FAILED
    assert greedy.exception_info is not None
    assert "max_memory" in greedy.exception_info.message
    publish = run.steps.get("publish")
    assert publish is None or publish.status is not ExecutionStatus.COMPLETED
    # The CLI reads the same facts back from the store.
    said = CliRunner().invoke(cli_runs.explain, [run.name, "greedy"])
    assert said.exit_code == 0, said.output
    assert "768Mi is already its max_memory" in said.output
    assert 'max_memory="1536Mi"' in said.output
    whole = CliRunner().invoke(cli_runs.explain, ["cap_hit"])  # a pipeline name: its last run
    assert "`publish` never started" in whole.output or "`publish` was" in whole.output


def test_cap_hit_does_not_call_another_outcome_expected(example: Example) -> None:
    ran = example("cap_hit.py", OOM_EXAMPLE_GREEDY_MIB="20")  # fits: no cap is hit
    assert ran.run.status is ExecutionStatus.COMPLETED
    assert ran.proc.returncode != 0
    assert "failed as expected" not in ran.output
    assert "should have hit its cap" in ran.output
