"""Building container and pod statuses the way a real kubelet reports them (pure functions)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .events import now
from .logs import termination_log_tail


def waiting(reason: str, message: str | None = None) -> dict[str, Any]:
    body = {"reason": reason}
    if message:
        body["message"] = message
    return {"waiting": body}


def running(started_at: str) -> dict[str, Any]:
    return {"running": {"startedAt": started_at}}


def terminated_reason(exit_code: int, oom_killed: bool) -> str:
    """`OOMKilled` whenever the cgroup counter rose, whatever PID 1's own exit code was."""
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def terminated(
    exit_code: int,
    reason: str,
    started_at: str | None,
    finished_at: str | None = None,
    message: str | None = None,
    container_id: str | None = None,
) -> dict[str, Any]:
    """A terminated state as kubelet 1.35 writes it: never a `signal` (CRI reports none; a
    signal shows only as exit code 128+N)."""
    body: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": finished_at or now(),
    }
    if message:
        body["message"] = message
    if container_id:
        body["containerID"] = container_id
    return {"terminated": body}


def termination_message(
    spec: dict[str, Any], exit_code: int, runtime_message: str | None, log_path: Path
) -> str | None:
    """``terminated.message`` as kubelet 1.35 builds it: the runtime's message, then the tail of
    the log if the container failed under ``terminationMessagePolicy: FallbackToLogsOnError``.
    A local pod is a process on the host with nothing mounted at its terminationMessagePath,
    so it never writes that file: ``File`` gives no message, as for a real container that
    wrote none."""
    message = runtime_message or ""
    if spec.get("terminationMessagePolicy") == "FallbackToLogsOnError" and exit_code != 0:
        tail = termination_log_tail(log_path)
        if tail:
            message = f"{message}: {tail}" if message else tail
    return message or None


@dataclass
class ContainerRecord:
    """What the kubelet knows about one container of a pod, and its current process."""

    spec: dict[str, Any]
    init: bool = False
    state: dict[str, Any] = field(default_factory=lambda: waiting("ContainerCreating"))
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    runs: int = 0  # processes started so far; numbers the log files
    container_id: str | None = None
    # the running process, if any
    proc: Any = None  # subprocess.Popen, or a SimulatedProcess
    cgroup: Path | None = None
    oom_baseline: int = 0
    next_start: float = 0.0  # monotonic time before which a restart waits (back-off)
    backoff: float = 0.0
    pull_attempts: int = 0
    killed_reason: str | None = None  # set when the kubelet itself stopped the process
    # readiness: a container with a readinessProbe starts unready (the probe's initial Failure)
    prober: Any = None  # the running ReadinessProber, if any
    probe_ready: bool = True
    probe_last: bool | None = None  # last probe result and how many in a row
    probe_run: int = 0
    # in-place resize: what the kubelet admitted, and what the running container has now
    allocated: dict[str, Any] = field(default_factory=dict)
    actual: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def is_running(self) -> bool:
        return "running" in self.state

    @property
    def ready(self) -> bool:
        """`containerStatuses[].ready`: running and, with a readinessProbe, passing it."""
        return self.is_running and not self.init and self.probe_ready

    @property
    def exit_code(self) -> int | None:
        t = self.state.get("terminated")
        return None if t is None else int(t["exitCode"])

    def status(self) -> dict[str, Any]:
        """The V1ContainerStatus dict."""
        body: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.is_running,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            body["containerID"] = self.container_id
            # kubelet 1.35 reports both once the container exists (allocated: requests only)
            if self.allocated.get("requests"):
                body["allocatedResources"] = dict(self.allocated["requests"])
            if self.actual:
                body["resources"] = {k: dict(v) for k, v in self.actual.items() if v}
            body["user"] = process_user()
        return body


def process_user() -> dict[str, Any]:
    """`containerStatuses[].user` (kubelet 1.35): who the container's process runs as; here
    the kubelet's own user, as its processes are the containers."""
    gid = os.getgid()
    groups = sorted({gid, *os.getgroups()})
    return {"linux": {"uid": os.getuid(), "gid": gid, "supplementalGroups": groups}}


def pod_phase(restart_policy: str, init: list[ContainerRecord], main: list[ContainerRecord]) -> str:
    """The pod phase from its containers, following kubelet's `getPhase`."""
    for c in init:
        code = c.exit_code
        if code is None:
            return "Pending"
        if code != 0:
            return "Failed" if restart_policy == "Never" else "Pending"
    pending = running = stopped = succeeded = 0
    for c in main:
        if c.is_running:
            running += 1
        elif "terminated" in c.state:
            stopped += 1
            succeeded += c.exit_code == 0
        elif "terminated" in c.last_state:
            stopped += 1  # waiting to restart
        else:
            pending += 1
    if pending:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: str | None = None,
    message: str | None = None,
) -> list[dict[str, Any]]:
    """Set one pod/node condition; lastTransitionTime moves only when the status changes."""
    old = next((c for c in conditions if c.get("type") == type_), None)
    cond: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None}
    cond["lastTransitionTime"] = (
        old["lastTransitionTime"]
        if old is not None and old.get("status") == status and old.get("lastTransitionTime")
        else now()
    )
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    out = [c for c in conditions if c.get("type") != type_]
    out.append(cond)
    return out


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None
