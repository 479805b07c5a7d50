"""Reading pods the way the API returns them, and the Outcomes they state (internal).

The classifier accepts ``kubernetes.client`` models and the API's JSON. Models are turned
into camelCase JSON once (:func:`plain`), without importing kubernetes, which keeps the
classifier pure and fast; :func:`get` also accepts ``model.to_dict()``'s snake_case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .outcome import Outcome, OutcomeKind
from .quantity import QuantityError, memory_bytes

# node-problem-detector's Event for a kernel OOM kill; it names a process, not a pod.
OOM_EVENT_REASONS = {"OOMKilling"}
_USING_RE = re.compile(r"Container (?P<name>\S+) was using (?P<used>[^\s,]+)")


def plain(obj: Any) -> Any:
    """A kubernetes.client model → the API's camelCase JSON.

    Same result as ``ApiClient().sanitize_for_serialization`` for everything we read.
    """
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if hasattr(obj, "openapi_types") and hasattr(obj, "attribute_map"):
        return {
            obj.attribute_map[attr]: plain(getattr(obj, attr))
            for attr in obj.openapi_types
            if getattr(obj, attr) is not None
        }
    return obj


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def get(data: Any, *path: str) -> Any:
    """Follow camelCase keys, falling back to their snake_case spelling."""
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data[key] if key in data else data.get(_snake(key))
    return data


def timestamp(value: Any) -> float | None:
    """An API timestamp (RFC 3339 string or datetime) as epoch seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def term_signal(term: Mapping[str, Any]) -> int | None:
    """The signal that ended a container: the runtime's own field, else exit code 128 + N."""
    signal = get(term, "signal")
    if isinstance(signal, int) and signal:
        return signal
    code = get(term, "exitCode")
    return code - 128 if isinstance(code, int) and 128 < code < 160 else None


def parse_eviction_message(message: str, container: str | None = None) -> tuple[bool, int | None]:
    """Return ``(memory_pressure, bytes_used)`` from a kubelet eviction message.

    Handles both formats ("..., which exceeds its request of M." and "Threshold quantity:
    ..., request is M, has larger consumption of memory.") and their trailing spaces. The
    usage is the named container's, else the largest one mentioned.
    """
    text = message.strip()
    pressure = "low on resource: memory" in text
    used: dict[str, int] = {}
    for match in _USING_RE.finditer(text):
        try:
            used[match["name"]] = memory_bytes(match["used"])
        except QuantityError:
            continue  # an unreadable number must not hide the eviction itself
    if container in used:
        return pressure, used[container]
    return pressure, max(used.values(), default=None)


@dataclass(frozen=True)
class ContainerView:
    """One container status, flattened."""

    name: str
    init: bool  # an init container that must finish before the step starts
    sidecar: bool  # a native sidecar (init container with restartPolicy Always) or ephemeral
    state: Mapping[str, Any]
    last: Mapping[str, Any]
    group: str  # the status list it came from, for evidence strings

    def terminated(self, last: bool = False) -> Mapping[str, Any] | None:
        return get(self.last if last else self.state, "terminated")

    @property
    def waiting_reason(self) -> str | None:
        return get(self.state, "waiting", "reason")

    @property
    def running(self) -> bool:
        return get(self.state, "running") is not None

    @property
    def ended(self) -> Mapping[str, Any] | None:
        """How it ended: the current termination, or the last one while in CrashLoopBackOff."""
        if self.terminated() is not None:
            return self.terminated()
        return self.terminated(last=True) if self.waiting_reason == "CrashLoopBackOff" else None

    def where(self, last: bool = False) -> str:
        return f"{self.group}[{self.name}]." + ("lastState" if last else "state")


def container_views(pod: Mapping[str, Any]) -> list[ContainerView]:
    """Every container status of the pod: init, regular and ephemeral."""
    spec_inits = {get(c, "name"): c for c in get(pod, "spec", "initContainers") or ()}
    regular_started = any(
        get(raw, "state", "running") is not None or get(raw, "state", "terminated") is not None
        for raw in get(pod, "status", "containerStatuses") or ()
    )
    out: list[ContainerView] = []
    for group in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for raw in get(pod, "status", group) or ():
            name = get(raw, "name") or ""
            is_init = group == "initContainerStatuses"
            # kubernetes.client < 28 drops spec.initContainers[].restartPolicy, so also infer
            # a native sidecar from the status: a plain init container never runs alongside
            # the regular containers.
            native_sidecar = is_init and (
                get(spec_inits.get(name), "restartPolicy") == "Always"
                or (regular_started and get(raw, "state", "running") is not None)
            )
            out.append(
                ContainerView(
                    name=name,
                    init=is_init and not native_sidecar,
                    sidecar=native_sidecar or group == "ephemeralContainerStatuses",
                    state=get(raw, "state") or {},
                    last=get(raw, "lastState") or {},
                    group=group,
                )
            )
    return out


def pick_main(views: list[ContainerView], main_container: str) -> ContainerView | None:
    """The step's container: the one named ``main_container``, or the only regular one."""
    regular = [v for v in views if not v.init and not v.sidecar]
    named = [v for v in regular if v.name == main_container]
    return named[0] if named else (regular[0] if len(regular) == 1 else None)


@dataclass
class PodView:
    """Everything the rules read about one pod, already normalised."""

    raw: Mapping[str, Any]  # the camelCase JSON
    phase: str
    reason: str
    message: str
    main_container: str
    main: ContainerView | None
    inits: list[ContainerView]  # init containers that must finish (not native sidecars)
    sidecars: list[ContainerView]  # other regular containers, native sidecars, ephemeral
    events: list[Mapping[str, Any]]
    oom_hint: str | None  # outside evidence of an OOM kill, see the module docstring
    now: float
    pending_timeout: float | None
    node_lost_timeout: float | None

    @classmethod
    def read(
        cls,
        pod: Any,
        events: Sequence[Any] | None,
        *,
        main_container: str,
        cgroup_oom: bool | None,
        now: float,
        pending_timeout: float | None,
        node_lost_timeout: float | None,
    ) -> PodView:
        """Normalise a pod (model, dict or ``None`` for gone) and its Events once."""
        evs = [plain(e) for e in events or ()]
        hint = (
            "event OOMKilling" if any(get(e, "reason") in OOM_EVENT_REASONS for e in evs) else None
        )
        hint = "cgroup oom_kill counter" if cgroup_oom else hint
        data = plain(pod) if pod is not None else {}
        views = container_views(data)
        main = pick_main(views, main_container)
        return cls(
            raw=data,
            phase=get(data, "status", "phase") or ("Failed" if pod is None else "Pending"),
            reason=get(data, "status", "reason") or "",
            message=get(data, "status", "message") or "",
            main_container=main_container,
            main=main,
            inits=[v for v in views if v.init],
            sidecars=[v for v in views if v is not main and not v.init],
            events=evs,
            oom_hint=hint,
            now=now,
            pending_timeout=pending_timeout,
            node_lost_timeout=node_lost_timeout,
        )

    @property
    def name(self) -> str | None:
        """The step container's name, from its status or, before it has one, from the spec."""
        if self.main:
            return self.main.name
        specs = [get(c, "name") for c in get(self.raw, "spec", "containers") or ()]
        if self.main_container in specs:
            return self.main_container
        return specs[0] if len(specs) == 1 else None

    @property
    def step_containers(self) -> list[ContainerView]:
        return ([self.main] if self.main else []) + self.inits

    def condition(self, kind: str) -> Mapping[str, Any] | None:
        conditions = get(self.raw, "status", "conditions") or ()
        return next((c for c in conditions if get(c, "type") == kind), None)

    def event(self, *reasons: str) -> Mapping[str, Any] | None:
        return next((e for e in self.events if get(e, "reason") in reasons), None)

    def waited(self, *stamps: Any) -> float:
        """Seconds since the first of ``stamps`` that is a timestamp (0 if none is)."""
        start = next((t for t in map(timestamp, stamps) if t is not None), self.now)
        return self.now - start


def outcome_from_term(
    kind: OutcomeKind, view: ContainerView, term: Mapping[str, Any], evidence: str
) -> Outcome:
    """An outcome told by one container's termination."""
    return Outcome(
        kind,
        container=view.name,
        init_container=view.init,
        exit_code=get(term, "exitCode"),
        signal=term_signal(term),
        reason=get(term, "reason"),
        message=plain_text(get(term, "message") or ""),
        evidence=evidence,
    )


# Terminal colour codes (CSI sequences): a termination message that falls back to the log's
# tail (FallbackToLogsOnError) carries ZenML's coloured log lines.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def plain_text(message: str) -> str:
    """A container's termination message without colour codes, stripped."""
    return _ANSI.sub("", message).strip()


def pod_outcome(
    pod: PodView, kind: OutcomeKind, reason: str, message: str, evidence: str
) -> Outcome:
    """An outcome decided by the pod, reported against the main container if we know it."""
    term = pod.main.ended if pod.main else None
    pressure, used = parse_eviction_message(message, pod.name)
    evicted = kind is OutcomeKind.EVICTED
    return Outcome(
        kind,
        container=pod.name,
        exit_code=get(term, "exitCode") if term else None,
        signal=term_signal(term) if term else None,
        reason=reason,
        message=message.strip(),
        memory_pressure=pressure and evicted,
        memory_used=used if evicted else None,
        evidence=evidence,
    )
