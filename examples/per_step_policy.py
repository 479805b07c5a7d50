"""A policy per step: each step says how it may grow, and the others are left alone.

- ``load`` needs little and sets nothing: it gets the pipeline's (here: the component's or the
  default) policy.
- ``embed`` is the memory-hungry one. It starts at ``ResourceSettings(memory=...)`` (the
  flavor uses it as the first attempt's memory instead of ignoring it) and grows by 1.5x, but
  at least 256Mi per retry, up to 2Gi.
- ``score`` must never be retried with more memory (say, it is cheap to fix and expensive to
  repeat): ``max_oom_retries=0``. It fits, so it succeeds on its first attempt.

Run it on a stack with the ``oom_kubernetes`` orchestrator::

    python examples/per_step_policy.py

``OOM_EXAMPLE_EMBED_MIB`` sets what ``embed`` allocates (default 700: 384Mi -> 640Mi -> 960Mi).
``ZENML_OOM_RUN_CONFIG`` may name a ZenML run config YAML (e.g. the step image).
"""

from __future__ import annotations

import os

from workload import use_memory
from zenml import pipeline, step
from zenml.config import ResourceSettings

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorSettings

EMBED_MIB = int(os.environ.get("OOM_EXAMPLE_EMBED_MIB", "700"))


@step
def load() -> int:
    return use_memory(50)


@step(
    settings={
        "resources": ResourceSettings(memory="384MiB"),
        "orchestrator": OOMKubernetesOrchestratorSettings(
            memory_multiplier=1.5, memory_increment="256Mi", max_memory="2Gi"
        ),
    }
)
def embed(rows: int, mib: int) -> int:
    return use_memory(mib) + rows


@step(settings={"orchestrator": OOMKubernetesOrchestratorSettings(max_oom_retries=0)})
def score(size: int) -> float:
    use_memory(50)
    return size / 1000


@pipeline(enable_cache=False)
def per_step_policy() -> None:
    # A parameter, read here: the pods do not see this script's environment.
    score(embed(load(), EMBED_MIB))


if __name__ == "__main__":
    per_step_policy.with_options(config_path=os.environ.get("ZENML_OOM_RUN_CONFIG"))()
