"""Binding pending pods to nodes the way kube-scheduler's default plugins decide.

A node fits when it is Ready and untainted (or tolerated), schedulable, and its allocatable
memory and CPU minus the requests of its non-terminal pods cover the pod's requests. Pods that
fit nowhere get `PodScheduled=False`/`Unschedulable` and a `FailedScheduling` event, and are
tried again only when capacity may have freed: a pod finished or went away, or a node changed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, OrderedDict
from fractions import Fraction
from typing import Any

from .defaults import NOT_READY
from .errors import NotFound
from .kubelet.events import record_event
from .kubelet.informer import Informer
from .kubelet.podresources import CPU, MEMORY, TERMINAL_PHASES, pod_requests
from .kubelet.status import set_condition
from .validation import parse_quantity

log = logging.getLogger(__name__)

COMPONENT = "default-scheduler"
_STOP = object()


def tolerates(pod: dict[str, Any], taint: dict[str, Any]) -> bool:
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def node_ready(node: dict[str, Any]) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def _histogram(total: int, counts: Counter[str]) -> str:
    """kube-scheduler's FitError text: `0/N nodes are available: <count reason>, ... .`,
    sorted as the strings "<count> <reason>" sort."""
    parts = sorted(f"{n} {reason}" for reason, n in counts.items())
    return f"0/{total} nodes are available: {', '.join(parts)}."


def unschedulable_message(
    pod: dict[str, Any], total: int, reasons: Counter[str], unresolvable: int
) -> str:
    """The PodScheduled message kube-scheduler 1.35 writes when no node fits: the filters'
    histogram, then its PostFilter plugins' verdicts in order, DynamicResources (a pod with no
    resource claims has none to free) and DefaultPreemption. Nodes that failed for a reason no
    eviction can fix are `Preemption is not helpful`; on the others no pod has a lower priority
    (the local cluster has no PriorityClasses), so there are no victims."""
    if total == 0:
        return "no nodes available to schedule pods"
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        preemption = "not eligible due to preemptionPolicy=Never."
    else:
        verdicts: Counter[str] = Counter()
        if unresolvable:
            verdicts["Preemption is not helpful for scheduling"] = unresolvable
        if total - unresolvable:
            verdicts["No preemption victims found for incoming pod"] = total - unresolvable
        preemption = _histogram(total, verdicts)
    return f"{_histogram(total, reasons)} no new claims to deallocate, preemption: {preemption}"


class Scheduler:
    """Watch-driven scheduler: one worker thread owns all decisions (no races on capacity)."""

    def __init__(self, store: Any, scheduler_name: str = COMPONENT) -> None:
        self.store = store
        self.scheduler_name = scheduler_name
        self._queue: queue.Queue[Any] = queue.Queue()
        self._nodes: dict[str, dict[str, Any]] = {}
        # node name -> {pod uid: requests} for pods bound there and not yet terminal
        self._usage: dict[str, dict[str, dict[str, Fraction]]] = {}
        self._pending: OrderedDict[str, dict[str, Any]] = OrderedDict()  # uid -> pod
        self._informers = [
            Informer(
                store,
                "pods",
                self._enqueue("pod"),
                name="scheduler-pods",
                on_sync=lambda pods: self._queue.put(("sync", "SYNC", pods)),
            ),
            Informer(store, "nodes", self._enqueue("node"), name="scheduler-nodes"),
        ]
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()
        for informer in self._informers:
            informer.start()

    def stop(self) -> None:
        for informer in self._informers:
            informer.stop()
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(5)

    def _enqueue(self, kind: str) -> Any:
        def handler(event_type: str, obj: dict[str, Any]) -> None:
            self._queue.put((kind, event_type, obj))

        return handler

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            retry = False
            # Take everything already queued, then schedule once: a burst of events (a Job
            # creating many pods, many pods finishing) costs one pass, not one per event.
            while True:
                if item is _STOP:
                    return
                try:
                    retry |= self._observe(*item)
                except Exception:  # noqa: BLE001 - one bad object must not stop scheduling
                    log.exception("scheduler: handling %s failed", item[:2])
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._schedule_pending(retry)

    def _observe(self, kind: str, event_type: str, obj: Any) -> bool:
        """Update the cache; True when capacity may have freed (unschedulable pods retry)."""
        if kind == "sync":  # a re-list: forget pods deleted while the watch was down
            present = {p["metadata"]["uid"] for p in obj}
            for pods in self._usage.values():
                for uid in [u for u in pods if u not in present]:
                    del pods[uid]
            for uid in [u for u in self._pending if u not in present]:
                del self._pending[uid]
            return True
        if kind == "node":
            name = obj["metadata"]["name"]
            if event_type == "DELETED":
                self._nodes.pop(name, None)
            else:
                self._nodes[name] = obj
            return True
        uid = obj["metadata"]["uid"]
        node = (obj.get("spec") or {}).get("nodeName")
        if event_type == "DELETED" or node or obj["metadata"].get("deletionTimestamp"):
            self._pending.pop(uid, None)
        if node:
            holds = event_type != "DELETED" and obj["status"].get("phase") not in TERMINAL_PHASES
            pods = self._usage.setdefault(node, {})
            if holds:
                before, pods[uid] = pods.get(uid), pod_requests(obj)
                # An in-place resize that shrank the pod frees room too.
                return before is not None and any(pods[uid][r] < before[r] for r in before)
            return pods.pop(uid, None) is not None
        if event_type == "DELETED" or obj["metadata"].get("deletionTimestamp"):
            return False
        if (obj.get("spec") or {}).get("schedulerName", COMPONENT) != self.scheduler_name:
            return False
        known = uid in self._pending
        self._pending[uid] = obj
        if not known:
            self._pending[uid]["_new"] = True  # try at once, even without a capacity change
        return False

    def _schedule_pending(self, retry_all: bool) -> None:
        due = [(uid, pod) for uid, pod in self._pending.items() if retry_all or pod.get("_new")]
        if not due:
            return
        # Nodes are few: read them fresh, so a node that just went NotReady (its watch event
        # possibly still on the way) never gets a pod.
        nodes, _ = self.store.list("nodes")
        self._nodes = {n["metadata"]["name"]: n for n in nodes}
        for uid, pod in due:
            pod.pop("_new", None)
            self._schedule(uid, pod)

    # -- decisions ---------------------------------------------------------------------------
    def _free(self, node: dict[str, Any]) -> tuple[dict[str, Fraction], int]:
        alloc = (node.get("status") or {}).get("allocatable") or {}
        pods = self._usage.get(node["metadata"]["name"], {})
        free = {}
        for name in (MEMORY, CPU):
            used = sum((r[name] for r in pods.values()), Fraction(0))
            free[name] = parse_quantity(alloc.get(name, 0)) - used
        max_pods = int(parse_quantity(alloc.get("pods", 110)))
        return free, max_pods - len(pods)

    def _filter(self, pod: dict[str, Any], node: dict[str, Any]) -> tuple[list[str], bool]:
        """Why `pod` cannot go to `node` (kube-scheduler's reason strings; [] if it fits), and
        whether that is unresolvable: no preemption on that node could ever make room."""
        spec = node.get("spec") or {}
        if spec.get("unschedulable"):
            return ["node(s) were unschedulable"], True
        taints = [
            t for t in spec.get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")
        ]
        if not node_ready(node) and not taints:
            taints = [{"key": NOT_READY, "effect": "NoSchedule"}]
        for taint in taints:
            if not tolerates(pod, taint):
                why = f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
                return [why], True
        free, free_pods = self._free(node)
        alloc = (node.get("status") or {}).get("allocatable") or {}
        requests = pod_requests(pod)
        reasons = ["Too many pods"] if free_pods < 1 else []
        unresolvable = False
        for name in (CPU, MEMORY):  # NodeResourcesFit's order
            if requests[name] > free[name]:
                reasons.append(f"Insufficient {name}")
                # Larger than the whole node: kube 1.35's NodeResourcesFit says unresolvable.
                unresolvable |= requests[name] > parse_quantity(alloc.get(name, 0))
        return reasons, unresolvable

    def _schedule(self, uid: str, pod: dict[str, Any]) -> None:
        reasons: Counter[str] = Counter()
        unresolvable = 0
        best: tuple[Fraction, str] | None = None
        for name, node in sorted(self._nodes.items()):
            why, hopeless = self._filter(pod, node)
            reasons.update(why)
            unresolvable += bool(why) and hopeless
            if not why:
                free, _ = self._free(node)
                if best is None or free[MEMORY] > best[0]:  # least allocated first
                    best = (free[MEMORY], name)
        if best is None:
            self._unschedulable(
                pod, unschedulable_message(pod, len(self._nodes), reasons, unresolvable)
            )
            return
        if self._bind(pod, best[1]):
            self._pending.pop(uid, None)
            self._usage.setdefault(best[1], {})[uid] = pod_requests(pod)
        else:
            self._pending.pop(uid, None)  # gone or bound elsewhere: the watch will tell

    def _bind(self, pod: dict[str, Any], node: str) -> bool:
        meta = pod["metadata"]

        def fn(obj: dict[str, Any]) -> bool:
            if obj["metadata"]["uid"] != meta["uid"] or (obj.get("spec") or {}).get("nodeName"):
                return False
            obj["spec"]["nodeName"] = node
            status = obj.setdefault("status", {})
            status["conditions"] = _observed(
                obj, set_condition(status.get("conditions") or [], "PodScheduled", "True")
            )
            return True

        try:
            bound = self.store.mutate("pods", meta.get("namespace"), meta["name"], fn)
        except NotFound:
            return False
        if bound["spec"].get("nodeName") != node or bound["metadata"]["uid"] != meta["uid"]:
            return False
        record_event(
            self.store,
            bound,
            "Scheduled",
            f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {node}",
            component=COMPONENT,
            action="Binding",
        )
        return True

    def _unschedulable(self, pod: dict[str, Any], message: str) -> None:
        meta = pod["metadata"]

        def fn(obj: dict[str, Any]) -> bool:
            if obj["metadata"]["uid"] != meta["uid"] or (obj.get("spec") or {}).get("nodeName"):
                return False
            status = obj.setdefault("status", {})
            status["conditions"] = _observed(
                obj,
                set_condition(
                    status.get("conditions") or [],
                    "PodScheduled",
                    "False",
                    "Unschedulable",
                    message,
                ),
            )
            return True

        try:
            current = self.store.mutate(
                "pods", meta.get("namespace"), meta["name"], fn, subresource="status"
            )
        except NotFound:
            self._pending.pop(meta["uid"], None)
            return
        record_event(
            self.store,
            current,
            "FailedScheduling",
            message,
            "Warning",
            COMPONENT,
            action="Scheduling",
        )


def _observed(pod: dict[str, Any], conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kube-scheduler 1.35 stamps PodScheduled with the pod generation it scheduled."""
    gen = int(pod["metadata"].get("generation") or 1)
    return [
        {**c, "observedGeneration": gen} if c.get("type") == "PodScheduled" else c
        for c in conditions
    ]
