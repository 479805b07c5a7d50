"""Grow a running attempt's memory in place before the kernel kills it (issue 12).

How it hears of a crossing: every attempt pod gets the near-limit readiness probe
(nearlimit.py) on its main container; the kubelet sets the container's ``ready`` to false
within a probe period (``grow_check_seconds``) of the working set passing ``grow_at_fraction``
of the limit, and the one pod watch delivers it. The grower then patches ``pods/resize`` with
the next memory (the OOM arithmetic, policy.growth_target) and reads the outcome from the pod
the watch delivers: ``status.containerStatuses[].resources`` at the new limit is in force; a
``PodResizePending`` condition with reason ``Infeasible``, or a resize not in force within
GROW_TIMEOUT (``Deferred`` or slow), is a growth that did not happen: the attempt runs on at its
limit and an OOM kill takes the retry path as before. Each growth lands in the attempt's record, on the
pod (annotation, for a restarted supervisor), in a ``MemoryGrown`` Event and in the log.

A cluster without ``pods/resize`` (server older than 1.33, or the subresource refused as
unknown) is found once per run, said once, and no probe is added after that.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from zenml_oom_orchestrator.policy import Growth, Memory, growth_target, may_grow
from zenml_oom_orchestrator.policy.growth import GrowthOutcome
from zenml_oom_orchestrator.quantity import QuantityError, format_memory, memory_bytes
from zenml_oom_orchestrator.supervisor import naming
from zenml_oom_orchestrator.supervisor.manifests import main_container_of
from zenml_oom_orchestrator.supervisor.nearlimit import near_limit_probe
from zenml_oom_orchestrator.supervisor.pending import created_at
from zenml_oom_orchestrator.supervisor.resize import RESIZE_SINCE, ResizeApi
from zenml_oom_orchestrator.supervisor.state import StepState

if TYPE_CHECKING:
    from zenml_oom_orchestrator.supervisor.engine import Engine

log = logging.getLogger(__name__)

ANN_GROWTHS = naming.ANNOTATION_PREFIX + "growths"  # JSON list: the attempt's growths so far
REASON_GROWN = "MemoryGrown"
REASON_NOT_GROWN = "MemoryNotGrown"
PROBE_MARK = "oom-near-limit"  # $0 of the probe's script: how a pod is known to carry it
GROW_TIMEOUT = 10.0  # seconds from the crossing for a resize to come into force
# Not ready is trusted only after the probe passed once (since the start, or since the last
# growth came into force): until then ready=false may be the old limit's, or the first probe's
# not yet written. A container that stays not ready this long without passing is above the
# threshold all along. Long, because a loaded kubelet writes readiness seconds late (a 3 s
# grace let a stale ready=false after a growth ask for a needless third growth on the real
# tier).
STARTUP_GRACE = 10.0


_PENDING_OUTCOME: dict[str, GrowthOutcome] = {"Infeasible": "infeasible", "Deferred": "deferred"}


@dataclass(frozen=True)
class _Asked:
    before: Memory
    target: Memory
    crossed_at: float


def main_status(pod: dict[str, Any], container: str) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return status  # type: ignore[no-any-return]
    return None


def in_force_memory(status: dict[str, Any]) -> tuple[int | None, int | None]:
    """(request, limit) the kubelet reports as applied to the container, if it says."""
    resources = status.get("resources") or {}
    out: list[int | None] = []
    for key in ("requests", "limits"):
        value = (resources.get(key) or {}).get("memory")
        try:
            out.append(None if value is None else memory_bytes(value))
        except QuantityError:
            out.append(None)
    return out[0], out[1]


def resize_pending(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of the pod's PodResizePending condition, if it is True."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodResizePending" and cond.get("status") == "True":
            return str(cond.get("reason") or ""), str(cond.get("message") or "")
    return None


def has_probe(pod: dict[str, Any], container: str) -> bool:
    try:
        probe = main_container_of(pod, container).get("readinessProbe") or {}
    except ValueError:
        return False
    return PROBE_MARK in ((probe.get("exec") or {}).get("command") or [])


def growths_of(pod: dict[str, Any]) -> tuple[Growth, ...]:
    """The growths a supervisor recorded on the pod (for resume)."""
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANN_GROWTHS)
    try:
        return tuple(Growth.from_dict(g) for g in json.loads(text)) if text else ()
    except (ValueError, TypeError):
        log.warning("unreadable %s on pod %s", ANN_GROWTHS, pod["metadata"].get("name"))
        return ()


class Grower:
    """The engine's in-place growth; only the engine's worker thread calls it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.api = ResizeApi(engine.cluster)
        self.supported: bool | None = None  # None: not asked yet (once per run)
        self._ready_seen: set[str] = set()
        self._grown_at: dict[str, float] = {}  # pod -> when its last growth was seen in force
        self._asked: dict[str, _Asked] = {}

    # -- once per run ---------------------------------------------------------------------
    def cluster_supports(self) -> bool:
        if self.supported is None:
            try:
                version = self.api.version()
            except Exception:  # noqa: BLE001 - unknown: the first resize tells
                log.warning("could not read the API server's version", exc_info=True)
                version = None
            if version is not None and version < RESIZE_SINCE:
                self.unsupported(f"the API server is {version[0]}.{version[1]}, before 1.33")
            else:
                self.supported = True
        return bool(self.supported)

    def unsupported(self, why: str) -> None:
        """Said once per run: steps are killed at their limit and retried, as before."""
        if self.supported is not False:
            log.warning(
                "in-place memory growth is off for this run: %s; a step that outgrows its "
                "memory is OOM-killed and retried with more, as without grow_in_place",
                why,
            )
        self.supported = False

    # -- per attempt ----------------------------------------------------------------------
    def prepare(self, st: StepState, manifest: dict[str, Any]) -> None:
        """Add the near-limit probe to a new attempt's main container when it may grow."""
        policy = st.spec.policy
        if not may_grow(policy, ()) or not self.cluster_supports():
            return
        main = main_container_of(manifest, st.spec.main_container)
        if main.get("readinessProbe"):
            log.info("step %s has its own readinessProbe: it is not grown in place", st.name)
            return
        main["readinessProbe"] = near_limit_probe(
            policy.grow_at_fraction, policy.grow_check_seconds
        )

    def on_running(self, st: StepState, pod: dict[str, Any]) -> None:
        """The attempt's pod runs: act on a crossing, or on the outcome of a resize."""
        assert st.current is not None and st.current_pod is not None
        name, container = st.current_pod, st.spec.main_container
        status = main_status(pod, container)
        if status is None or not has_probe(pod, container):
            return
        if name in self._asked:
            self._check(st, pod, status)
            return
        self._adopt_applied(st, pod, status)
        if "running" not in (status.get("state") or {}):
            return
        if status.get("ready"):
            self._ready_seen.add(name)
            self._grown_at.pop(name, None)
            return
        if not may_grow(st.spec.policy, st.current.growths) or not self.cluster_supports():
            return  # (asked here too: a restarted supervisor adopts attempts, creates none)
        # Not ready is trusted once the probe has had time to pass: after the start (unless
        # it was ready since) and after a growth came into force (its ready=false is stale
        # until the probe runs again at the new limit).
        since = self._grown_at.get(name)
        if since is None and name not in self._ready_seen:
            running = (status.get("state") or {}).get("running") or {}
            since = created_at({"metadata": {"creationTimestamp": running.get("startedAt")}})
            since = self.engine.clock() if since is None else since
        # The probe's next run may be a whole period away (grow_check_seconds).
        grace = STARTUP_GRACE + st.spec.policy.grow_check_seconds - 1
        wait = 0.0 if since is None else since + grace - self.engine.clock()
        if wait > 0:
            self.engine.queue.add_after(st.name, wait)
            return
        self._ask(st, pod)

    def settle(self, st: StepState, pod: dict[str, Any], killed: bool = False) -> None:
        """The attempt ended: a resize still in flight came into force or was overtaken.
        `killed` (an OOM kill): overtaken whatever the status says, as the kill may have come
        first and the resize applied to a dead container; the retry then grows from the
        memory the attempt surely had, not 3x past it."""
        if st.current_pod is None:
            return
        self._ready_seen.discard(st.current_pod)
        self._grown_at.pop(st.current_pod, None)
        asked = self._asked.get(st.current_pod)
        if asked is None:
            return
        status = main_status(pod, st.spec.main_container) or {}
        applied = in_force_memory(status)[1]
        pending = resize_pending(pod) or ("", "")
        if killed:
            self._record(st, pod, "overtaken", "OOM-killed before it came into force", False)
        elif applied is not None and applied >= asked.target.limit:
            self._record(st, pod, "in_force", "", persist=False)
        elif pending[0] in _PENDING_OUTCOME:  # e.g. the kubelet deferred it until the end
            self._record(st, pod, _PENDING_OUTCOME[pending[0]], pending[1], persist=False)
        else:
            self._record(st, pod, "overtaken", "the attempt ended first", persist=False)

    # -- the steps of one growth ------------------------------------------------------------
    def _ask(self, st: StepState, pod: dict[str, Any]) -> None:
        assert st.current is not None and st.current_pod is not None
        now, before = self.engine.clock(), st.current.memory
        target = growth_target(before, st.spec.policy, self.engine.largest_node())
        if target is None:
            self._asked[st.current_pod] = _Asked(before, before, now)
            self._record(st, pod, "at_ceiling", "max_memory or the largest node's memory")
            return
        try:
            self.api.resize(st.current_pod, st.spec.main_container, target.request, target.limit)
        except ApiException as exc:
            self._refused(st, pod, exc, _Asked(before, target, now))
            return
        self._asked[st.current_pod] = _Asked(before, target, now)
        log.info(
            "step %s attempt %d nears its %s limit: growing it in place to %s",
            st.name, st.current.number, format_memory(before.limit), target,
        )  # fmt: skip
        self.engine.queue.add_after(st.name, GROW_TIMEOUT)

    def _refused(
        self, st: StepState, pod: dict[str, Any], exc: ApiException, asked: _Asked
    ) -> None:
        body = _status_body(exc)
        if exc.status == 404 and (body.get("details") or {}).get("kind") == "pods":
            return  # the pod is gone: the watch delivers its end
        if exc.status in (404, 405) or (exc.status == 400 and "resize" in str(exc.body)):
            self.unsupported(f"the API server has no pods/resize ({exc.status} {exc.reason})")
            return
        if exc.status == 403:
            self.unsupported(
                "the orchestrator's service account may not patch pods/resize; grant it "
                "(verbs: patch, resource: pods/resize) to grow steps in place"
            )
            return
        if exc.status in (400, 422):
            assert st.current_pod is not None
            self._asked[st.current_pod] = asked
            self._record(st, pod, "refused", str(body.get("message") or exc.reason))
            return
        raise exc  # transient: the worker requeues with backoff

    def _check(self, st: StepState, pod: dict[str, Any], status: dict[str, Any]) -> None:
        assert st.current_pod is not None
        asked = self._asked[st.current_pod]
        applied = in_force_memory(status)[1]
        pending = resize_pending(pod)
        if applied is not None and applied >= asked.target.limit:
            self._record(st, pod, "in_force", "")
        elif pending is not None and pending[0] == "Infeasible":
            self._record(st, pod, "infeasible", pending[1] or "the node cannot hold it")
        elif self.engine.clock() - asked.crossed_at >= GROW_TIMEOUT:
            late = pending is not None and pending[0] == "Deferred"
            why = (pending[1] if pending else "") or "not in force in time"
            self._record(st, pod, "deferred" if late else "timed_out", why)
        else:
            self.engine.queue.add_after(st.name, GROW_TIMEOUT)

    def _adopt_applied(self, st: StepState, pod: dict[str, Any], status: dict[str, Any]) -> None:
        """A resize that came into force unseen: while no supervisor watched (a restart), or
        a deferred one the kubelet applied later, once the node had room."""
        assert st.current is not None and st.current_pod is not None
        request, limit = in_force_memory(status)
        if limit is None or limit <= st.current.memory_limit:
            return
        before = st.current.memory
        target = Memory(max(request or 0, before.request, 1), limit)
        self._asked[st.current_pod] = _Asked(before, target, self.engine.clock())
        self._record(st, pod, "in_force", "came into force later (a deferred resize, or a restart)")

    def _record(
        self,
        st: StepState,
        pod: dict[str, Any],
        outcome: GrowthOutcome,
        message: str,
        persist: bool = True,
    ) -> None:
        assert st.current is not None and st.current_pod is not None
        asked = self._asked.pop(st.current_pod)
        now = self.engine.clock()
        growth = Growth(
            at=asked.crossed_at,
            from_request=asked.before.request,
            from_limit=asked.before.limit,
            to_request=asked.target.request,
            to_limit=asked.target.limit,
            outcome=outcome,
            seconds=round(now - asked.crossed_at, 3),
            message=message,
        )
        current = replace(st.current, growths=(*st.current.growths, growth))
        if growth.grew:
            current = replace(
                current, memory_request=growth.to_request, memory_limit=growth.to_limit
            )
            self._grown_at[st.current_pod] = now
        st.current = current
        text = f"attempt {current.number}: memory {growth.describe()}"
        if not growth.grew:
            text += "; an OOM kill will retry it with more memory"
        log.info("step %s %s", st.name, text)
        if hasattr(self.engine.observer, "on_attempt_grown"):
            self.engine.hook("on_attempt_grown", st.name, current, growth)
        if not persist:
            return
        growths = json.dumps([g.to_dict() for g in current.growths], sort_keys=True)
        self.engine.cluster.annotate_pod(st.current_pod, {ANN_GROWTHS: growths})
        uid = (pod.get("metadata") or {}).get("uid")
        about = {"metadata": {"name": f"{st.current_pod}-g{len(current.growths)}", "uid": uid}}
        reason = REASON_GROWN if growth.grew else REASON_NOT_GROWN
        subject = {"apiVersion": "v1", "kind": "Pod", "name": st.current_pod}
        try:
            self.engine.cluster.emit_event(about, reason, text, subject, warning=not growth.grew)
        except ApiException:
            log.warning("could not record the %s Event of pod %s", reason, st.current_pod)


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}
