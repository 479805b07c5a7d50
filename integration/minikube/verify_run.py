"""Check a finished run in the ZenML store: every step run ended, and ended as expected.

    python integration/minikube/verify_run.py --pipeline oom_demo --status completed \
        --first-attempt train_0 --escalated train_1

Exit 0 when the run matches, 1 with one line per problem otherwise. Reads only the store
(``zenml.client.Client``), so it needs no cluster rights.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zenml.client import Client

# The run metadata key where the orchestrator stores a step's attempts (orchestrators/store_sync).
HISTORY_KEY = "oom_attempts"


def problems(run: Any, status: str, escalated: list[str], first_attempt: list[str]) -> list[str]:
    """What is wrong with ``run``; empty when everything is as expected."""
    found = []
    if run.status.value != status:
        found.append(f"run `{run.name}` is {run.status.value}, expected {status}")
    # Every version of every step run, not only the latest: none may be left open.
    for step_run in Client().list_run_steps(pipeline_run_id=run.id, size=1000).items:
        if not step_run.status.is_finished:
            found.append(f"step run {step_run.name} (id {step_run.id}) is {step_run.status.value}")
    for name in escalated + first_attempt:
        step_run = run.steps.get(name)
        if step_run is None:
            found.append(f"step {name} has no step run")
            continue
        history = step_run.run_metadata.get(HISTORY_KEY) or []
        outcomes = [row.get("outcome") for row in history]
        limits = [row.get("memory_limit") for row in history]
        if name in escalated and (len(history) < 2 or outcomes[0] != "oom_killed"):
            found.append(f"step {name} was not escalated after an OOM kill: {outcomes}")
        elif name in first_attempt and outcomes != ["succeeded"]:
            found.append(f"step {name} did not succeed on its first attempt: {outcomes}")
        print(f"{name}: {' -> '.join(map(str, limits))} ({', '.join(map(str, outcomes))})")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", required=True, help="check the last run of this pipeline")
    parser.add_argument("--status", default="completed", help="the run's expected status")
    parser.add_argument(
        "--escalated", action="append", default=[], help="a step that needed an OOM retry"
    )
    parser.add_argument(
        "--first-attempt", action="append", default=[], help="a step that fitted at once"
    )
    args = parser.parse_args()
    run = Client().get_pipeline(args.pipeline).last_run
    found = problems(run, args.status, args.escalated, args.first_attempt)
    for problem in found:
        print(f"FAIL: {problem}")
    if not found:
        print(f"OK: run `{run.name}` is {run.status.value} and every step run ended as expected")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
