"""`python -m zenml_oom_orchestrator.bench.learning`: the demo pipeline run several times in a
row, with learned start memory on and off; prints the OOM kills and wall time of each run.

It starts what ``zenml-oom demo`` starts (a local ZenML server, the local cluster, the flavor
and a stack) in a temporary directory, then runs ``examples/oom_pipeline.py`` as a user would,
``--runs`` times with ``learn_start_memory`` on (pipeline ``oom_demo_learning_on``) and as many
with it off (``oom_demo_learning_off``). The integration tests run the same
:func:`run_demo` on their session's server and cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STACK = "oom-learning-bench"
# The demo's default sizes (fits, one retry, two retries), starting at 512Mi.
DEMO_ENV = {
    "OOM_DEMO_SIZES_MIB": "150,600,1200",
    "OOM_DEMO_START": "512Mi",
    "OOM_DEMO_CAP": "4Gi",
    "OOM_DEMO_HOLD_SECONDS": "2",
}


@dataclass
class DemoRun:
    """One run of the demo pipeline, as the store has it."""

    run: Any  # PipelineRunResponse
    seconds: float
    output: str

    def attempts(self, step: str) -> list[tuple[str, str]]:
        """(memory_limit, outcome) of each attempt of ``step``."""
        from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY

        step_run = self.run.steps.get(step)
        rows = step_run.run_metadata.get(HISTORY_KEY) if step_run is not None else None
        return [(r["memory_limit"], r["outcome"]) for r in rows or []]

    def first_attempt(self, step: str) -> dict[str, Any]:
        from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY

        return dict(self.run.steps[step].run_metadata[HISTORY_KEY][0])

    @property
    def oom_kills(self) -> int:
        return sum(
            outcome in ("oom_killed", "evicted")
            for name in self.run.steps
            for _, outcome in self.attempts(name)
        )


def write_run_config(
    path: Path, pythonpath: Path, orchestrator: Mapping[str, Any], image: str | None = None
) -> Path:
    """Extra orchestrator settings (e.g. learning off), and the code: with no ``image``, no
    image build or code upload (the local cluster runs this Python) and the example's folder
    importable in the pods; with one, that image unbuilt, and ZenML uploads the example's folder
    to the artifact store for the pods to download (a real cluster)."""
    import yaml

    from zenml_oom_orchestrator.testing.stack import no_build_docker_settings

    if image is not None:
        docker: dict[str, Any] = {"parent_image": image, "skip_build": True}
        settings: dict[str, Any] = {}
    else:
        docker = no_build_docker_settings().model_dump(exclude_defaults=True)
        env = [{"name": "PYTHONPATH", "value": str(pythonpath)}]
        settings = {"pod_settings": {"env": env}, "orchestrator_pod_settings": {"env": env}}
    config = {"settings": {"docker": docker, "orchestrator": {**settings, **orchestrator}}}
    path.write_text(yaml.safe_dump(config))
    return path


def run_demo(
    env: Mapping[str, str],
    pipeline: str,
    workdir: Path,
    learn: bool | None = None,
    examples: Path = EXAMPLES,
    timeout: float = 600,
    image: str | None = None,
) -> DemoRun:
    """``python oom_pipeline.py`` from ``examples`` as pipeline ``pipeline``; its run.

    ``env`` holds the server's and stack's variables and the demo's sizes; ``learn`` sets
    ``learn_start_memory`` in the run config (``None``: the default); ``image``: the step image
    of a real cluster (see :func:`write_run_config`).
    """
    from zenml.client import Client

    extra = {} if learn is None else {"learn_start_memory": learn}
    config_path = workdir / f"run-config-{time.monotonic_ns()}.yaml"
    config = write_run_config(config_path, examples, extra, image)
    full_env = {**env, "OOM_DEMO_PIPELINE": pipeline, "ZENML_OOM_RUN_CONFIG": str(config)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "oom_pipeline.py"],
        cwd=examples,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    last = Client().get_pipeline(pipeline).last_run
    if last is None:
        raise RuntimeError(f"pipeline {pipeline} did not run:\n{proc.stdout}\n{proc.stderr}")
    return DemoRun(Client().get_pipeline_run(last.id), seconds, proc.stdout + proc.stderr)


def _bench(tmp: Path, runs: int, memory: str) -> list[tuple[str, int, DemoRun]]:
    from zenml.client import Client

    from zenml_oom_orchestrator.localcluster.cluster import LocalCluster
    from zenml_oom_orchestrator.testing import stack
    from zenml_oom_orchestrator.testing.zenml_server import local_zen_server

    results = []
    with contextlib.ExitStack() as cleanup:
        server = cleanup.enter_context(local_zen_server(tmp / "zenml-config"))
        server.activate_in_process()
        cluster = cleanup.enter_context(LocalCluster(memory=memory, cpus=2, work_dir=tmp / "c"))
        assert cluster.store is not None and cluster.kubeconfig_path is not None
        cluster.store.create("namespaces", {"metadata": {"name": stack.NAMESPACE}})
        stack.use_kubeconfig(cluster.kubeconfig_path)
        server.cli("orchestrator", "flavor", "register", stack.FLAVOR_SOURCE)
        stack.register_stack(STACK, STACK, "oom_kubernetes")
        env = {
            **server.env(),
            **DEMO_ENV,
            "KUBECONFIG": str(cluster.kubeconfig_path),
            "ZENML_ACTIVE_STACK_ID": str(Client().get_stack(STACK).id),
        }
        for learn in (True, False):
            label = "on" if learn else "off"
            for number in range(1, runs + 1):
                result = run_demo(env, f"oom_demo_learning_{label}", tmp, learn=learn)
                results.append((label, number, result))
                print(_row(label, number, result), flush=True)
    return results


def _row(label: str, number: int, result: DemoRun) -> str:
    firsts = " ".join(
        f"{name}={result.attempts(name)[0][0] if result.attempts(name) else '-'}"
        for name in sorted(result.run.steps)
    )
    attempts = sum(len(result.attempts(name)) for name in result.run.steps)
    return (
        f"| {label:<3} | {number} | {result.run.status.value:<9} | {result.oom_kills} | "
        f"{attempts} | {result.seconds:6.1f} s | {firsts} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zenml_oom_orchestrator.bench.learning")
    parser.add_argument("--runs", type=int, default=3, help="runs in a row, per setting")
    parser.add_argument("--memory", default="6Gi", help="the local cluster node's memory")
    args = parser.parse_args(argv)
    print(f"The demo pipeline ({DEMO_ENV}), {args.runs} runs in a row, learning on, then off.")
    print("| learning | run | status | OOM kills | attempts | wall time | first attempt's memory |")
    print("|---|---:|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="zenml-oom-learning-") as tmp:
        results = _bench(Path(tmp), args.runs, args.memory)
    return 0 if all(r.run.status.value == "completed" for _, _, r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
