"""zenml-oom-orchestrator: a ZenML orchestrator flavor for Kubernetes that retries OOM-killed
steps with more memory.

The pure core is importable without ZenML (importing zenml costs seconds): ``classify`` says
what happened to a pod, ``decide`` says what to do next under an ``OOMPolicy``.
"""

from .classify import classify
from .outcome import Outcome, OutcomeKind
from .policy import AppRetryConfig, AttemptRecord, GiveUp, OOMPolicy, Retry, decide
from .quantity import format_memory, parse_quantity

__all__ = [
    "AppRetryConfig",
    "AttemptRecord",
    "GiveUp",
    "OOMPolicy",
    "Outcome",
    "OutcomeKind",
    "Retry",
    "classify",
    "decide",
    "format_memory",
    "parse_quantity",
]
