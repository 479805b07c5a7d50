"""The demo: parallel steps that need more memory than they start with, escalated to success.

Every ``train_*`` step starts with ``OOM_DEMO_START`` of memory (request = limit). The ones
that allocate more are OOM-killed by the kernel; the orchestrator reads ``OOMKilled`` from the
pod, doubles the memory (the default ``memory_multiplier``) and runs the step again, up to
``max_memory``. ``evaluate`` starts once all of them succeeded.

With ZenML's stock ``kubernetes`` orchestrator the same pipeline retries (if at all) with the
same memory, and a killed step can stay RUNNING in the store forever.

Run it on a stack with the ``oom_kubernetes`` orchestrator::

    python examples/oom_pipeline.py

Sizes come from the environment, so tests and small machines can scale them:

- ``OOM_DEMO_SIZES_MIB``: MiB each ``train_*`` step allocates, comma-separated
  (default ``150,600,1200``: fits, needs one retry, needs two);
- ``OOM_DEMO_START``: the first attempt's memory (default ``512Mi``; leave room for ZenML's
  own ~150 MiB, so that a first attempt dies in the step's allocation, not in ZenML's import);
- ``OOM_DEMO_CAP``: ``max_memory`` (default ``4Gi``);
- ``OOM_DEMO_HOLD_SECONDS``: how long each step holds its memory (default 2);
- ``OOM_DEMO_PIPELINE``: the pipeline's name (default ``oom_demo``). A run starts each step at
  the memory it succeeded with in the last runs of the same pipeline (``learn_start_memory``),
  so the second run of ``oom_demo`` has no OOM kill;
- ``OOM_DEMO_GROW_IN_PLACE``: ``true`` to let a running step grow in place (default ``false``:
  the demo shows kills and retries);
- ``ZENML_OOM_RUN_CONFIG``: a ZenML run config YAML, e.g. the step image (see
  ``integration/minikube/run-demo.sh``).
"""

from __future__ import annotations

import os

from workload import use_memory
from zenml import pipeline, step

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorSettings

SIZES_MIB = [int(s) for s in os.environ.get("OOM_DEMO_SIZES_MIB", "150,600,1200").split(",")]
START = os.environ.get("OOM_DEMO_START", "512Mi")
CAP = os.environ.get("OOM_DEMO_CAP", "4Gi")
HOLD_SECONDS = float(os.environ.get("OOM_DEMO_HOLD_SECONDS", "2"))
PIPELINE_NAME = os.environ.get("OOM_DEMO_PIPELINE", "oom_demo")
# The demo shows the kill-and-retry path, so growing a running step in place is off unless
# this says "true" (with it on, a step that thrashes at its limit may be grown instead).
GROW_IN_PLACE = os.environ.get("OOM_DEMO_GROW_IN_PLACE", "false")


@step
def train(mib: int, hold_seconds: float) -> int:
    """Stands in for a step whose memory need you did not know: touches ``mib`` MiB."""
    return use_memory(mib, hold_seconds)


@step
def evaluate() -> str:
    """Runs after every ``train_*`` step succeeded."""
    return "all models trained"


@pipeline(
    name=PIPELINE_NAME,
    enable_cache=False,
    # The pipeline-wide policy: every step starts at START and may grow to CAP.
    settings={
        "orchestrator": OOMKubernetesOrchestratorSettings(
            initial_memory=START, max_memory=CAP, grow_in_place=GROW_IN_PLACE
        )
    },
)
def oom_demo() -> None:
    names = []
    for i, mib in enumerate(SIZES_MIB):
        name = f"train_{i}"
        train(mib, HOLD_SECONDS, id=name)
        names.append(name)
    evaluate(after=names)


if __name__ == "__main__":
    oom_demo.with_options(config_path=os.environ.get("ZENML_OOM_RUN_CONFIG"))()
