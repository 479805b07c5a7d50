"""The ``oom_kubernetes`` flavor: ZenML's Kubernetes orchestrator plus OOM recovery.

Config and settings extend ZenML's own, so every stock setting keeps working. The OOM policy
fields are flat on the settings and default to ``None`` ("not set here"): ZenML merges a step's
settings over its pipeline's and the component's by dropping ``None`` values, so a step that
sets only ``max_memory`` keeps the pipeline's ``memory_multiplier``. Unset everywhere means the
policy's own default.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from pydantic import Field, NonNegativeFloat, NonNegativeInt, ValidationError, model_validator
from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import (
    KubernetesOrchestratorConfig,
    KubernetesOrchestratorFlavor,
    KubernetesOrchestratorSettings,
)

from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.policy.settings import SigkillMeaning

if TYPE_CHECKING:
    from zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator import (
        OOMKubernetesOrchestrator,
    )

FLAVOR_NAME = "oom_kubernetes"
DOCS_URL = "https://pypi.org/project/zenml-oom-orchestrator/"

_POLICY = OOMPolicy.model_fields


def _describe(name: str) -> str:
    """The policy field's own description (one source of truth), plus how merging works."""
    return (
        f"{_POLICY[name].description} Unset: the pipeline's, then the component's value, "
        f"then the default {_POLICY[name].default!r}."
    )


def _job_ttl_field() -> Any:
    # ZenML's default (unset) keeps every finished orchestrator Job, and with it its attempt
    # pods and token Secret, forever: a day is long enough to look at them with kubectl.
    return Field(
        default=86400,
        description="Seconds to keep a finished run's orchestrator Job, and with it (its "
        "owned objects) the attempt pods and the token Secret; None keeps them forever.",
    )


class InvalidPolicyError(ValueError):
    """An OOM policy that cannot work, with the step, field, value and fix in its message."""


class PipelineRunFailedError(RuntimeError):
    """A synchronous run ended FAILED: raised after its attempt table, so ``python
    my_pipeline.py`` exits non-zero with each failed step's reason, as a failed step does on
    ZenML's local orchestrator.

    ``failed_steps`` maps each failed step to the orchestrator's reason.
    """

    def __init__(self, run_name: str, run_id: Any, failed_steps: dict[str, str]) -> None:
        self.run_name, self.run_id, self.failed_steps = run_name, run_id, dict(failed_steps)
        reasons = "".join(f"\n  {step}: {why}" for step, why in self.failed_steps.items())
        super().__init__(
            f"Run `{run_name}` failed.{reasons or ' No step failed: see the orchestrator log.'}"
            f"\nWhy, and what to change: zenml-oom explain {run_name}"
        )


class OOMKubernetesOrchestratorSettings(KubernetesOrchestratorSettings):
    """Settings for the ``oom_kubernetes`` orchestrator: stock Kubernetes settings + OOM policy.

    Usable per step (``@step(settings={"orchestrator": OOMKubernetesOrchestratorSettings(...)})``),
    per pipeline, and as component defaults (``zenml orchestrator register/update --max_memory=...``).
    """

    # ZenML 0.98 declares this PositiveFloat with the default 0.0, so settings that ZenML dumps
    # and validates again (it does at run time) fail; 0 means "no delay" and is allowed here.
    job_monitoring_delay: NonNegativeFloat = Field(
        default=0.0,
        description=KubernetesOrchestratorSettings.model_fields["job_monitoring_delay"].description,
    )

    ttl_seconds_after_finished: NonNegativeInt | None = _job_ttl_field()

    max_oom_retries: int | None = Field(default=None, description=_describe("max_oom_retries"))
    memory_multiplier: float | None = Field(
        default=None, description=_describe("memory_multiplier")
    )
    memory_increment: str | None = Field(default=None, description=_describe("memory_increment"))
    max_memory: str | None = Field(default=None, description=_describe("max_memory"))
    initial_memory: str | None = Field(default=None, description=_describe("initial_memory"))
    keep_request_ratio: bool | None = Field(
        default=None, description=_describe("keep_request_ratio")
    )
    max_infrastructure_retries: int | None = Field(
        default=None, description=_describe("max_infrastructure_retries")
    )
    sigkill_without_reason: SigkillMeaning | None = Field(
        default=None, description=_describe("sigkill_without_reason")
    )
    pending_timeout_seconds: float | None = Field(
        default=None, description=_describe("pending_timeout_seconds")
    )
    learn_start_memory: bool | None = Field(
        default=None, description=_describe("learn_start_memory")
    )
    learning_window: int | None = Field(default=None, description=_describe("learning_window"))
    grow_in_place: bool | None = Field(default=None, description=_describe("grow_in_place"))
    grow_at_fraction: float | None = Field(default=None, description=_describe("grow_at_fraction"))
    grow_check_seconds: int | None = Field(
        default=None, description=_describe("grow_check_seconds")
    )
    max_growths_per_attempt: int | None = Field(
        default=None, description=_describe("max_growths_per_attempt")
    )

    @model_validator(mode="before")
    @classmethod
    def _memory_ints_as_quantities(cls, data: Any) -> Any:
        # The CLI passes strings, Python callers may pass bytes; the policy accepts both and
        # stores the readable form, so do the same here.
        if isinstance(data, dict):
            for key in ("memory_increment", "max_memory", "initial_memory"):
                if isinstance(data.get(key), int) and not isinstance(data.get(key), bool):
                    data = {**data, key: OOMPolicy(**{key: data[key]}).model_dump()[key]}
        return data

    @model_validator(mode="after")
    def _valid_policy(self) -> OOMKubernetesOrchestratorSettings:
        # Refuse a bad value where it is written (decorator, register/update), not at run time.
        for key, value in (self.model_extra or {}).items():
            # ZenML would drop a misspelt key with a warning; for the policy, say what was meant.
            close = difflib.get_close_matches(key, list(_POLICY), n=1, cutoff=0.8)
            if close:
                raise InvalidPolicyError(
                    f"unknown setting {key!r} (value {value!r}); did you mean {close[0]!r}?"
                )
        self.oom_policy()
        return self

    def policy_overrides(self) -> dict[str, Any]:
        """The policy fields set on these settings (after merging), by name."""
        return {name: value for name in _POLICY if (value := getattr(self, name, None)) is not None}

    def oom_policy(self, step_name: str | None = None) -> OOMPolicy:
        """The OOM policy these settings describe; :class:`InvalidPolicyError` if it can't work."""
        try:
            return OOMPolicy(**self.policy_overrides())
        except ValidationError as err:
            problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
            where = f" for step `{step_name}`" if step_name else ""
            raise InvalidPolicyError(
                f"Invalid OOM policy{where}: {problems}. Set it in "
                "`OOMKubernetesOrchestratorSettings(...)` on the step or pipeline, or on the "
                "orchestrator component with `zenml orchestrator update <name> --<field>=<value>`."
            ) from None


class OOMKubernetesOrchestratorConfig(
    KubernetesOrchestratorConfig, OOMKubernetesOrchestratorSettings
):
    """Configuration of an ``oom_kubernetes`` orchestrator component (stock fields + policy)."""

    ttl_seconds_after_finished: NonNegativeInt | None = _job_ttl_field()

    # ZenML's default is False, which writes the API token as a plain env value into the
    # orchestrator pod's spec and every attempt pod's spec (readable by anyone who may read
    # pods or Jobs). Issue 7 §3: the token travels in a Secret unless the user opts out.
    pass_zenml_token_as_secret: bool = Field(
        default=True,
        description="Pass the ZenML API token to the orchestrator pod and the attempt pods in a "
        "Kubernetes Secret (`zenml-token-<snapshot id>`, referenced with secretKeyRef) instead "
        "of as a plain env value in their pod specs, which anyone allowed to read pods or Jobs "
        "can see. The client creating the run needs create and patch on Secrets; the Secret is "
        "owned by the orchestrator Job (or the schedule's CronJob) and deleted when the run "
        "ends. Servers without authentication have no token: no Secret is made. Set False for "
        "ZenML's stock behaviour.",
    )
    local_cluster: bool = Field(
        default=False,
        description="The cluster is this package's local cluster (`zenml-oom cluster up`), "
        "whose pods are processes on this machine that run this Python and ignore images: no "
        "image is built and no code is uploaded, the pods import the pipeline's code from its "
        "source root here, and the stack needs no image builder or container registry. Set by "
        "`zenml-oom local-stack`.",
    )


class OOMKubernetesOrchestratorFlavor(KubernetesOrchestratorFlavor):
    """ZenML's Kubernetes orchestrator flavor, with OOM-killed steps retried with more memory."""

    @property
    def name(self) -> str:
        return FLAVOR_NAME

    @property
    def docs_url(self) -> str | None:
        return DOCS_URL

    @property
    def sdk_docs_url(self) -> str | None:
        return DOCS_URL

    @property
    def config_class(self) -> type[OOMKubernetesOrchestratorConfig]:
        return OOMKubernetesOrchestratorConfig

    @property
    def implementation_class(self) -> type[OOMKubernetesOrchestrator]:
        from zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator import (
            OOMKubernetesOrchestrator,
        )

        return OOMKubernetesOrchestrator
