"""One policy for the whole pipeline, and a step that changes one field of it.

Pipeline settings are the default for every step. A step's own settings are merged over them
field by field: ``report`` below sets only ``max_memory`` and keeps the pipeline's
``initial_memory`` and ``memory_multiplier``. (The orchestrator component's own values, e.g.
``zenml orchestrator update NAME --memory_multiplier=3``, are the default under both.)

Run it on a stack with the ``oom_kubernetes`` orchestrator::

    python examples/pipeline_default_policy.py

``OOM_EXAMPLE_FEATURES_MIB`` sets what ``features`` allocates (default 500: 320Mi -> 960Mi).
``ZENML_OOM_RUN_CONFIG`` may name a ZenML run config YAML (e.g. the step image).
"""

from __future__ import annotations

import os

from workload import use_memory
from zenml import pipeline, step

from zenml_oom_orchestrator.flavors import OOMKubernetesOrchestratorSettings

FEATURES_MIB = int(os.environ.get("OOM_EXAMPLE_FEATURES_MIB", "500"))

PIPELINE_POLICY = OOMKubernetesOrchestratorSettings(
    initial_memory="320Mi",  # every step starts here...
    memory_multiplier=3,  # ...and triples after an OOM kill
    max_memory="1Gi",
    max_oom_retries=2,
)


@step
def features(mib: int) -> int:
    return use_memory(mib)


@step(settings={"orchestrator": OOMKubernetesOrchestratorSettings(max_memory="512Mi")})
def report(size: int) -> str:
    use_memory(20)
    return f"{size} MiB of features"


@pipeline(enable_cache=False, settings={"orchestrator": PIPELINE_POLICY})
def pipeline_default_policy() -> None:
    # A parameter, read here: the pods do not see this script's environment.
    report(features(FEATURES_MIB))


if __name__ == "__main__":
    pipeline_default_policy.with_options(config_path=os.environ.get("ZENML_OOM_RUN_CONFIG"))()
