"""The verdict on one attempt's pod: :class:`OutcomeKind` and :class:`Outcome`.

Kept apart from the classifier so that the policy, the store and the CLI can read and write
outcomes (e.g. from pod annotations) without the classification rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

__all__ = ["Outcome", "OutcomeKind"]


class OutcomeKind(str, Enum):
    """What happened to one attempt's pod."""

    SUCCEEDED = "succeeded"
    RUNNING = "running"
    PENDING = "pending"
    OOM_KILLED = "oom_killed"  # a cgroup OOM kill: the container hit its memory limit
    EVICTED = "evicted"  # node-pressure eviction by the kubelet (see memory_pressure)
    DISRUPTED = "disrupted"  # preemption, drain, node shutdown, kubelet admission: not the step
    NODE_LOST = "node_lost"  # the node stopped answering, or the pod vanished from the API
    UNSCHEDULABLE = "unschedulable"  # no node can fit the pod
    IMAGE_ERROR = "image_error"
    CONFIG_ERROR = "config_error"
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the pod's activeDeadlineSeconds passed
    APP_ERROR = "app_error"  # the step's code exited non-zero
    KILLED = "killed"  # SIGKILL/SIGTERM with no reason given: the policy decides what it means


_IN_PROGRESS = {OutcomeKind.RUNNING, OutcomeKind.PENDING}


@dataclass(frozen=True)
class Outcome:
    """The verdict on one pod, with the facts it rests on."""

    kind: OutcomeKind
    container: str | None = None
    init_container: bool = False
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    message: str = ""
    memory_pressure: bool = False  # evicted because the node ran low on memory
    memory_used: int | None = None  # bytes the container used, from an eviction message
    evidence: str = ""  # where the verdict came from, e.g. "containerStatuses[main].lastState"

    @property
    def terminal(self) -> bool:
        """The attempt is over (it will not change by waiting)."""
        return self.kind not in _IN_PROGRESS

    @property
    def failed(self) -> bool:
        """The attempt is over and did not succeed."""
        return self.terminal and self.kind is not OutcomeKind.SUCCEEDED

    @property
    def memory_related(self) -> bool:
        """More memory (limit or request) is the likely cure."""
        return self.kind is OutcomeKind.OOM_KILLED or (
            self.kind is OutcomeKind.EVICTED and self.memory_pressure
        )

    def describe(self) -> str:
        """One line for logs and messages: ``oom_killed (container main, exit 137, OOMKilled)``."""
        facts = []
        if self.container:
            facts.append(
                ("init container " if self.init_container else "container ") + self.container
            )
        if self.exit_code is not None:
            facts.append(f"exit {self.exit_code}")
        if self.reason:
            facts.append(self.reason)
        text = self.kind.value + (f" ({', '.join(facts)})" if facts else "")
        return f"{text}: {self.message}" if self.message else text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for annotations and the store)."""
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so old readers survive."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            known["kind"] = OutcomeKind(known["kind"])
        except (KeyError, ValueError):
            kinds = ", ".join(k.value for k in OutcomeKind)
            raise ValueError(f"outcome kind {data.get('kind')!r} is not one of: {kinds}") from None
        return cls(**known)
