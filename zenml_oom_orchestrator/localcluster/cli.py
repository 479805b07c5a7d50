"""`zenml-oom cluster ...`: run the local cluster in the foreground."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from .kubeconfig import write_kubeconfig
from .validation import parse_quantity

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _memory(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_quantity(value)
    except ValueError:
        raise click.BadParameter(f"not a Kubernetes quantity: {value!r}") from None
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
    help="Where to write the kubeconfig (context `oom-local`) once the cluster is ready.",
)
@click.option(
    "--memory",
    default="8Gi",
    show_default=True,
    callback=_memory,
    help="Allocatable memory of the node, as a Kubernetes quantity.",
)
@click.option(
    "--cpus",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Allocatable CPUs of the node.",
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
    from .cluster import CONTEXT, LocalCluster

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only set a flag: stopping from inside a handler could interrupt a half-done start.
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    local = LocalCluster(memory=memory, cpus=cpus)
    written: str | None = None
    try:
        local.start()
        if not stop.is_set():
            write_kubeconfig(kubeconfig, local.url, context=CONTEXT)
            written = kubeconfig.read_text()
            click.echo(
                f"Local cluster ready at {local.url} (node memory {memory}, cpus {cpus:g}).\n"
                f"kubeconfig: {kubeconfig} (context {CONTEXT})\n"
                f"Try: kubectl --kubeconfig {kubeconfig} get nodes\n"
                "Press Ctrl+C to stop.",
            )
            while not stop.wait(3600):
                pass
    finally:
        click.echo("Stopping the local cluster...", err=True)
        local.stop()
        _remove_if_unchanged(kubeconfig, written)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("Local cluster stopped.", err=True)
