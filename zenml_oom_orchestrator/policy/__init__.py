"""What to do after a failed attempt: the policy model, memory maths, waits and decide().

Small composable pieces, one idea per module, in the manner of tenacity:
``settings`` (the user's OOMPolicy), ``memory`` (start and growth), ``wait`` (delays),
``attempts`` (what each attempt had and how it ended) and ``decide`` (the decision).
"""

from .attempts import AttemptRecord, Budget, retries_used
from .decide import AppRetryConfig, Decision, GiveUp, Retry, decide
from .growth import Growth, growth_target, may_grow, missed_growth_hint
from .memory import (
    Memory,
    PolicyError,
    ceiling,
    escalate_after_eviction,
    escalate_after_oom,
    grow,
    start_memory,
)
from .settings import DEFAULT_MEMORY, OOMPolicy
from .wait import wait_base, wait_combine, wait_exponential, wait_fixed, wait_none

__all__ = [
    "DEFAULT_MEMORY",
    "AppRetryConfig",
    "AttemptRecord",
    "Budget",
    "Decision",
    "GiveUp",
    "Growth",
    "Memory",
    "OOMPolicy",
    "PolicyError",
    "Retry",
    "ceiling",
    "decide",
    "escalate_after_eviction",
    "escalate_after_oom",
    "grow",
    "growth_target",
    "may_grow",
    "missed_growth_hint",
    "retries_used",
    "start_memory",
    "wait_base",
    "wait_combine",
    "wait_exponential",
    "wait_fixed",
    "wait_none",
]
