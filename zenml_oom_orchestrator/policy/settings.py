"""The user-facing OOM policy: a pydantic v2 model, validated when it is configured.

Every error names the field, the value and what to change, because it surfaces in
``zenml pipeline run`` output far from this code.
"""

from __future__ import annotations

import difflib
import math
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..quantity import QuantityError, format_memory, is_whole_bytes, memory_bytes

__all__ = ["DEFAULT_MEMORY", "MAX_LEARNING_WINDOW", "OOMPolicy", "SigkillMeaning"]

# The start memory when neither the policy, ResourceSettings nor pod settings give one.
DEFAULT_MEMORY = "1Gi"
# What ZenML's Kubernetes step pods request when nothing is set (kube_utils'
# apply_default_resource_requests); the flavor's pod templates carry it, so it comes first.
ZENML_DEFAULT_REQUEST = "400Mi"

SigkillMeaning = Literal["infrastructure", "oom", "app_error"]
# How many past runs learning may look at: each is read once per run, so this bounds the cost.
MAX_LEARNING_WINDOW = 100
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
# Below half, a step grows long before it needs to; above 0.95, a fast step is killed before
# the probe (every grow_check_seconds) and the resize can act.
MIN_GROW_FRACTION, MAX_GROW_FRACTION = 0.5, 0.95
# Past half a minute the check misses all but the slowest growth; turn growing off instead.
MAX_GROW_CHECK_SECONDS = 30
_FLAG_HINT = {
    "learn_start_memory": "use False to always start at the policy's start, True (the default) "
    "to start where the last runs succeeded",
    "grow_in_place": "use False to only retry after an OOM kill, True (the default) to grow a "
    "running step's memory in place where the cluster supports it",
}


class OOMPolicy(BaseModel):
    """How a step is retried when its pod dies of memory, infrastructure or its own errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_oom_retries: int = Field(
        default=3,
        description="How many times a step is retried with more memory after an OOM kill or a "
        "memory-pressure eviction. 0 disables memory escalation.",
    )
    memory_multiplier: float = Field(
        default=2.0,
        description="Each OOM retry gets at least the last attempt's memory times this "
        "(>= 1). The next memory is max(last x multiplier, last + memory_increment), "
        "rounded up to whole Mi.",
    )
    memory_increment: str = Field(
        default="256Mi",
        description="The minimum growth per OOM retry, as a Kubernetes quantity ('256Mi') or "
        "a ZenML byte unit ('256MiB'). Keeps small steps from growing by a few bytes.",
    )
    max_memory: str | None = Field(
        default=None,
        description="The cap: no attempt gets more memory than this. None means the largest "
        "node's allocatable memory. A step already at the cap is not retried for OOM.",
    )
    initial_memory: str | None = Field(
        default=None,
        description="The first attempt's memory. If unset: the step's "
        "ResourceSettings(memory=...), then the pod settings' memory request/limit, which on "
        f"the oom_kubernetes flavor is ZenML's default step-pod request {ZENML_DEFAULT_REQUEST} "
        f"when you set none ({DEFAULT_MEMORY} only where a pod has no resources at all, e.g. "
        "the supervisor run on its own).",
    )
    keep_request_ratio: bool = Field(
        default=False,
        description="Keep the user's memory request:limit ratio when raising memory. If "
        "false, a raised attempt asks for request = limit, which also protects it from "
        "node-pressure eviction.",
    )
    max_infrastructure_retries: int = Field(
        default=3,
        description="How many times a step is retried at the same memory after a disruption "
        "(preemption, drain, node shutdown, kubelet admission) or a lost node. Separate from "
        "the OOM and app budgets.",
    )
    sigkill_without_reason: SigkillMeaning = Field(
        default="infrastructure",
        description="What a SIGKILL/SIGTERM (exit 137/143) without an OOMKilled reason "
        "means: 'infrastructure' (retry at the same memory), 'oom' (retry with more memory) "
        "or 'app_error' (count against the step's own retries).",
    )
    pending_timeout_seconds: float = Field(
        default=600.0,
        description="How long a pod may stay unschedulable (e.g. 'Insufficient memory') "
        "before the step fails with a message to lower memory or add a node. Leave room "
        "for a cluster autoscaler.",
    )

    learn_start_memory: bool = Field(
        default=True,
        description="Start a step at the memory it last succeeded with in a recent run of the "
        "same pipeline, when that is more than its start above (clamped to max_memory and the "
        "largest node), so a step that needed OOM retries last time does not repeat them. "
        "False: always start at the policy's start.",
    )
    learning_window: int = Field(
        default=10,
        description="How many of the pipeline's most recent finished runs learn_start_memory "
        f"looks at for the step's last success (1 to {MAX_LEARNING_WINDOW}).",
    )

    grow_in_place: bool = Field(
        default=True,
        description="Grow a running attempt's memory request and limit in place (Kubernetes "
        "pods/resize, 1.33+) when it nears its limit, by the same arithmetic as an OOM retry, "
        "so the step keeps its work instead of being killed and retried. Ignored (kill and "
        "retry as before) on clusters without in-place resize.",
    )
    grow_at_fraction: float = Field(
        default=0.8,
        description="Grow in place when the step's working set (usage minus inactive file "
        "cache, as the kubelet counts it) passes this fraction of its current limit "
        "(0.5 to 0.95).",
    )
    grow_check_seconds: int = Field(
        default=5,
        description="How often (seconds, 1 to 30) the kubelet checks a running step's working "
        "set against grow_at_fraction (an exec readiness probe in its main container). Each "
        "check costs the node 30 to 40 ms of CPU (runc exec, measured on containerd 2.2) plus "
        "the check itself in the step's cgroup: nine steps checked every second took a third "
        "of a core and made a run on a saturated 2-core node slower than ZenML's stock flavor "
        "(BENCHMARKS.md), hence 5 by default. A step is grown before the kernel kills it when "
        "it takes longer than this period and the resize together to go from "
        "grow_at_fraction to its limit; for faster growth use 1, to remove the check "
        "grow_in_place=False.",
    )
    max_growths_per_attempt: int = Field(
        default=4,
        description="How many in-place growths one attempt may have; after that, an OOM kill "
        "retries it with more memory as usual. 0 disables growing in place.",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # pydantic's "extra inputs are not permitted" does not say what was meant.
        if isinstance(data, dict):
            known = set(cls.model_fields)
            for key in data:
                if key not in known:
                    close = difflib.get_close_matches(str(key), known, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise ValueError(
                        f"unknown OOM policy setting {key!r} (value {data[key]!r}); {hint}"
                        f"known settings: {', '.join(sorted(known))}"
                    )
        return data

    @field_validator("max_oom_retries", "max_infrastructure_retries", "max_growths_per_attempt")
    @classmethod
    def _budget(cls, value: int, info: ValidationInfo) -> int:
        if value < 0:
            raise ValueError(
                f"{info.field_name}={value!r} is negative; use 0 to disable these retries or a "
                "positive count"
            )
        return value

    @field_validator("learn_start_memory", "grow_in_place", mode="before")
    @classmethod
    def _flag(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's own message would not name the field where the flavor reports it.
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in _TRUE | _FALSE:
            return value if isinstance(value, bool) else text in _TRUE
        raise ValueError(
            f"{info.field_name}={value!r} is not true or false; " + _FLAG_HINT[str(info.field_name)]
        )

    @field_validator("grow_at_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not MIN_GROW_FRACTION <= value <= MAX_GROW_FRACTION:
            raise ValueError(
                f"grow_at_fraction={value!r} is outside {MIN_GROW_FRACTION} to "
                f"{MAX_GROW_FRACTION}; give the share of the limit at which to grow, e.g. 0.8 "
                "(to stop growing in place, set grow_in_place=False)"
            )
        return value

    @field_validator("grow_check_seconds")
    @classmethod
    def _check_period(cls, value: int) -> int:
        if not 1 <= value <= MAX_GROW_CHECK_SECONDS:
            raise ValueError(
                f"grow_check_seconds={value!r} is outside 1 to {MAX_GROW_CHECK_SECONDS}; give "
                "how many seconds apart to check a step's memory, e.g. 1 or 5 (to stop growing "
                "in place, set grow_in_place=False)"
            )
        return value

    @field_validator("learning_window")
    @classmethod
    def _window(cls, value: int) -> int:
        if not 1 <= value <= MAX_LEARNING_WINDOW:
            raise ValueError(
                f"learning_window={value!r} is outside 1 to {MAX_LEARNING_WINDOW}; give a "
                "number of recent runs such as 10 (to turn learning off, set "
                "learn_start_memory=False)"
            )
        return value

    @field_validator("memory_multiplier")
    @classmethod
    def _multiplier(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(
                f"memory_multiplier={value!r} is "
                + ("not a number" if math.isnan(value) else "infinite")
                + "; use a number from 1 to 100, "
                "e.g. 1.5 or 2"
            )
        if value < 1:
            raise ValueError(
                f"memory_multiplier={value!r} is below 1 and would shrink memory after an OOM "
                "kill; use 1 (grow by memory_increment only) or more, e.g. 1.5 or 2"
            )
        if value > 100:
            raise ValueError(f"memory_multiplier={value!r} is above 100; use a value from 1 to 100")
        return value

    @field_validator("memory_increment", "max_memory", "initial_memory", mode="before")
    @classmethod
    def _memory(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        try:
            n_bytes = memory_bytes(value)
        except QuantityError as err:
            raise ValueError(f"{info.field_name}={value!r} is not a memory size: {err}") from None
        if isinstance(value, str) and not is_whole_bytes(value):
            raise ValueError(
                f"{info.field_name}={value!r} is a fraction of a byte ('m' means 1/1000); "
                "memory is whole bytes: did you mean "
                f"'{value.strip()[:-1]}Mi' or '{value.strip()[:-1]}M'?"
                if value.strip().endswith("m")
                else f"{info.field_name}={value!r} is not a whole number of bytes; give a "
                "size such as '1536Mi' or '1.5Gi'"
            )
        if n_bytes == 0 and info.field_name != "memory_increment":
            raise ValueError(f"{info.field_name}={value!r} is zero; give a size such as '2Gi'")
        # Ints are bytes; store the readable form so the model round-trips through YAML.
        return format_memory(n_bytes) if isinstance(value, int) else str(value)

    @field_validator("pending_timeout_seconds")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not value >= 0:
            raise ValueError(
                f"pending_timeout_seconds={value!r} is negative; use 0 to fail at once or a "
                "number of seconds such as 600"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> OOMPolicy:
        if self.multiplier == 1 and self.memory_increment_bytes == 0:
            raise ValueError(
                "memory_multiplier=1 with memory_increment='0' never raises memory; raise "
                "memory_multiplier above 1 or memory_increment above 0"
            )
        cap, start = self.max_memory_bytes, self.initial_memory_bytes
        if cap is not None and start is not None and start > cap:
            raise ValueError(
                f"initial_memory={self.initial_memory!r} is above max_memory="
                f"{self.max_memory!r}; raise max_memory or lower initial_memory"
            )
        return self

    # Exact views for the maths (floats and strings are for people).

    @property
    def multiplier(self) -> Fraction:
        """``memory_multiplier`` as the exact decimal the user wrote (1.1 is 11/10)."""
        return Fraction(str(self.memory_multiplier))

    @property
    def memory_increment_bytes(self) -> int:
        return memory_bytes(self.memory_increment)

    @property
    def max_memory_bytes(self) -> int | None:
        return None if self.max_memory is None else memory_bytes(self.max_memory)

    @property
    def initial_memory_bytes(self) -> int | None:
        return None if self.initial_memory is None else memory_bytes(self.initial_memory)
