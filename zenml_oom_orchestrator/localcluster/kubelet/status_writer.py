"""Writing a pod worker's view of its pod to the store's status subresource."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .podresources import TERMINAL_PHASES
from .resize import IN_PROGRESS, PENDING, with_generation
from .status import ContainerRecord, pod_phase, set_condition

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

HOST_IP = "127.0.0.1"


class StatusWriter:
    """Mixin for PodWorker: builds the pod status from its container records."""

    kubelet: Kubelet
    store: Any
    pod: dict[str, Any]
    uid: str
    namespace: str
    name: str
    policy: str
    start_time: str
    init: list[ContainerRecord]
    main: list[ContainerRecord]
    _override: tuple[str, str, str] | None
    _kill_at: float | None
    _frozen: bool
    _terminal_due: float | None

    def __init__(self) -> None:
        self._conditions: list[dict[str, Any]] = []
        self._extra_conditions: list[dict[str, Any]] = []  # DisruptionTarget from faults
        self._last: dict[str, Any] | None = None
        self.sandbox_ready = False  # the pod's sandbox: made before its first container starts
        self.resize_conditions: list[dict[str, Any]] = []  # PodResizePending/InProgress
        self.resize_event: tuple[str, int] | None = None  # the pending verdict last reported

    @property
    def running(self) -> list[ContainerRecord]:
        raise NotImplementedError

    def computed_phase(self) -> str:
        """The phase the kubelet computes from its containers, before the terminal hold."""
        if self._override is not None:
            return self._override[0]
        if self._kill_at is not None and not self.running:
            # Since 1.27 a deleted pod ends in a terminal phase before it goes away.
            ok = all(r.exit_code == 0 for r in self.main)
            return "Succeeded" if ok else "Failed"
        return pod_phase(self.policy, self.init, self.main)

    def phase(self) -> str:
        """The phase reported: a terminal one waits until the pod's sandbox is torn down."""
        phase = self.computed_phase()
        if phase in TERMINAL_PHASES and self._override is None and self._terminal_due is not None:
            # The containers' end is reported first, the terminal phase in a later update.
            return str((self._last or {}).get("phase") or "Pending")
        return phase

    def build_status(self) -> dict[str, Any]:
        # Conditions follow the computed phase (a real kubelet's generateAPIPodStatus), even
        # while the status manager still holds the reported phase back.
        phase, computed = self.phase(), self.computed_phase()
        terminal = phase in TERMINAL_PHASES
        incomplete = [r.name for r in self.init if r.exit_code != 0]
        unready = [r.name for r in self.main if not r.ready]
        conds = self._conditions
        if not self._frozen:
            # True once the sandbox exists; a terminal phase is reported only after the
            # kubelet tore the sandbox down, so it comes with False.
            sandbox = self.sandbox_ready and not terminal
            conds = set_condition(conds, "PodReadyToStartContainers", str(sandbox))
        if computed == "Succeeded":
            conds = set_condition(conds, "Initialized", "True", "PodCompleted")
        elif incomplete and not any(r.runs for r in self.main):
            msg = f"containers with incomplete status: [{' '.join(incomplete)}]"
            conds = set_condition(conds, "Initialized", "False", "ContainersNotInitialized", msg)
        else:
            conds = set_condition(conds, "Initialized", "True")
        for type_ in ("Ready", "ContainersReady"):
            if computed in TERMINAL_PHASES:
                reason = "PodCompleted" if computed == "Succeeded" else "PodFailed"
                conds = set_condition(conds, type_, "False", reason)
            elif self._frozen:
                conds = set_condition(conds, type_, "False", "NodeNotReady")
            elif unready:
                msg = f"containers with unready status: [{' '.join(unready)}]"
                conds = set_condition(conds, type_, "False", "ContainersNotReady", msg)
            else:
                conds = set_condition(conds, type_, "True")
        self._conditions = conds
        gen = self.generation
        status: dict[str, Any] = {
            "observedGeneration": gen,
            "phase": phase,
            "conditions": with_generation(
                [*self.resize_conditions, *conds, *self._extra_conditions], gen
            ),
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "startTime": self.start_time,
        }
        if self.sandbox_ready:  # the pod's IP comes with its sandbox, and stays
            status["podIP"], status["podIPs"] = HOST_IP, [{"ip": HOST_IP}]
        if self._frozen and self._last is not None:
            for key in ("initContainerStatuses", "containerStatuses"):
                if key in self._last:
                    status[key] = self._last[key]
        else:
            if self.init:
                status["initContainerStatuses"] = [r.status() for r in self.init]
            status["containerStatuses"] = [r.status() for r in self.main]
        if self._override is not None:
            status["reason"], status["message"] = self._override[1], self._override[2]
        return status

    @property
    def generation(self) -> int:
        return int(self.pod["metadata"].get("generation") or 1)

    def set_disruption_target(self, reason: str, message: str) -> None:
        """The DisruptionTarget condition: the pod ends for an infrastructure reason."""
        self._extra_conditions = set_condition([], "DisruptionTarget", "True", reason, message)

    def write_status(self) -> None:
        """Write the status if it changed; foreign conditions and qosClass are kept."""
        mine = self.build_status()
        if mine == self._last:
            return
        mine_types = {c["type"] for c in mine["conditions"]} | {PENDING, IN_PROGRESS}
        gen = mine["observedGeneration"]

        def fn(pod: dict[str, Any]) -> bool:
            if pod["metadata"].get("uid") != self.uid:
                return False  # a new pod took the name
            old = pod.get("status") or {}
            foreign = [c for c in old.get("conditions") or [] if c.get("type") not in mine_types]
            if not any(c.get("type") == "PodScheduled" for c in foreign):
                foreign.append(
                    {
                        "type": "PodScheduled",
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": self.start_time,
                    }
                )
            foreign = with_generation(foreign, gen)
            new = {**old, **mine, "conditions": [*mine["conditions"], *foreign]}
            for key in ("reason", "message"):
                if key not in mine:
                    new.pop(key, None)
            pod["status"] = new
            return True

        try:
            self.store.mutate("pods", self.namespace, self.name, fn, subresource="status")
            self._last = mine
        except NotFound:
            self._last = mine  # deleted meanwhile: the watch tells the kubelet
