"""`zenml-oom cluster ...`: run the local cluster in the foreground."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click
import yaml

from .kubeconfig import DEFAULT_CONTEXT, KubeconfigInUse, kubeconfig_lock, write_kubeconfig
from .options import check_cpus, check_memory, check_writable_file

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _kubeconfig(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """Refuse to overwrite a kubeconfig that is not a local cluster's (say ~/.kube/config).

    A leftover of ours (one `oom-local` context on 127.0.0.1, e.g. from a crashed run) is fine.
    """
    check_writable_file(value)
    if not value.exists():
        return value
    try:
        config = yaml.safe_load(value.read_text()) or {}
        contexts = [c.get("name") for c in config.get("contexts") or []]
        servers = [c["cluster"]["server"] for c in config.get("clusters") or []]
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError):
        contexts, servers = [], []
    ours = contexts == [DEFAULT_CONTEXT] and all(
        str(s).startswith("http://127.0.0.1:") for s in servers
    )
    if not ours:
        raise click.BadParameter(
            f"{value} exists and is not a local-cluster kubeconfig; choose another path"
        )
    return value


def _remove_if_unchanged(path: Path, written: str | None) -> None:
    """Remove the kubeconfig we wrote (it points at a dead port now), never someone else's."""
    with contextlib.suppress(OSError):
        if written is not None and path.read_text() == written:
            path.unlink()


@click.group(name="cluster")
def cluster() -> None:
    """Run a local Kubernetes cluster whose pods are really OOM-killed."""


@cluster.command(name="up")
@click.option(
    "--kubeconfig",
    "kubeconfig",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_kubeconfig,
    help="Where to write the kubeconfig (context `oom-local`) once the cluster is ready.",
)
@click.option(
    "--memory",
    default="8Gi",
    show_default=True,
    callback=check_memory,
    help="Allocatable memory of the node: whole bytes from 256Mi to 64Ti, e.g. 8Gi.",
)
@click.option(
    "--cpus",
    default="2",
    show_default=True,
    callback=check_cpus,
    help="Allocatable CPUs of the node (above 0, at most 1024).",
)
def up(kubeconfig: Path, memory: str, cpus: float) -> None:
    """Start the local cluster in the foreground until SIGINT (Ctrl+C) or SIGTERM.

    The kubeconfig appears once the cluster is ready (wait for the file) and is removed when
    the cluster stops.
    \f

    Args:
        kubeconfig: Path of the kubeconfig to write; removed again on stop.
        memory: Allocatable memory of the node.
        cpus: Allocatable CPUs of the node.
    """
    with contextlib.ExitStack() as held:
        try:
            crashed = held.enter_context(kubeconfig_lock(kubeconfig))
        except KubeconfigInUse as err:
            raise click.BadParameter(str(err), param_hint="'--kubeconfig'") from None
        except OSError as err:
            raise click.BadParameter(
                f"cannot create {err.filename}: {err.strerror}", param_hint="'--kubeconfig'"
            ) from None
        if crashed:
            _say(f"Took over the lock left by pid {crashed}, which is no longer running.")
        _run(kubeconfig, memory, cpus)


def _say(message: str) -> None:
    """Print to stderr; a closed pipe (`cluster up 2>&1 | head`, then Ctrl+C) must not stop
    the cleanup that follows."""
    with contextlib.suppress(OSError):
        click.echo(message, err=True)


def _run(kubeconfig: Path, memory: str, cpus: float) -> None:
    from .cluster import LocalCluster

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only set a flag: stopping from inside a handler could interrupt a half-done start.
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    local = LocalCluster(memory=memory, cpus=cpus)
    written: str | None = None
    # A crashed run's kubeconfig must not look like "ready" to whoever waits for the file.
    kubeconfig.unlink(missing_ok=True)
    try:
        local.start()
        if not stop.is_set():
            write_kubeconfig(kubeconfig, local.url, context=DEFAULT_CONTEXT)
            written = kubeconfig.read_text()
            try:
                click.echo(
                    f"Local cluster ready at {local.url} (node memory {memory}, cpus {cpus:g}).\n"
                    f"kubeconfig: {kubeconfig} (context {DEFAULT_CONTEXT})\n"
                    f"Try: kubectl --kubeconfig {kubeconfig} get nodes\n"
                    "Press Ctrl+C to stop.",
                )
            except BrokenPipeError:
                _say("The output pipe was closed: stopping.")
                stop.set()
            while not stop.wait(3600):
                pass
    finally:
        _say("Stopping the local cluster...")
        local.stop()
        _remove_if_unchanged(kubeconfig, written)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say("Local cluster stopped.")
    _quiet_broken_stdout()


def _quiet_broken_stdout() -> None:
    """Python's exit flush would print a BrokenPipeError traceback on a closed stdout."""
    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
