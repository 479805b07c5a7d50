"""The attempt history as it is stored in ZenML run metadata, and as a table for people.

One row per attempt: ``attempt, memory_request, memory_limit, outcome, exit_code, duration_s,
message``, and on the first attempt ``memory_source`` (where its memory came from; a learned
one is printed under the table). The orchestrator pod stores the rows of a step on its final step run (key
``oom_attempts``); a synchronous run prints :func:`format_attempt_table` when it ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zenml_oom_orchestrator.quantity import format_memory

if TYPE_CHECKING:
    from zenml_oom_orchestrator.policy import Growth

COLUMNS = ("step", "attempt", "request", "limit", "outcome", "exit", "duration", "message")
MESSAGE_WIDTH = 70


def _cell(row: Mapping[str, Any], column: str) -> str:
    if column == "request":
        value = row.get("memory_request")
    elif column == "limit":
        value = row.get("memory_limit")
    elif column == "exit":
        value = row.get("exit_code")
    elif column == "duration":
        seconds = row.get("duration_s")
        value = None if seconds is None else f"{float(seconds):.1f}s"
    else:
        value = row.get(column)
    text = "-" if value is None or value == "" else " ".join(str(value).split())
    if column == "message" and len(text) > MESSAGE_WIDTH:
        # Shortened at a word and marked; the whole message is in `zenml-oom explain`.
        cut = text[: MESSAGE_WIDTH - 4]
        text = (cut.rsplit(" ", 1)[0] if " " in cut else cut) + " ..."
    return text


def format_attempt_table(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    final: Mapping[str, str] | None = None,
    notes: Mapping[str, str] | None = None,
) -> str:
    """A fixed-width table of every attempt of every step, steps in the given order.

    ``final`` maps a step to its final status; a step with no attempts (cached, skipped, or
    refused before its first pod) gets one row saying so, with its ``notes`` entry (why) as
    the message.
    """
    final, notes = final or {}, notes or {}
    rows: list[list[str]] = []

    def no_attempt(step: str, status: str) -> list[str]:
        message = _cell({"message": notes.get(step)}, "message") if notes.get(step) else ""
        return [step, "-", "-", "-", status, "-", "-", message]

    for step, attempts in histories.items():
        if not attempts:
            rows.append(no_attempt(step, final.get(step, "no attempt")))
            continue
        for attempt in attempts:
            rows.append([step] + [_cell(attempt, c) for c in COLUMNS[1:]])
    for step, status in final.items():
        if step not in histories:
            rows.append(no_attempt(step, status))
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines + learned_start_lines(histories) + growth_lines(histories))


def growth_row(growth: Growth) -> dict[str, Any]:
    """One in-place growth as stored in an attempt row's ``growths`` (plain JSON)."""
    return {
        "at": growth.at,
        "from": format_memory(growth.from_limit),
        "to": format_memory(growth.to_limit),
        "outcome": growth.outcome,
        "seconds": growth.seconds,
        "message": growth.message or None,
    }


def growth_text(growths: Sequence[Mapping[str, Any]]) -> str:
    """``512Mi -> 1Gi (in force, 0.8 s), 1Gi -> 2Gi (infeasible: ...)``."""
    parts = []
    for g in growths:
        outcome = str(g.get("outcome", "?")).replace("_", " ")
        took = f", {float(g['seconds']):.1f} s" if g.get("seconds") is not None else ""
        why = f": {g['message']}" if g.get("message") and g.get("outcome") != "in_force" else ""
        parts.append(f"{g.get('from')} -> {g.get('to')} ({outcome}{took}{why})")
    return ", ".join(parts)


def growth_lines(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """One line per attempt that grew in place (or tried to) while it ran."""
    lines = []
    for step, attempts in histories.items():
        for row in attempts:
            if row.get("growths"):
                lines.append(
                    f"{step} attempt {row.get('attempt')} grew in place: "
                    + growth_text(row["growths"])
                )
    return lines


def learned_start_lines(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """One line per step whose first attempt started at a learned memory, saying where from
    (the table's message column is too narrow for it, and nobody should wonder why)."""
    lines = []
    for step, attempts in histories.items():
        source = str((attempts[0].get("memory_source") or "") if attempts else "")
        if source.startswith("learned"):
            lines.append(f"{step} started at {attempts[0].get('memory_limit')}: {source}")
    return lines
