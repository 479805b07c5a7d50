"""The `zenml-oom` command: a thin registry of command groups.

Each group lives next to the code it drives and is registered here, so this module stays
cheap to import (no ZenML or kubernetes import until a command needs it).
"""

from __future__ import annotations

import click

from . import cli_runs, demo, local_stack
from .localcluster.cli import cluster


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run ZenML steps on Kubernetes, retrying out-of-memory kills with more memory."""


cli.add_command(cluster)
for command in (demo.demo, local_stack.local_stack, cli_runs.attempts, cli_runs.explain):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point (`zenml-oom`)."""
    cli()


if __name__ == "__main__":
    main()
