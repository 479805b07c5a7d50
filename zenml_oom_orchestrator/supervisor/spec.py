"""What a run is (RunSpec, StepSpec) and what it became (RunResult, StepResult).

Specs are pydantic models so that the subprocess entry (`python -m ...supervisor`) and the ZenML
flavor can hand a run over as JSON; results are plain dataclasses with `to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from zenml_oom_orchestrator.policy import AppRetryConfig, AttemptRecord, OOMPolicy
from zenml_oom_orchestrator.policy.learned import LearnedMemory
from zenml_oom_orchestrator.supervisor.cluster import ApiRetry
from zenml_oom_orchestrator.supervisor.manifests import main_container_of, template_dict


class FailureMode(str, Enum):
    """What the other steps do once one step finally fails (ZenML's execution modes)."""

    FAIL_FAST = "fail_fast"  # stop in-flight attempts now, start nothing new
    STOP_ON_FAILURE = "stop_on_failure"  # let in-flight steps finish, start nothing new
    CONTINUE_ON_FAILURE = "continue_on_failure"  # only the failed step's downstream is skipped


class StepStatus(str, Enum):
    WAITING = "waiting"  # upstream not done, or waiting for a parallelism slot
    PENDING = "pending"  # attempt created, pod not running yet (e.g. waiting for memory)
    RUNNING = "running"
    RETRYING = "retrying"  # an attempt failed; the next one starts after the policy's delay
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream step did not succeed, or the run halted before it
    STOPPED = "stopped"  # the run was stopped while the step was in flight or waiting

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.STOPPED}
)


class RunStatus(str, Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"


def run_status(steps: list[StepStatus], stop_requested: bool) -> RunStatus:
    """The run's outcome from its steps' terminal statuses: stopped if a stop ended any step,
    failed if any step did not succeed (failed, or skipped/stopped because of a failure)."""
    if stop_requested and StepStatus.STOPPED in steps:
        return RunStatus.STOPPED
    if any(s is not StepStatus.SUCCEEDED for s in steps):
        return RunStatus.FAILED
    return RunStatus.SUCCEEDED


class StepSpec(BaseModel):
    """One step: how to run it (pod template), how to retry it (policy), what it waits for."""

    # extra="forbid": a misspelt key (e.g. "upstreams") must not silently drop a setting.
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    name: str = Field(min_length=1)
    pod_template: dict[str, Any] = Field(
        description="The step's pod (V1Pod or API JSON dict); memory of the main container is "
        "overwritten per attempt, restartPolicy is forced to Never."
    )
    policy: OOMPolicy = Field(default_factory=OOMPolicy)
    upstream: list[str] = Field(default_factory=list)
    app_retry: AppRetryConfig | None = None
    main_container: str = "main"
    resource_memory: str | None = Field(
        default=None, description="ZenML ResourceSettings(memory=...) for the start memory."
    )
    cached: bool = Field(default=False, description="Already done (e.g. a cache hit): no pod.")
    learned: LearnedMemory | None = Field(
        default=None,
        description="What earlier runs say the step needs (policy.learned.learn); the start "
        "memory is the larger of it and the policy's start.",
    )

    @field_validator("pod_template", mode="before")
    @classmethod
    def _to_dict(cls, value: Any) -> dict[str, Any]:
        return template_dict(value)

    @field_validator("resource_memory")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        from zenml_oom_orchestrator.quantity import QuantityError, memory_bytes

        if value is not None:
            try:
                memory_bytes(value)
            except QuantityError as err:
                raise ValueError(f"resource_memory={value!r} is not a memory size: {err}") from None
        return value

    @model_validator(mode="after")
    def _has_main(self) -> StepSpec:
        main_container_of(self.pod_template, self.main_container)
        if self.resource_memory is not None:
            # A bad size or one above max_memory is refused before the run starts any pod.
            from zenml_oom_orchestrator.policy import start_memory

            start_memory(self.policy, self.resource_memory)
        return self


class RunSpec(BaseModel):
    """A DAG of steps to run in one namespace, under one run id."""

    # extra="forbid": a misspelt key (e.g. "upstreams") must not silently drop a setting.
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    run_id: str = Field(min_length=1)
    namespace: str = "default"
    steps: list[StepSpec]
    max_parallelism: int | None = Field(default=None, ge=1)
    failure_mode: FailureMode = FailureMode.CONTINUE_ON_FAILURE
    owner: dict[str, Any] | None = Field(
        default=None, description="ownerReference (V1OwnerReference or dict) put on every attempt"
    )
    finished_ttl_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Keep finished attempt pods this long after the run ends (None: until the "
        "owner is deleted; 0: delete them when the run ends).",
    )
    pending_timeout_seconds: float | None = Field(
        default=None, gt=0, description="Overrides every step policy's pending timeout."
    )
    node_lost_timeout_seconds: float = Field(default=300, gt=0)
    name_prefix: str = Field(default="", description="Readable part of pod names (pipeline)")
    orchestrator_pod: str | None = Field(
        default=None,
        description="The pod this supervisor runs in, if any: the memory it holds on its node "
        "is not available to attempts while the run lasts",
    )
    resync_seconds: float = Field(default=30, gt=0, description="Re-check every step this often")
    watch_timeout_seconds: int = Field(
        default=60, gt=0, description="Server-side timeout of each watch; it then resumes"
    )
    api_retry: ApiRetry = Field(default_factory=ApiRetry)

    @field_validator("owner", mode="before")
    @classmethod
    def _owner_dict(cls, value: Any) -> dict[str, Any] | None:
        return None if value is None else template_dict(value)

    @model_validator(mode="after")
    def _valid_dag(self) -> RunSpec:
        names = [s.name for s in self.steps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"step names must be unique, repeated: {dupes}")
        known = set(names)
        for step in self.steps:
            missing = [u for u in step.upstream if u not in known]
            if missing:
                raise ValueError(f"step {step.name!r} has unknown upstream steps {missing}")
        order = topological_order(self.steps)  # raises on a cycle
        assert len(order) == len(self.steps)
        return self


def topological_order(steps: list[StepSpec]) -> list[str]:
    """Step names, upstream first; ValueError naming the steps on a cycle."""
    indegree = {s.name: len(set(s.upstream)) for s in steps}
    downstream: dict[str, list[str]] = {s.name: [] for s in steps}
    for s in steps:
        for u in set(s.upstream):
            downstream[u].append(s.name)
    ready = [n for n, d in indegree.items() if d == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for d in downstream[name]:
            indegree[d] -= 1
            if indegree[d] == 0:
                ready.append(d)
    if len(order) != len(steps):
        raise ValueError(f"steps form a cycle: {sorted(set(indegree) - set(order))}")
    return order


@dataclass
class StepResult:
    name: str
    status: StepStatus
    attempts: list[AttemptRecord] = field(default_factory=list)
    message: str = ""
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "attempts": [a.to_dict() for a in self.attempts],
            "message": self.message,
            "cached": self.cached,
        }


@dataclass
class RunResult:
    run_id: str
    status: RunStatus
    steps: dict[str, StepResult]
    started_at: float
    finished_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "steps": {name: s.to_dict() for name, s in self.steps.items()},
        }
