"""Server-side `Table` responses, which `kubectl get` asks for (`Accept: ...;as=Table`) and
prints as-is: without them it would show only NAME and AGE."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
Column = tuple[str, str, int, Callable[[Obj, float], Any]]  # name, type, priority, cell


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _seconds(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return float(calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """kubectl's short ages: 45s, 3m20s, 5h, 2d3h, 400d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d" if d < 365 * 2 else f"{d // 365}y"


def _age(o: Obj, now: float) -> str:
    t = _seconds(o["metadata"].get("creationTimestamp"))
    return "<unknown>" if t is None else human_duration(now - t)


def _name(o: Obj, now: float) -> str:
    return str(o["metadata"]["name"])


def _pod_status(o: Obj) -> str:
    status = o.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            t = state["terminated"]
            reason = t.get("reason") or (
                f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode')}"
            )
        elif "running" in state and cs.get("ready") and reason == "Completed":
            reason = "Running"
    if o["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_ready(o: Obj, now: float) -> str:
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for c in statuses if c.get('ready'))}/{total}"


def _pod_restarts(o: Obj, now: float) -> int:
    return sum(
        c.get("restartCount", 0) for c in (o.get("status") or {}).get("containerStatuses") or []
    )


def _job_status(o: Obj, now: float) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            return str(c["type"])
    if (o.get("spec") or {}).get("suspend"):
        return "Suspended"
    return "Running"


def _job_duration(o: Obj, now: float) -> str:
    st = o.get("status") or {}
    start = _seconds(st.get("startTime"))
    if start is None:
        return ""
    end = _seconds(st.get("completionTime")) or now
    return human_duration(end - start)


def _node_status(o: Obj, now: float) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            ready = "Ready" if c.get("status") == "True" else "NotReady"
            return ready + (
                ",SchedulingDisabled" if (o.get("spec") or {}).get("unschedulable") else ""
            )
    return "Unknown"


def _event_last_seen(o: Obj, now: float) -> str:
    t = _seconds(
        o.get("lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp")
    )
    return "<unknown>" if t is None else human_duration(now - t)


def _event_object(o: Obj, now: float) -> str:
    io = o.get("involvedObject") or {}
    return f"{str(io.get('kind', '')).lower()}/{io.get('name', '')}"


def _get(*path: str, default: Any = "<none>") -> Callable[[Obj, float], Any]:
    def cell(o: Obj, now: float) -> Any:
        cur: Any = o
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        return default if cur in (None, "") else cur

    return cell


NAME: Column = ("Name", "string", 0, _name)
AGE: Column = ("Age", "string", 0, _age)
COLUMNS: dict[str, list[Column]] = {
    "pods": [
        NAME,
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, lambda o, now: _pod_status(o)),
        ("Restarts", "string", 0, _pod_restarts),
        AGE,
        ("IP", "string", 1, _get("status", "podIP")),
        ("Node", "string", 1, _get("spec", "nodeName")),
    ],
    "jobs": [
        NAME,
        ("Status", "string", 0, _job_status),
        (
            "Completions",
            "string",
            0,
            lambda o, now: (
                f"{(o.get('status') or {}).get('succeeded', 0)}/{(o.get('spec') or {}).get('completions', 1)}"
            ),
        ),
        ("Duration", "string", 0, _job_duration),
        AGE,
    ],
    "nodes": [
        NAME,
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, lambda o, now: "<none>"),
        AGE,
        ("Version", "string", 0, _get("status", "nodeInfo", "kubeletVersion", default="")),
    ],
    "namespaces": [NAME, ("Status", "string", 0, _get("status", "phase")), AGE],
    "events": [
        ("Last Seen", "string", 0, _event_last_seen),
        ("Type", "string", 0, _get("type", default="")),
        ("Reason", "string", 0, _get("reason", default="")),
        ("Object", "string", 0, _event_object),
        ("Message", "string", 0, _get("message", default="")),
    ],
    "secrets": [
        NAME,
        ("Type", "string", 0, _get("type", default="")),
        ("Data", "string", 0, lambda o, now: len(o.get("data") or {})),
        AGE,
    ],
}


def _partial(o: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o["metadata"],
    }


def to_table(
    resource: str, items: list[Obj], list_meta: Obj, include_object: str = "Metadata"
) -> Obj:
    """A meta.k8s.io/v1 Table of `items` with the columns kubectl shows for `resource`."""
    cols = COLUMNS.get(resource, [NAME, AGE])
    now = time.time()
    rows = []
    for o in items:
        row: Obj = {"cells": [cell(o, now) for _, _, _, cell in cols]}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = _partial(o)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {
                "name": n,
                "type": t,
                "format": "name" if n == "Name" else "",
                "description": "",
                "priority": p,
            }
            for n, t, p, _ in cols
        ],
        "rows": rows,
    }
