"""Every script in examples/ runs as a user runs it (``python examples/X.py``) on the local cluster.

It lives next to the flavor's end-to-end tests to share their session fixtures (one ZenML
server, one small cluster, the registered stack): a twin server in another folder would fight
over the process-wide ZenML client.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from zenml.client import Client
from zenml.enums import ExecutionStatus
from zenml.models import PipelineRunResponse

from zenml_oom_orchestrator import cli_runs
from zenml_oom_orchestrator.localcluster.cluster import LocalCluster
from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY, OPEN_STATUSES
from zenml_oom_orchestrator.testing.stack import no_build_docker_settings
from zenml_oom_orchestrator.testing.zenml_server import LocalZenServer

pytestmark = [pytest.mark.zenml, pytest.mark.cluster]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VERIFY = EXAMPLES.parent / "integration" / "minikube" / "verify_run.py"
# The demo scaled to the 2Gi test node: fits at once, one retry, two retries.
DEMO_ENV = {
    "OOM_DEMO_SIZES_MIB": "40,300,600",
    "OOM_DEMO_START": "320Mi",
    "OOM_DEMO_CAP": "1280Mi",
    "OOM_DEMO_HOLD_SECONDS": "0.5",
}


def run_config(tmp_path: Path) -> Path:
    """What a local cluster needs instead of an image: no build, no code upload, and the
    examples folder importable in the pods (they run this machine's Python)."""
    docker = no_build_docker_settings().model_dump(exclude_defaults=True)
    env = [{"name": "PYTHONPATH", "value": str(EXAMPLES)}]
    config = {
        "settings": {
            "docker": docker,
            "orchestrator": {
                "pod_settings": {"env": env},
                "orchestrator_pod_settings": {"env": env},
            },
        }
    }
    path = tmp_path / "run-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_example(
    script: str, server: LocalZenServer, stack: str, tmp_path: Path, **env: str
) -> PipelineRunResponse:
    """``python examples/<script>`` against the test server and stack; its last run."""
    full_env = {
        **server.env(),
        "KUBECONFIG": os.environ["KUBECONFIG"],
        "ZENML_ACTIVE_STACK_ID": str(Client().get_stack(stack).id),
        "ZENML_OOM_RUN_CONFIG": str(run_config(tmp_path)),
        **env,
    }
    proc = subprocess.run(
        [sys.executable, script],
        cwd=EXAMPLES,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    pipeline = Path(script).stem if script != "oom_pipeline.py" else "oom_demo"
    run = Client().get_pipeline(pipeline).last_run
    assert run is not None
    return Client().get_pipeline_run(run.id)


Example = Callable[..., PipelineRunResponse]


@pytest.fixture
def example(
    zenml_server: LocalZenServer, oom_stack: str, small_cluster: LocalCluster, tmp_path: Path
) -> Example:
    """``example("X.py", **env)`` runs examples/X.py on the session's stack."""
    return functools.partial(run_example, server=zenml_server, stack=oom_stack, tmp_path=tmp_path)


def attempts(run: PipelineRunResponse, step: str) -> list[tuple[Any, Any]]:
    history = run.steps[step].run_metadata.get(HISTORY_KEY) or []
    return [(row["memory_limit"], row["outcome"]) for row in history]


def open_step_runs(run: PipelineRunResponse) -> list[str]:
    page = Client().list_run_steps(pipeline_run_id=run.id, size=1000)
    return [f"{s.name}={s.status.value}" for s in page.items if s.status in OPEN_STATUSES]


def test_oom_pipeline_escalates_every_step_to_success(
    example: Example, zenml_server: LocalZenServer, oom_stack: str
) -> None:
    run = example("oom_pipeline.py", **DEMO_ENV)
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
        env={**zenml_server.env(), "ZENML_ACTIVE_STACK_ID": str(Client().get_stack(oom_stack).id)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    table = CliRunner().invoke(cli_runs.attempts, [run.name])
    assert table.exit_code == 0, table.output
    assert len([line for line in table.output.splitlines() if line.startswith("train_2")]) == 3


def test_per_step_policy(example: Example) -> None:
    run = example("per_step_policy.py")
    assert run.status is ExecutionStatus.COMPLETED
    assert open_step_runs(run) == []
    # ResourceSettings(memory="384MiB") starts it; 1.5x but at least +256Mi; under 2Gi.
    assert attempts(run, "embed") == [
        ("384Mi", "oom_killed"),
        ("640Mi", "oom_killed"),
        ("960Mi", "succeeded"),
    ]
    assert [outcome for _, outcome in attempts(run, "score")] == ["succeeded"]


def test_pipeline_default_policy(example: Example) -> None:
    run = example("pipeline_default_policy.py")
    assert run.status is ExecutionStatus.COMPLETED
    assert open_step_runs(run) == []
    assert attempts(run, "features") == [("320Mi", "oom_killed"), ("960Mi", "succeeded")]
    # The step's own max_memory, the pipeline's initial_memory.
    assert attempts(run, "report") == [("320Mi", "succeeded")]


def test_cap_hit_fails_clearly_and_explain_names_the_setting(example: Example) -> None:
    run = example("cap_hit.py")
    assert run.status is ExecutionStatus.FAILED
    assert open_step_runs(run) == []
    assert attempts(run, "greedy") == [("384Mi", "oom_killed"), ("768Mi", "oom_killed")]
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
