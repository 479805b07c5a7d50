"""Make the ZenML server accept one step run per attempt the OOM policy allows.

The server refuses a step's step run once it has ``retry.max_retries + 1`` of them, and reads that
number from the stored snapshot, which is frozen after submission. The one hook that runs before
the snapshot is stored is ``get_docker_builds(snapshot)``, so the orchestrator raises each step's
``retry.max_retries`` there, by the OOM and infrastructure budgets of its policy.

The user's own ``max_retries`` is kept next to it (in the step's ``extra``), because the
supervisor still applies it to app errors. Keeping it also makes the change idempotent: ZenML
calls the hook more than once on the same snapshot, and each call starts from the user's value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zenml.config.retry_config import StepRetryConfig
from zenml.config.step_configurations import Step
from zenml.models import PipelineSnapshotBase

# Key in a step's `extra` under which the submission records what it did.
EXTRA_KEY = "zenml_oom_orchestrator"


def recorded_user_retries(extra: Mapping[str, Any]) -> int | None:
    """The user's own ``retry.max_retries`` as recorded at submission, if it was."""
    record = extra.get(EXTRA_KEY)
    if isinstance(record, Mapping) and "user_max_retries" in record:
        return int(record["user_max_retries"])
    return None


def user_retry_config(step: Step) -> StepRetryConfig | None:
    """The step's retry config as the user wrote it, undoing the submission's raise."""
    retry = step.config.retry
    recorded = recorded_user_retries(step.config.extra)
    if recorded is None:
        return retry
    if recorded == 0 or retry is None:
        return None  # ZenML's max_retries is positive: no retries means no retry config
    return retry.model_copy(update={"max_retries": recorded})


def _raised(step: Step, extra_retries: int) -> Step:
    user = recorded_user_retries(step.config.extra)
    if user is None:
        user = step.config.retry.max_retries if step.config.retry else 0
    total = user + extra_retries
    base = step.config.retry or StepRetryConfig()
    retry = base.model_copy(update={"max_retries": total}) if total > 0 else step.config.retry
    record = {"user_max_retries": user, "server_max_retries": total}

    def with_budget(config: Any) -> Any:
        extra = {**config.extra, EXTRA_KEY: record}
        return config.model_copy(update={"retry": retry, "extra": extra})

    # The server stores `step_config_overrides` and rebuilds `config` from it and the pipeline
    # configuration, so both must carry the raise.
    return step.model_copy(
        update={
            "config": with_budget(step.config),
            "step_config_overrides": with_budget(step.step_config_overrides),
        }
    )


def apply_retry_budget(
    snapshot: PipelineSnapshotBase, extra_retries: Callable[[str, Step], int]
) -> None:
    """Raise every step's ``retry.max_retries`` by ``extra_retries(name, step)``, in place.

    Idempotent: a second call on the same snapshot leaves it as the first left it.
    """
    for name, step in list(snapshot.step_configurations.items()):
        snapshot.step_configurations[name] = _raised(step, extra_retries(name, step))
