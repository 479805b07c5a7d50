"""A step that needs more than its cap allows: it fails, clearly, and nothing hangs.

``greedy`` starts at 384Mi, is OOM-killed, gets 768Mi (its ``max_memory``), is OOM-killed
again, and the orchestrator gives up with a message that names the step, the memory it tried
and what to change. ``publish`` never starts (its step run is STOPPED, shown as skipped), the
run ends FAILED, and no step run is left RUNNING.

    python examples/cap_hit.py
    zenml-oom explain <run name printed above> greedy

``OOM_EXAMPLE_GREEDY_MIB`` sets what ``greedy`` allocates (default 1500).
``ZENML_OOM_RUN_CONFIG`` may name a ZenML run config YAML (e.g. the step image).
"""

from __future__ import annotations

import os

from workload import use_memory
from zenml import pipeline, step

from zenml_oom_orchestrator.flavors import (
    OOMKubernetesOrchestratorSettings,
    PipelineRunFailedError,
)

GREEDY_MIB = int(os.environ.get("OOM_EXAMPLE_GREEDY_MIB", "1500"))


@step(
    settings={
        "orchestrator": OOMKubernetesOrchestratorSettings(
            initial_memory="384Mi", max_memory="768Mi"
        )
    }
)
def greedy(mib: int) -> int:
    return use_memory(mib)


@step
def publish(size: int) -> None:
    print(f"publishing {size} MiB")


@pipeline(enable_cache=False)
def cap_hit() -> None:
    # A parameter, read here: the pods do not see this script's environment.
    publish(greedy(GREEDY_MIB))


if __name__ == "__main__":
    try:
        cap_hit.with_options(config_path=os.environ.get("ZENML_OOM_RUN_CONFIG"))()
    except PipelineRunFailedError as failed:
        # Only the failure this example is about: `greedy` stopped at its cap. Anything else
        # (another step, another reason) is a real error and is raised as it is.
        if "already max_memory" not in failed.failed_steps.get("greedy", ""):
            raise
        print(f"The run failed as expected: {failed.failed_steps['greedy']}")
        print(f"Why, in plain words: zenml-oom explain {failed.run_name} greedy")
    else:
        raise SystemExit(
            "The run completed, but `greedy` should have hit its cap: is the step "
            "given more memory than 768Mi somewhere?"
        )
