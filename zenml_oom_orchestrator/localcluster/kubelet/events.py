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
_recent: OrderedDict[tuple[int, str, str, str, str], tuple[str, str]] = OrderedDict()
_RECENT_MAX = 4096


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
    key = (id(store), str(ref.get("uid", ref.get("name"))), reason, message, component)
    stamp = now()
    try:
        with _lock:
            known = _recent.get(key)
        if known is not None:
            try:
                return _bump(store, known, stamp, action is not None)  # type: ignore[no-any-return]
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


def _bump(store: Any, known: tuple[str, str], stamp: str, series: bool) -> Any:
    def fn(ev: dict[str, Any]) -> None:
        if series:  # events.k8s.io/v1: a repeat is counted in `series`
            old = ev.get("series") or {"count": 1}
            ev["series"] = {"count": int(old["count"]) + 1, "lastObservedTime": micro_now()}
            return
        ev["count"] = int(ev.get("count") or 1) + 1
        ev["lastTimestamp"] = stamp

    return store.mutate("events", known[0], known[1], fn)
