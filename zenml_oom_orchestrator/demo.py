"""`zenml-oom demo`: the whole story on this machine, in temporary directories.

It starts the local cluster and a local ZenML server, registers the flavor and a stack, runs
``examples/oom_pipeline.py`` exactly as a user would (``python oom_pipeline.py``), prints each
attempt pod's progress as it happens (from the cluster), and ends with the attempt table and
the run's status (from the ZenML store). Everything it started is stopped, and the temporary
directory removed, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import click

from .localcluster.options import check_memory

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENV_NO_ZENML_COLOURS = "ZENML_LOGGING_COLORS_DISABLED"  # zenml.constants, not imported yet
PIPELINE_NAME = "oom_demo"  # the @pipeline in examples/oom_pipeline.py
STACK = "oom-demo"
# The demo's sizes: one step fits, one needs one retry, one needs two (see the example).
DEFAULT_ENV = {
    "OOM_DEMO_SIZES_MIB": "150,600,1200",
    "OOM_DEMO_START": "512Mi",
    "OOM_DEMO_CAP": "4Gi",
    "OOM_DEMO_HOLD_SECONDS": "2",
}


def pod_progress(pod: Mapping[str, Any]) -> tuple[str, int, str, str] | None:
    """(step, attempt, memory limit, state) of an attempt pod; None for any other pod.

    The state is what ``kubectl get pods`` would show: Pending, Running, or the main
    container's termination reason (OOMKilled, Completed, Error).
    """
    from .supervisor import naming

    meta = pod.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    step = annotations.get(naming.ANN_ZENML_STEP)
    if step is None or naming.LABEL_ATTEMPT not in labels:
        return None  # the orchestrator pod
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    limit = annotations.get(naming.ANN_MEMORY_LIMIT) or (
        (containers[0].get("resources") or {}).get("limits", {}).get("memory", "?")
    )
    status = pod.get("status") or {}
    state = str(status.get("phase") or "Pending")
    if state == "Pending":
        state += _unscheduled(status)
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            state = str(terminated.get("reason") or f"exit {terminated.get('exitCode')}")
        break
    return step, int(labels[naming.LABEL_ATTEMPT]), str(limit), state


# What `zenml login --local` imports: ZenML's "server" extra (which includes "local", the
# SQL store). A plain `pip install zenml-oom-orchestrator` has neither.
SERVER_MODULES = ("fastapi", "uvicorn", "jwt", "multipart", "sqlalchemy", "sqlmodel", "alembic")


def missing_server_modules() -> list[str]:
    """The modules of ZenML's server extra that cannot be imported here."""
    import importlib

    missing = []
    for module in SERVER_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def require_server_extra() -> None:
    """Refuse before anything starts when the local ZenML server could not run."""
    missing = missing_server_modules()
    if missing:
        raise click.ClickException(
            "the demo runs a local ZenML server, which needs ZenML's server extra (missing: "
            f"{', '.join(missing)}). Install it with: pip install -e '.[server]'"
        )


def _unscheduled(status: Mapping[str, Any]) -> str:
    """`` (Unschedulable: 0/1 nodes are available: 1 Insufficient memory.)`` while the
    scheduler cannot place the pod, as `kubectl describe pod` says it; else empty."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f" ({condition.get('reason')}: {condition.get('message')})"
    return ""


# A container that never ran its program: the runtime could not start it (the kubelet's words).
_START_FAILURES = ("StartError", "RunContainerError", "CreateContainerError", "ContainerCannotRun")


def start_failures(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per container of any pod (the orchestrator's too) that could not start."""
    lines: dict[str, None] = {}
    for pod in pods:
        status = pod.get("status") or {}
        for c in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            for state in (c.get("state") or {}, c.get("lastState") or {}):
                body = state.get("terminated") or state.get("waiting") or {}
                if body.get("reason") in _START_FAILURES:
                    name = (pod.get("metadata") or {}).get("name")
                    lines[
                        f"Pod {name}: container {c.get('name')} could not start "
                        f"({body['reason']}): {body.get('message') or 'no message'}"
                    ] = None
                    break
    return list(lines)


class ProgressPrinter:
    """Prints a line whenever an attempt pod changes state: step x attempt x memory x state."""

    def __init__(self, echo: Any = click.echo) -> None:
        self.echo = echo
        self.started = time.monotonic()
        self.seen: dict[tuple[str, int], str] = {}

    def update(self, pods: list[Mapping[str, Any]]) -> None:
        # In the order the cluster recorded the changes (resourceVersion), not by name: a
        # step that started after another finished must print after it.
        ordered = sorted(pods, key=_resource_version)
        for step, attempt, limit, state in filter(None, map(pod_progress, ordered)):
            if self.seen.get((step, attempt)) == state:
                continue
            self.seen[(step, attempt)] = state
            elapsed = time.monotonic() - self.started
            self.echo(f"  {elapsed:6.1f}s  {step:<12} attempt {attempt}  {limit:>7}  {state}")


def _resource_version(pod: Mapping[str, Any]) -> int:
    version = str((pod.get("metadata") or {}).get("resourceVersion") or "0")
    return int(version) if version.isdigit() else 0


@contextlib.contextmanager
def _step(number: int, text: str) -> Iterator[None]:
    click.secho(f"[{number}/5] {text}...", bold=True)
    started = time.monotonic()
    yield
    click.echo(f"      done in {time.monotonic() - started:.1f}s")


def _run_pipeline(env: dict[str, str], log_path: Path, cluster: Any, namespace: str) -> int:
    """`python oom_pipeline.py` in a subprocess, printing pod progress until it exits."""
    printer = ProgressPrinter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "oom_pipeline.py"],
            cwd=EXAMPLES,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while proc.poll() is None:
                pods, _ = cluster.store.list("pods", namespace)
                printer.update(pods)
                time.sleep(0.5)
            printer.update(cluster.store.list("pods", namespace)[0])
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    return proc.returncode


@click.command(name="demo")
@click.option(
    "--memory",
    default="6Gi",
    show_default=True,
    callback=check_memory,
    help="Allocatable memory of the local cluster's node: whole bytes from 256Mi to 64Ti.",
)
@click.option("--keep", is_flag=True, help="Keep the temporary directory (logs, ZenML config).")
def demo(memory: str, keep: bool) -> None:
    """Run the OOM demo on a local cluster, then clean up.

    Starts a local cluster (pods are real processes in memory cgroups, so OOM kills are real)
    and a local ZenML server, registers the oom_kubernetes flavor and a stack, runs
    examples/oom_pipeline.py and shows each attempt as it happens.
    """
    if not (EXAMPLES / "oom_pipeline.py").exists():
        raise click.ClickException(
            f"{EXAMPLES / 'oom_pipeline.py'} not found: run the demo from a clone of the "
            "repository (pip install -e .)"
        )
    require_server_extra()
    if plain_output(os.environ, sys.stdout):
        # ZenML's log formatter reads this when ZenML is first imported (below, not yet).
        os.environ[ENV_NO_ZENML_COLOURS] = "true"
        click.get_current_context().color = False
    tmp = Path(tempfile.mkdtemp(prefix="zenml-oom-demo-"))
    # SIGTERM unwinds like Ctrl+C, so the cluster, its pods and the server are stopped too.
    _STOPPING.clear()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = _demo(tmp, memory)
    finally:
        if keep:
            click.echo(f"Kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.exit(code)


def plain_output(env: Mapping[str, str], stream: Any) -> bool:
    """No colour when the output is not a terminal (a pipe, a log file) or NO_COLOR is set
    (https://no-color.org): raw escape sequences are noise there."""
    return bool(env.get("NO_COLOR")) or not getattr(stream, "isatty", lambda: False)()


_STOPPING = threading.Event()  # the demo is stopping what it started


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _STOPPING.is_set():  # cut short, the stop would leave the server or pods behind
        click.echo(f"(signal {signum}: still stopping, then exiting)", err=True)
        return
    raise KeyboardInterrupt(f"signal {signum}")


class _Cleanup(contextlib.ExitStack):
    """Stops what the demo started, on success, failure or a signal; signals that arrive
    meanwhile wait for it (a SIGTERM during the stop once left the ZenML server running)."""

    def __exit__(self, *exc: Any) -> bool:
        _STOPPING.set()
        click.echo("Stopping the local cluster and the ZenML server...")
        return bool(super().__exit__(*exc))


def _demo(tmp: Path, memory: str) -> int:
    from . import local_stack as stack
    from .localcluster.cluster import LocalCluster
    from .testing.zenml_server import local_zen_server

    with _Cleanup() as cleanup:
        with _step(1, "Starting a local ZenML server"):
            server = cleanup.enter_context(local_zen_server(tmp / "zenml-config"))
            # Before the cluster starts: its pods inherit this process's environment.
            server.activate_in_process()
            click.echo(f"      {server.url} (config in {server.config_path})")
        with _step(2, f"Starting the local cluster (one node, {memory})"):
            cluster = cleanup.enter_context(
                LocalCluster(memory=memory, cpus=2, work_dir=tmp / "cluster")
            )
            assert cluster.store is not None and cluster.kubeconfig_path is not None
            cluster.store.create("namespaces", {"metadata": {"name": stack.NAMESPACE}})
            stack.use_kubeconfig(cluster.kubeconfig_path)
        with _step(3, "Registering the oom_kubernetes flavor and a stack (zenml-oom local-stack)"):
            stack.register_local_stack(STACK)
            from zenml.client import Client

            stack_id = str(Client().get_stack(STACK).id)
        log_path = tmp / "pipeline.log"
        sizes = ", ".join(f"{s} MiB" for s in DEFAULT_ENV["OOM_DEMO_SIZES_MIB"].split(","))
        click.secho(
            f"[4/5] Running examples/oom_pipeline.py: steps needing {sizes}, all starting at "
            f"{DEFAULT_ENV['OOM_DEMO_START']}...",
            bold=True,
        )
        env = {
            **server.env(),
            **DEFAULT_ENV,
            "KUBECONFIG": str(cluster.kubeconfig_path),
            "ZENML_ACTIVE_STACK_ID": stack_id,
        }
        returncode = _run_pipeline(env, log_path, cluster, stack.NAMESPACE)
        click.secho("[5/5] Result", bold=True)
        for line in start_failures(cluster.store.list("pods", stack.NAMESPACE)[0]):
            click.secho(line, fg="red")
        result = _report(returncode, log_path)
    return result


def _report(returncode: int, log_path: Path) -> int:
    from zenml.client import Client

    from .orchestrators.status_view import attempt_table_for_run

    try:
        last = Client().get_pipeline(PIPELINE_NAME).last_run
    except KeyError:
        last = None
    if last is None:
        click.echo(log_path.read_text()[-4000:])
        click.secho(f"The pipeline did not start (exit code {returncode}).", fg="red")
        return 1
    run = Client().get_pipeline_run(last.id)
    click.echo(attempt_table_for_run(run))
    ok = run.status.value == "completed"
    click.secho(f"Run `{run.name}` ended {run.status.value.upper()}.", fg="green" if ok else "red")
    if not ok:
        # The server goes away with the demo, so explain now rather than name the command.
        from .cli_runs import run_error, step_facts
        from .explain import explain_run

        click.echo(explain_run(run.name, run.status.value, step_facts(run), run_error(run)))
        click.echo(f"The pipeline's own output is in {log_path} (kept with --keep).")
    return 0 if ok and returncode == 0 else 1
