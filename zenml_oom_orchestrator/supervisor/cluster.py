"""The only module that calls the Kubernetes API.

Every call goes through `_call`, which retries with tenacity on 429 (honouring Retry-After),
5xx and connection errors, with bounded attempts and a bounded total delay. Objects come back as
the API's JSON dicts (camelCase), the form `classify` and the informer cache use, so no model
(de)serialisation runs on the hot path.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from zenml_oom_orchestrator.supervisor import naming

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class WatchExpired(Exception):
    """The watch's resourceVersion is gone from the server's history (410): re-list."""


class Conflict(Exception):
    """Our deterministic name is taken by an object that is not ours."""


@dataclass(frozen=True)
class ApiRetry:
    """Bounds on retrying one API call. Defaults ride out a few seconds of API trouble."""

    max_attempts: int = 8
    max_total_seconds: float = 60.0
    initial_wait: float = 0.2
    max_wait: float = 10.0
    request_timeout: tuple[float, float] = (5.0, 30.0)  # connect, read


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in RETRY_STATUSES or exc.status == 0
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def is_forbidden(exc: BaseException) -> bool:
    """401/403: retrying cannot help; the ServiceAccount needs a rule (or a valid token).

    Except the ServiceAccount admission's 403 for a pod whose ServiceAccount does not exist
    yet: in a namespace just made, the controller manager creates `default` a moment later
    (seen on the real tier: 4 s after an API server restart), so that one is worth retrying.
    """
    if not isinstance(exc, ApiException) or exc.status not in (401, 403):
        return False
    return "error looking up service account" not in (status_message(exc) or "")


def status_message(exc: ApiException) -> str | None:
    """The `message` of the Status body the API server sent (bytes or str), if it sent one."""
    try:
        message = json.loads(exc.body or "").get("message")
    except (ValueError, AttributeError):
        return None
    return str(message) if message else None


def namespace_closed(exc: BaseException) -> bool:
    """A create refused for good because its namespace is going or gone: kube-apiserver's
    NamespaceLifecycle admission answers 403 `... because it is being terminated` while the
    namespace is Terminating, and 404 once it is gone. Retrying cannot change either."""
    if not isinstance(exc, ApiException):
        return False
    if exc.status == 404:
        return True
    return exc.status == 403 and "because it is being terminated" in (status_message(exc) or "")


def refusal_text(exc: ApiException) -> str:
    """The API server's own words (its Status message, which names the verb, the resource and
    the user), without the response headers that ApiException's str() dumps."""
    message = status_message(exc)
    return f"{exc.status} {exc.reason}: {message}" if message else f"{exc.status} {exc.reason}"


def describe_error(exc: BaseException | None) -> str:
    """One line for a log or a message: the API's own words for an ApiException."""
    return refusal_text(exc) if isinstance(exc, ApiException) else str(exc)


def forbidden_advice(exc: ApiException, namespace: str) -> str:
    """What a 401/403 means for the run and what to change."""
    return (
        f"the API server refused the supervisor ({refusal_text(exc)}); retrying cannot help. "
        "Give its ServiceAccount the Role the supervisor needs: python -m "
        f"zenml_oom_orchestrator.rbac --namespace {namespace} | kubectl apply -f - "
        "(and the orchestrator's service_account_name setting to that account)"
    )


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's Retry-After (seconds) on a 429/503, if it sent one."""
    if not isinstance(exc, ApiException) or exc.status not in (429, 503) or not exc.headers:
        return None
    value = exc.headers.get("Retry-After") or exc.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class _WaitRetryAfter:
    """Wait what Retry-After says (capped), else exponential backoff with jitter."""

    def __init__(self, settings: ApiRetry) -> None:
        self.cap = settings.max_wait
        # tenacity's composition: exponential growth plus jitter so parallel callers spread.
        self.fallback = wait_exponential(
            multiplier=settings.initial_wait, max=settings.max_wait
        ) + wait_random(0, settings.initial_wait)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after_seconds(exc)
        return min(after, self.cap) if after is not None else self.fallback(state)


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ClusterApi:
    """Pods, Events and Nodes of one namespace, with retries and idempotent creates."""

    def __init__(
        self, api_client: k8s.ApiClient, namespace: str, retry: ApiRetry | None = None
    ) -> None:
        self.namespace = namespace
        self.retry = retry or ApiRetry()
        self.core = k8s.CoreV1Api(api_client)
        self._nodes_forbidden = False
        self._nodes_read: tuple[float, int | None] | None = None  # (monotonic, largest)
        self._events_unfiltered = False
        self._lock = threading.Lock()
        self.calls = 0  # for tests and benchmarks: API requests issued, retries included

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        def counted() -> T:
            with self._lock:
                self.calls += 1
            return fn()

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.max_attempts)
            | stop_after_delay(self.retry.max_total_seconds),
            wait=_WaitRetryAfter(self.retry),
            retry=retry_if_exception(is_retryable),
            reraise=True,
            before_sleep=lambda s: log.info(
                "%s failed (%s), retry %d",
                what,
                s.outcome.exception() if s.outcome else "?",
                s.attempt_number,
            ),
        )
        return retrying(counted)

    def _json(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.retry.request_timeout)

        def call() -> Any:
            resp = fn(*args, _preload_content=False, **kwargs)
            return json.loads(resp.data) if resp.data else None

        return self._call(what, call)

    # -- pods -----------------------------------------------------------------------------
    def list_pods(self, label_selector: str) -> tuple[list[dict[str, Any]], str]:
        """Every pod matching `label_selector`, and the list's resourceVersion."""
        body = self._json(
            "list pods",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=label_selector,
        )
        return body.get("items") or [], body["metadata"]["resourceVersion"]

    def watch_pods(
        self,
        label_selector: str,
        resource_version: str,
        timeout_seconds: int,
        on_open: Callable[[Callable[[], None]], None] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Stream (type, pod) from `resource_version`; ends at the server's timeout.

        Raises WatchExpired on 410, whether sent as the HTTP status or as an ERROR event.
        Only opening the stream is retried; a stream that breaks is resumed by the caller from
        the last resourceVersion it saw, which is the only correct place to resume from.
        `on_open` receives a function that aborts the stream from another thread.
        """

        def open_stream() -> Any:
            return self.core.list_namespaced_pod(
                self.namespace,
                label_selector=label_selector,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=(self.retry.request_timeout[0], timeout_seconds + 15),
            )

        try:
            resp = self._call("watch pods", open_stream)
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(str(exc.reason)) from exc
            raise
        if on_open is not None:
            # shutdown() (urllib3 >= 2.3) wakes a blocked read; close() is the fallback.
            on_open(getattr(resp, "shutdown", resp.close))
        try:
            for line in iter_resp_lines(resp):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired(obj.get("message", "expired"))
                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message"))
                yield kind, obj
        finally:
            resp.release_conn()

    def create_pod(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create `manifest`; (pod, adopted). A 409 on our own name adopts the existing pod."""
        try:
            pod = self._json(
                "create pod", self.core.create_namespaced_pod, self.namespace, manifest
            )
            return pod, False
        except ApiException as exc:
            if exc.status != 409:
                raise
        name = manifest["metadata"]["name"]
        existing = self.get_pod(name)
        if existing is None:  # deleted in between: the caller's next reconcile decides
            raise Conflict(f"pod {name} existed at create and was gone right after")
        want, have = manifest["metadata"].get("labels", {}), existing["metadata"].get("labels", {})
        for key in (naming.LABEL_RUN, naming.LABEL_STEP, naming.LABEL_ATTEMPT):
            if want.get(key) != have.get(key):
                raise Conflict(
                    f"pod {name} exists but belongs to {key}={have.get(key)!r}, not {want.get(key)!r}"
                )
        return existing, True

    def get_pod(self, name: str) -> dict[str, Any] | None:
        try:
            return self._json("get pod", self.core.read_namespaced_pod, name, self.namespace)  # type: ignore[no-any-return]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def annotate_pod(self, name: str, annotations: dict[str, str]) -> bool:
        """Merge `annotations` into the pod; False if the pod is gone."""
        body = {"metadata": {"annotations": annotations}}
        try:
            self._json("annotate pod", self.core.patch_namespaced_pod, name, self.namespace, body)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def delete_pod(self, name: str, grace_period_seconds: int | None = None) -> bool:
        """Delete the pod; False if it was already gone."""
        try:
            self._json(
                "delete pod",
                self.core.delete_namespaced_pod,
                name,
                self.namespace,
                grace_period_seconds=grace_period_seconds,
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    # -- events ---------------------------------------------------------------------------
    def emit_event(
        self,
        pod: dict[str, Any],
        reason: str,
        message: str,
        subject: dict[str, Any] | None = None,
        warning: bool = False,
        source: str = naming.MANAGED_BY,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        """Record `reason` on the pod so `kubectl describe` shows it; once per pod and reason.
        `subject` overrides what the Event is about (default: the pod)."""
        meta = pod["metadata"]
        now = now_iso()
        event_meta: dict[str, Any] = {
            "name": naming.event_name(meta["name"], reason),
            "namespace": self.namespace,
        }
        if labels:
            event_meta["labels"] = labels
        if annotations:
            event_meta["annotations"] = annotations
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": event_meta,
            "involvedObject": {
                "apiVersion": (subject or {}).get("apiVersion", "v1"),
                "kind": (subject or {}).get("kind", "Pod"),
                "name": (subject or {}).get("name", meta["name"]),
                "namespace": self.namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": source},
            "reportingComponent": source,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._json("create event", self.core.create_namespaced_event, self.namespace, event)
        except ApiException as exc:
            if namespace_closed(exc):
                # Its namespace is going or gone: no retry will bring the Event, so drop it
                # with one line instead of failing (and requeueing) what wrote it.
                log.warning("Event %s not recorded: %s", reason, refusal_text(exc))
                return
            if exc.status != 409:  # 409: a restarted supervisor already said this
                raise

    def mark_run_started(self, run_id: str, owner: dict[str, Any] | None) -> bool:
        """Record that a supervisor started `run_id` (an Event); True if one already had, i.e.
        this is a restart even if none of the run's pods is left."""
        name = f"oom-run-{naming.short_hash(run_id, length=16)}"
        marker = naming.event_name(name, "RunStarted")
        # A list by name, not a get: the orchestrator's RBAC already lists events.
        body = self._json(
            "list events",
            self.core.list_namespaced_event,
            self.namespace,
            field_selector=f"metadata.name={marker}",
        )
        if any(e["metadata"]["name"] == marker for e in body.get("items") or []):
            return True
        # About an object that exists: the owner (the orchestrator Job), else the namespace.
        subject = owner or {"apiVersion": "v1", "kind": "Namespace", "name": self.namespace}
        about = {"metadata": {"name": name, "uid": subject.get("uid")}}
        message = f"oom-supervisor started run {run_id}"
        self.emit_event(about, "RunStarted", message, subject, source=naming.RUN_MARKER_SOURCE)
        return False

    def run_results(self, run_id: str) -> list[dict[str, Any]]:
        """The result Events the supervisor wrote for `run_id` (they outlive the pods)."""
        body = self._json(
            "list events",
            self.core.list_namespaced_event,
            self.namespace,
            label_selector=f"{naming.LABEL_RUN}={naming.label_value(run_id)}",
        )
        return list(body.get("items") or [])

    def pod_events(self, pod_name: str) -> list[dict[str, Any]]:
        """The pod's Events (for `classify`); empty if the server cannot filter them."""
        if self._events_unfiltered:
            return []
        try:
            body = self._json(
                "list events",
                self.core.list_namespaced_event,
                self.namespace,
                field_selector=f"involvedObject.name={pod_name}",
            )
        except ApiException as exc:
            if exc.status in (400, 422):
                self._events_unfiltered = True
                return []
            raise
        items = body.get("items") or []
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == pod_name]

    # -- nodes ----------------------------------------------------------------------------
    def largest_node_memory(self, max_age: float = 30.0) -> int | None:
        """The largest node's allocatable memory in bytes (None: unknown), read at most
        every `max_age` seconds: nodes change rarely, attempts start often."""
        now = time.monotonic()
        if self._nodes_read is None or now - self._nodes_read[0] >= max_age:
            nodes = self.node_memory()
            largest = max((m for _, m in nodes), default=None) if nodes else None
            self._nodes_read = (now, largest)
        return self._nodes_read[1]

    def pod_memory_request(self, name: str) -> tuple[str, int] | None:
        """(node, memory request in bytes) of pod `name` in this namespace: what it holds on
        its node for the scheduler. None when it is not bound, not readable or not there."""
        from zenml_oom_orchestrator.quantity import memory_bytes

        try:
            pod = self.get_pod(name)
        except ApiException as exc:
            if exc.status not in (401, 403):
                raise
            return None
        if pod is None:
            return None
        node = (pod.get("spec") or {}).get("nodeName")
        containers = (pod.get("spec") or {}).get("containers") or []
        requests = [((c.get("resources") or {}).get("requests") or {}) for c in containers]
        held = sum(memory_bytes(r["memory"]) for r in requests if "memory" in r)
        return (str(node), held) if node else None

    def node_memory(self) -> list[tuple[str, int]] | None:
        """(node, allocatable memory bytes) for every schedulable node, or None when
        RBAC forbids reading Nodes (warned about once)."""
        from zenml_oom_orchestrator.quantity import memory_bytes

        if self._nodes_forbidden:
            return None
        try:
            body = self._json("list nodes", self.core.list_node)
        except ApiException as exc:
            if exc.status not in (401, 403):
                raise
            self._nodes_forbidden = True
            log.warning(
                "cannot read Nodes (%s): requests above every node's memory will not be "
                "refused up front; pending_timeout still ends them",
                exc.status,
            )
            return None
        out = []
        for node in body.get("items") or []:
            if (node.get("spec") or {}).get("unschedulable"):
                continue
            alloc = (node.get("status") or {}).get("allocatable") or {}
            if "memory" in alloc:
                out.append((node["metadata"]["name"], memory_bytes(alloc["memory"])))
        return out
