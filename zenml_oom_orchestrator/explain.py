"""Why a step ended as it did, in plain words, and which setting would change the outcome.

Pure: it reads the facts the orchestrator stored (the attempt rows of ``oom_attempts``, the
step run's status and error), never the cluster, so anyone who can read the ZenML store can
ask. ``zenml-oom explain`` (``cli_runs.py``) loads the facts and prints :func:`explain_step`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .orchestrators.attempt_table import growth_text
from .quantity import QuantityError, format_memory, memory_bytes

SETTINGS = "OOMKubernetesOrchestratorSettings"


@dataclass(frozen=True)
class StepFacts:
    """What the store knows about one step of a run (its latest step run)."""

    name: str
    status: str | None  # the step run's status value; None when it never started
    history: Sequence[Mapping[str, Any]] = ()  # the oom_attempts rows, oldest first
    error: str | None = None  # the step run's exception message, if any
    upstream: Sequence[str] = ()
    failed_upstream: Sequence[str] = field(default_factory=list)


def _limits(history: Sequence[Mapping[str, Any]]) -> str:
    seen = dict.fromkeys(str(row.get("memory_limit", "?")) for row in history)
    return " -> ".join(seen)


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("" if n == 1 else "s")


def _twice(limit: str) -> str:
    try:
        return format_memory(2 * memory_bytes(limit))
    except QuantityError:
        return "a larger size"


def _setting(example: str) -> str:
    return f'    @step(settings={{"orchestrator": {SETTINGS}({example})}})'


def _advice(last: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(why, what to change) for the last attempt of a failed step."""
    outcome = str(last.get("outcome", ""))
    message = str(last.get("message") or "")
    limit = str(last.get("memory_limit") or "?")
    exit_code = last.get("exit_code")
    if outcome in ("oom_killed", "evicted"):
        what = (
            "was OOM-killed: the kernel killed it when it reached its memory limit"
            if outcome == "oom_killed"
            else "was evicted because its node ran low on memory"
        )
        if "already max_memory" in message:
            return f"Its last attempt {what}, and {limit} is already its max_memory.", [
                f"Raise max_memory above {limit}, for example:",
                _setting(f'max_memory="{_twice(limit)}"'),
                "or make the step use less memory.",
            ]
        if "largest node's allocatable memory" in message:
            return (
                f"Its last attempt {what}, and {limit} is all the largest node can give.",
                [
                    "Add a node with more allocatable memory (max_memory cannot help here),",
                    "or make the step use less memory.",
                ],
            )
        return f"Its last attempt {what}, and its OOM retries were used up.", [
            "Raise max_oom_retries, or memory_multiplier to grow faster, for example:",
            _setting("max_oom_retries=5, memory_multiplier=3"),
            "or start higher with initial_memory.",
        ]
    if outcome == "app_error":
        return (
            f"Its code failed (exit code {exit_code}); more memory would not have helped.",
            [
                "Fix the step, or give it retries of its own: @step(retry=StepRetryConfig(max_retries=2)).",
            ],
        )
    if outcome == "deadline_exceeded":
        return "It ran longer than its pod's active_deadline_seconds.", [
            "Raise active_deadline_seconds in the step's pod_settings, or its retry max_retries.",
        ]
    if outcome == "killed":
        return (
            f"It was killed (exit code {exit_code}) without an OOMKilled reason, which the "
            "policy counts as an infrastructure failure by default.",
            [
                "If your cluster's runtime reports OOM kills this way, set",
                _setting('sigkill_without_reason="oom"'),
                "otherwise raise max_infrastructure_retries.",
            ],
        )
    if outcome in ("disrupted", "node_lost"):
        return (
            "Its pod was disrupted or lost its node (preemption, drain, node shutdown): not "
            "the step's fault, but its infrastructure retries were used up.",
            ["Raise max_infrastructure_retries, or check the cluster's nodes."],
        )
    if outcome == "unschedulable" and "orchestrator pod holds" in message:
        return (
            f"No node can fit its memory request ({limit}) beside the run's own orchestrator "
            "pod, which holds part of the node for the whole run.",
            [
                "Lower max_memory (or initial_memory) below what the node has left, add a",
                "bigger node, or give the orchestrator pod less memory (orchestrator_pod_settings).",
            ],
        )
    if outcome == "unschedulable":
        return f"No node could fit its memory request ({limit}) in time.", [
            "Lower initial_memory or max_memory, add a node with more memory, or raise",
            "pending_timeout_seconds to give a cluster autoscaler time.",
        ]
    if outcome == "image_error":
        return "Its image could not be pulled; retrying cannot heal that.", [
            "Fix the image name or the registry access (imagePullSecrets in pod_settings).",
        ]
    if outcome == "config_error":
        return "Its container could not start (a missing Secret or ConfigMap, the command).", [
            "Fix the pod configuration; retrying cannot heal that.",
        ]
    return f"Its last attempt ended {outcome or 'without a recorded outcome'}.", []


def learned_from(history: Sequence[Mapping[str, Any]]) -> str | None:
    """``learned: succeeded at 2Gi in run X`` if the first attempt's memory was learned."""
    source = str((history[0].get("memory_source") or "") if history else "")
    return source if source.startswith("learned") else None


def explain_step(facts: StepFacts, run_status: str | None = None) -> str:
    """A few lines: what happened to the step, why, and which setting would change it.

    ``run_status`` "stopped" means someone stopped the run: nothing upstream needs fixing.
    """
    text = _explain_step(facts, run_status)
    grown = [row for row in facts.history if row.get("growths")]
    for row in grown:
        kept = sum(1 for g in row["growths"] if g.get("outcome") == "in_force")
        text += (
            f"\nAttempt {row.get('attempt')} was grown in place {kept} "
            f"{'time' if kept == 1 else 'times'} while it ran, keeping its work: "
            + growth_text(row["growths"])
            + "."
        )
    if grown:
        text += (
            " (grow_in_place, grow_at_fraction, grow_check_seconds and max_growths_per_attempt "
            "set this.)"
        )
    learned = learned_from(facts.history)
    if learned:
        first = facts.history[0].get("memory_limit")
        text += (
            f"\nIt started at {first} because of earlier runs ({learned}); "
            "learn_start_memory=False turns that off."
        )
    return text


def ended_badly_after_success(history: Sequence[Mapping[str, Any]]) -> bool:
    """A completed step whose last attempt's pod was then killed (see finish_attempt)."""
    return bool(history) and history[-1].get("outcome") not in ("succeeded", "running", None)


def _explain_step(facts: StepFacts, run_status: str | None) -> str:
    name, history = facts.name, list(facts.history)
    if facts.status is None:
        if run_status == "stopped":
            waited = ", ".join(f"`{u}`" for u in facts.failed_upstream)
            return f"Step `{name}` never started: the run was stopped before it could" + (
                f" (it was waiting for {waited})." if waited else "."
            )
        if facts.failed_upstream:
            upstream = ", ".join(f"`{u}`" for u in facts.failed_upstream)
            return (
                f"Step `{name}` never started: it depends on {upstream}, which did not "
                "complete. Fix that step first."
            )
        return f"Step `{name}` never started (the run ended or was stopped before it)."
    status = facts.status
    if status in ("completed", "cached"):
        if status == "cached" or not history:
            return f"Step `{name}` {status}."
        text = f"Step `{name}` completed on attempt {len(history)} with {history[-1].get('memory_limit')}."
        if ended_badly_after_success(history):
            last = history[-1]
            text += (
                f" Its pod then ended {last.get('outcome')} (exit {last.get('exit_code')}) after "
                "the step had reported success, so it was not run again: the process needed more "
                "memory while it exited (atexit handlers, a library's cleanup), or its node ran out."
            )
        if len(history) > 1:
            text += (
                f" It needed {len(history) - 1} retries ({_limits(history)}). The next run "
                "starts it there (learn_start_memory, on by default); to always start there:\n"
                + _setting(f'initial_memory="{history[-1].get("memory_limit")}"')
            )
        return text
    if status in ("stopped", "skipped"):
        reason = f": {facts.error}" if facts.error else "."
        if facts.failed_upstream:
            upstream = ", ".join(f"`{u}`" for u in facts.failed_upstream)
            return f"Step `{name}` was {status} because {upstream} failed{reason}"
        return f"Step `{name}` was {status}{reason}"
    if status != "failed":
        return f"Step `{name}` is {status}: it has not ended yet."
    if not history:
        return f"Step `{name}` failed before any attempt was recorded" + (
            f": {facts.error}" if facts.error else "."
        )
    why, change = _advice(history[-1])
    lines = [f"Step `{name}` failed after {_attempts(len(history))} ({_limits(history)}).", why]
    if change:
        lines += ["What would change the outcome:", *[f"  {line}" for line in change]]
    said = history[-1].get("message") or facts.error
    if said:
        lines.append(f"The orchestrator said: {said}")
    return "\n".join(lines)


def explain_run(
    run_name: str, run_status: str, steps: Sequence[StepFacts], run_error: str | None = None
) -> str:
    """Every step that did not simply complete, failed ones first; a line if all completed.

    ``run_error`` is the run's own stored reason (status reason or exception), if any.
    """
    order = {"failed": 0, "stopped": 1, "skipped": 1, None: 2}
    interesting = [
        s
        for s in steps
        if s.status not in ("completed", "cached")
        or len(s.history) > 1
        or ended_badly_after_success(s.history)
        or learned_from(s.history)
        or any(row.get("growths") for row in s.history)
    ]
    interesting.sort(key=lambda s: order.get(s.status, 3))
    head = f"Run `{run_name}` is {run_status}."
    if run_error:
        head += f" The run's own error: {run_error}"
    if run_status == "failed" and steps and all(s.status is None for s in steps):
        # No step run exists: what failed is the orchestrator, before the first attempt.
        return (
            f"{head}\n\nNo step of it started: the orchestrator failed before starting the "
            "first one (its image, its service account, or the ZenML server it must reach). "
            "Its log says why: the run's orchestrator logs in the ZenML dashboard, or "
            "`kubectl logs` of the run's orchestrator pod."
        )
    if not interesting:
        return head + " Every step completed on its first attempt."
    return "\n\n".join([head, *(explain_step(s, run_status) for s in interesting)])
