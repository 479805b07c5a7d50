"""Pending attempts: waiting for memory others hold, or never going to fit. Pure functions.

A request that fits the largest node when it is empty queues (the scheduler binds it when
memory frees up) and progress says so; a request above every node's allocatable memory can
never fit and ends at once; anything Pending longer than `pending_timeout` ends too, with the
reason. Nothing waits forever.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from zenml_oom_orchestrator.outcome import Outcome, OutcomeKind
from zenml_oom_orchestrator.policy import PolicyError, start_memory
from zenml_oom_orchestrator.policy.learned import learned_start
from zenml_oom_orchestrator.quantity import format_memory
from zenml_oom_orchestrator.supervisor import naming
from zenml_oom_orchestrator.supervisor.manifests import main_container_of
from zenml_oom_orchestrator.supervisor.spec import StepSpec


@dataclass(frozen=True)
class PendingVerdict:
    outcome: Outcome | None  # terminal: end the attempt with it; None: keep waiting
    message: str = ""  # progress while waiting
    recheck_in: float = 0.0  # seconds until the timeout would end it
    unschedulable: bool = False  # the scheduler cannot place it yet (said once per attempt)


def created_at(pod: dict[str, Any]) -> float | None:
    """The pod's creationTimestamp as epoch seconds."""
    stamp = (pod.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return None
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def started_at(pod: dict[str, Any]) -> float | None:
    """When the supervisor started the attempt (its sub-second stamp), else its creation."""
    stamp = ((pod.get("metadata") or {}).get("annotations") or {}).get(naming.ANN_STARTED_AT)
    try:
        return float(stamp) if stamp else created_at(pod)
    except ValueError:
        return created_at(pod)


def terminated_at(pod: dict[str, Any], main_container: str) -> float | None:
    """When the main container's process ended (its terminated.finishedAt), as epoch seconds."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != main_container:
            continue
        stamp = ((status.get("state") or {}).get("terminated") or {}).get("finishedAt")
        if stamp:
            return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    return None


def never_fits_message(request: int, largest: int) -> str:
    return (
        f"it requests {format_memory(request)} memory but the largest node has "
        f"{format_memory(largest)} allocatable, so it can never fit"
    )


def beside_orchestrator_message(request: int, largest: int, held: int) -> str:
    return (
        f"it requests {format_memory(request)} memory, but the largest node has "
        f"{format_memory(largest)} allocatable and this run's orchestrator pod holds "
        f"{format_memory(held)} of it for as long as the run lasts, so it can never fit"
    )


def explain_unschedulable(
    outcome: Outcome, request: int, timeout: float | None, largest: int | None
) -> Outcome:
    """`outcome` as `unschedulable`, with a message that says which case it is."""
    if largest is not None and request > largest:
        why = never_fits_message(request, largest)
    else:
        why = (
            f"it stayed Pending longer than pending_timeout ({timeout:g}s) requesting "
            f"{format_memory(request)} memory"
        )
    detail = f" ({outcome.reason}: {outcome.message})" if outcome.message else ""
    return replace(outcome, kind=OutcomeKind.UNSCHEDULABLE, message=f"{why}{detail}")


def judge_pending(
    outcome: Outcome,
    request: int,
    largest: int | None,
    waited: float,
    timeout: float,
    beside: tuple[int, int] | None = None,
) -> PendingVerdict:
    """What a Pending attempt means now. `outcome` is classify's PENDING verdict.

    ``beside`` is (room, held): the most memory any node can give attempts while this run's
    orchestrator pod holds ``held`` on its node. A request above it waits for nothing.
    """
    unschedulable = outcome.reason == "Unschedulable"
    if unschedulable and largest is not None and request > largest:
        return PendingVerdict(explain_unschedulable(outcome, request, None, largest))
    if unschedulable and largest is not None and beside is not None and request > beside[0]:
        why = beside_orchestrator_message(request, largest, beside[1])
        detail = f" ({outcome.reason}: {outcome.message})" if outcome.message else ""
        return PendingVerdict(
            replace(outcome, kind=OutcomeKind.UNSCHEDULABLE, message=f"{why}{detail}")
        )
    if waited >= timeout:  # any Pending, not only Unschedulable (e.g. a stuck volume)
        late = replace(outcome, reason=outcome.reason or "Pending")
        return PendingVerdict(explain_unschedulable(late, request, timeout, largest))
    remaining = max(0.5, timeout - waited)
    if not unschedulable:
        return PendingVerdict(None, f"pending ({outcome.reason or 'starting'})", remaining)
    give_up = f"(gives up after pending_timeout {timeout:g}s). Scheduler: {outcome.message}"
    if "Insufficient memory" in outcome.message:
        node = f"; the largest node has {format_memory(largest)} allocatable" if largest else ""
        message = f"waiting for memory other pods hold: needs {format_memory(request)}{node} "
    else:  # a taint, a selector, another resource: the scheduler's words say which
        message = "waiting for a node the scheduler can place it on "
    return PendingVerdict(None, message + give_up, remaining, unschedulable=True)


def next_memory(
    spec: StepSpec, number: int, request: int, limit: int, largest: int | None
) -> tuple[int, int, str]:
    """(request, limit, source) for the attempt about to start: the step's start memory
    (policy or learned, `source` says which) when none is planned yet (`limit == 0`), else
    the decision's (source ""). PolicyError when no node could ever hold the request, so the
    pod is never created to sit Pending."""
    source = ""
    if limit == 0:
        main = main_container_of(spec.pod_template, spec.main_container)
        start = start_memory(spec.policy, spec.resource_memory, main.get("resources"), largest)
        start = learned_start(start, spec.learned, spec.policy, largest)
        request, limit, source = start.request, start.limit, start.source
    if largest is not None and request > largest:
        raise PolicyError(
            f"attempt {number} would request {format_memory(request)} memory but the largest "
            f"node has {format_memory(largest)} allocatable; refused before creating the pod so "
            "it is not left Pending. Lower the step's memory or max_memory, or add a bigger node."
        )
    return request, limit, source
