"""core/v1 Events, recorded the way client-go's recorder does (repeats bump `count`)."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..errors import ApiError

log = logging.getLogger(__name__)

_lock = threading.Lock()
# (store id, involved uid, reason, message, component) -> (namespace, event name)
_recent: OrderedDict[tuple[Any, ...], tuple[str, str]] = OrderedDict()
_RECENT_MAX = 4096
# client-go's EventAggregator: the 10th distinct message of one (object, type, reason) within
# 10 minutes, and every one after it, goes to one "(combined from similar events): " Event.
_AGGREGATE_AFTER, _AGGREGATE_WINDOW = 10, 600.0
_COMBINED = "(combined from similar events): "
# (store id, component, involved uid, type, reason) -> (distinct messages, last seen)
_similar: OrderedDict[tuple[Any, ...], tuple[set[str], float]] = OrderedDict()
# client-go's spam filter: per (object, type, reason, message) a burst of 25, then one per
# 5 minutes (a probe failing every second with the same output: count stops at 25).
_SPAM_BURST, _SPAM_REFILL = 25, 300.0
_spam: OrderedDict[tuple[Any, ...], tuple[float, float]] = OrderedDict()  # (tokens, at)


def now() -> str:
    """An RFC 3339 timestamp with second precision, as the API server stores them."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    """An RFC 3339 MicroTime (`eventTime`)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def object_reference(obj: Mapping[str, Any], field_path: str | None = None) -> dict[str, Any]:
    """An ObjectReference to `obj` (a pod, node, job... as a dict)."""
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": obj.get("kind", "Pod"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    if field_path:
        ref["fieldPath"] = field_path
    return {k: v for k, v in ref.items() if v is not None}


def record_event(
    store: Any,
    involved_object: Mapping[str, Any],
    reason: str,
    message: str,
    type: str = "Normal",
    component: str = "kubelet",
    host: str | None = None,
    field_path: str | None = None,
    action: str | None = None,
) -> dict[str, Any] | None:
    """Create an Event about `involved_object`, or bump the count of an identical recent one.

    Cluster-scoped objects (nodes) get their events in "default", as on a real cluster. Never
    raises: an event is not worth failing a controller for. With `action`, the Event is one
    written through events.k8s.io/v1 (the scheduler's recorder), as the core/v1 API shows it:
    `source` empty, `reportingInstance` "<component>-<host>", `eventTime` and `series` instead
    of the first/last timestamps and `count`.
    """
    ref = object_reference(involved_object, field_path)
    namespace = ref.get("namespace") or "default"
    involved = str(ref.get("uid", ref.get("name")))
    key: tuple[Any, ...] = (id(store), involved, reason, message, component)
    if action is None and _spam_filtered((*key, type)):
        return None
    if action is None and _aggregated(id(store), component, involved, type, reason, message):
        key, message = (
            (id(store), involved, reason, type, component, "combined"),
            (_COMBINED + message),
        )
    stamp = now()
    try:
        with _lock:
            known = _recent.get(key)
        if known is not None:
            try:
                return _bump(store, known, stamp, action is not None, message)  # type: ignore[no-any-return]
            except Exception:  # noqa: BLE001 - gone (TTL, GC): record a fresh one
                pass
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.get('name')}.{time.time_ns():x}{secrets.token_hex(2)}",
                "namespace": namespace,
            },
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type,
            "source": {"component": component, **({"host": host} if host else {})},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        if action is not None:
            event.update(
                source={},
                firstTimestamp=None,
                lastTimestamp=None,
                eventTime=micro_now(),
                action=action,
                reportingInstance=f"{component}-{host or socket.gethostname()}",
            )
            event.pop("count")
        created = store.create("events", event, namespace=namespace)
        with _lock:
            _recent[key] = (namespace, created["metadata"]["name"])
            while len(_recent) > _RECENT_MAX:
                _recent.popitem(last=False)
        return dict(created)
    except ApiError as exc:
        # Refused by the API (namespace terminating or gone): a real kubelet logs one line too.
        log.info("event %s for %s not recorded: %s", reason, ref.get("name"), exc)
        return None
    except Exception:  # noqa: BLE001
        log.exception("could not record event %s for %s", reason, ref.get("name"))
        return None


def _spam_filtered(key: tuple[Any, ...]) -> bool:
    """True when client-go's token bucket for this Event is empty (the Event is dropped)."""
    t = time.monotonic()
    with _lock:
        tokens, at = _spam.pop(key, (float(_SPAM_BURST), t))
        tokens = min(float(_SPAM_BURST), tokens + (t - at) / _SPAM_REFILL)
        allowed = tokens >= 1.0
        _spam[key] = (tokens - 1.0 if allowed else tokens, t)
        while len(_spam) > _RECENT_MAX:
            _spam.popitem(last=False)
        return not allowed


def _aggregated(*similar: Any) -> bool:
    """Whether client-go's aggregator combines this Event (the last item is its message)."""
    key, message = similar[:-1], similar[-1]
    t = time.monotonic()
    with _lock:
        messages, last = _similar.pop(key, (set(), t))
        if t - last > _AGGREGATE_WINDOW:
            messages = set()
        messages.add(message)
        _similar[key] = (messages, t)
        while len(_similar) > _RECENT_MAX:
            _similar.popitem(last=False)
        return len(messages) >= _AGGREGATE_AFTER


def _bump(store: Any, known: tuple[str, str], stamp: str, series: bool, message: str) -> Any:
    def fn(ev: dict[str, Any]) -> None:
        if series:  # events.k8s.io/v1: a repeat is counted in `series`
            old = ev.get("series") or {"count": 1}
            ev["series"] = {"count": int(old["count"]) + 1, "lastObservedTime": micro_now()}
            return
        ev["count"] = int(ev.get("count") or 1) + 1
        ev["lastTimestamp"] = stamp
        ev["message"] = message  # client-go's patch carries the latest message too

    return store.mutate("events", known[0], known[1], fn)
