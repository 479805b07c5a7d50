"""What kube-controller-manager does to the pods of a node that stopped reporting.

Two of its controllers, as in 1.35: the node lifecycle controller's MarkPodsNotReady (each
pod's `Ready` condition goes False, a `NodeNotReady` Event; the phase stays as the kubelet
last wrote it) and the taint eviction controller (a pod that does not tolerate a NoExecute
taint, or once its `tolerationSeconds` ran out, gets the `DisruptionTarget` condition
`DeletionByTaintManager` and a graceful delete; with no kubelet to confirm it, it stays
Terminating). The Node's conditions and its NoSchedule taint are set by whoever plays the node
going away (`Kubelet.set_node_ready`); this adds the `unreachable` NoExecute taint, except when
no node at all is Ready: then the real controller takes it for a partition of the control plane
(full disruption), taints nothing NoExecute and evicts nothing, so a single-node cluster never
evicts. A periodic pass, like the real node monitor (5 s there, faster here for the tests).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from .defaults import NODE_GONE_TAINTS, UNREACHABLE
from .errors import Conflict, NotFound
from .kubelet.events import now, record_event
from .kubelet.podresources import TERMINAL_PHASES
from .kubelet.status import set_condition
from .scheduler import node_ready, tolerates

log = logging.getLogger(__name__)

NODE_CONTROLLER = "node-controller"
TAINT_CONTROLLER = "taint-eviction-controller"


def toleration_seconds(pod: dict[str, Any], taints: list[dict[str, Any]]) -> float | None:
    """Seconds the pod may stay on a node with these NoExecute taints: 0 if one is not
    tolerated, the smallest `tolerationSeconds` of the matching tolerations, None for ever."""
    least: float | None = None
    for taint in taints:
        if not tolerates(pod, taint):
            return 0.0
        for t in (pod.get("spec") or {}).get("tolerations") or []:
            if tolerates({"spec": {"tolerations": [t]}}, taint) and "tolerationSeconds" in t:
                seconds = max(0.0, float(t["tolerationSeconds"]))
                least = seconds if least is None else min(least, seconds)
    return least


class NodeLifecycleController:
    """MarkPodsNotReady and taint-based eviction for the pods of NotReady nodes."""

    def __init__(self, store: Any, period: float = 0.2) -> None:
        self.store = store
        self.period = period
        self._since: dict[str, float] = {}  # pod uid -> when first seen on a tainted node
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="node-lifecycle", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - a controller keeps going, as the real one does
                log.exception("node lifecycle pass failed")

    def sync(self) -> None:
        """One pass over every node: the pods of a NotReady one are marked and evicted."""
        nodes, _ = self.store.list("nodes")
        full_disruption = not any(node_ready(n) for n in nodes)
        seen: set[str] = set()
        for node in nodes:
            if node_ready(node):
                continue
            name = node["metadata"]["name"]
            node = self._set_no_execute(node, not full_disruption)
            no_execute = [
                t
                for t in (node.get("spec") or {}).get("taints") or []
                if t.get("effect") == "NoExecute"
            ]
            pods, _ = self.store.list("pods", field_selector=f"spec.nodeName={name}")
            for pod in pods:
                if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
                    continue
                seen.add(pod["metadata"]["uid"])
                self._mark_not_ready(pod)
                if no_execute and not pod["metadata"].get("deletionTimestamp"):
                    self._evict_when_due(pod, no_execute)
        self._since = {uid: t for uid, t in self._since.items() if uid in seen}

    def _set_no_execute(self, node: dict[str, Any], tainted: bool) -> dict[str, Any]:
        """The `unreachable` NoExecute taint on a NotReady node, or none (full disruption)."""
        taints = (node.get("spec") or {}).get("taints") or []
        has = any(t.get("key") == UNREACHABLE and t.get("effect") == "NoExecute" for t in taints)
        if has == tainted:
            return node

        def fn(n: dict[str, Any]) -> bool:
            if node_ready(n):
                return False  # back meanwhile: its kubelet removed the taints
            spec = n.setdefault("spec", {})
            kept = [
                t
                for t in spec.get("taints") or []
                if not (t.get("key") in NODE_GONE_TAINTS and t.get("effect") == "NoExecute")
            ]
            if tainted:
                kept.append({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now()})
            spec["taints"] = kept
            if not kept:
                spec.pop("taints")
            return True

        try:
            return dict(self.store.mutate("nodes", None, node["metadata"]["name"], fn))
        except NotFound:
            return node

    def _mark_not_ready(self, pod: dict[str, Any]) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is None or ready.get("status") == "False":
            return

        def fn(p: dict[str, Any]) -> bool:
            if p["metadata"]["uid"] != pod["metadata"]["uid"]:
                return False
            status = p.setdefault("status", {})
            old = next(c for c in status.get("conditions") or [] if c.get("type") == "Ready")
            new = {**old, "status": "False", "lastTransitionTime": now()}
            status["conditions"] = [new if c is old else c for c in status["conditions"]]
            return True

        with contextlib.suppress(NotFound, Conflict):
            meta = pod["metadata"]
            self.store.mutate("pods", meta["namespace"], meta["name"], fn, subresource="status")
            record_event(
                self.store, pod, "NodeNotReady", "Node is not ready", "Warning", NODE_CONTROLLER
            )

    def _evict_when_due(self, pod: dict[str, Any], taints: list[dict[str, Any]]) -> None:
        seconds = toleration_seconds(pod, taints)
        if seconds is None:
            return
        since = self._since.setdefault(pod["metadata"]["uid"], time.monotonic())
        if time.monotonic() - since < seconds:
            return
        meta = pod["metadata"]
        ref = f"{meta['namespace']}/{meta['name']}"
        record_event(
            self.store,
            pod,
            "TaintManagerEviction",
            f"Marking for deletion Pod {ref}",
            component=TAINT_CONTROLLER,
        )

        def fn(p: dict[str, Any]) -> bool:
            if p["metadata"]["uid"] != meta["uid"]:
                return False
            status = p.setdefault("status", {})
            status["conditions"] = set_condition(
                status.get("conditions") or [],
                "DisruptionTarget",
                "True",
                "DeletionByTaintManager",
                "Taint manager: deleting due to NoExecute taint",
            )
            # PodObservedGenerationTracking (on by default since 1.34) stamps the condition.
            generation = p["metadata"].get("generation") or 1
            status["conditions"][-1]["observedGeneration"] = generation
            return True

        with contextlib.suppress(NotFound):
            self.store.mutate("pods", meta["namespace"], meta["name"], fn, subresource="status")
            self.store.delete(
                "pods", meta["namespace"], meta["name"], preconditions={"uid": meta["uid"]}
            )
