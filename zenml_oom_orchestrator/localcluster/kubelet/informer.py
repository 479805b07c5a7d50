"""A list+watch loop over the in-process Store, like client-go's reflector (re-list on 410)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], None]
SyncHandler = Callable[[list[dict[str, Any]]], None]


class Informer:
    """Calls `handler(type, obj)` for every listed object ("ADDED") and every watch event.

    Handlers must be idempotent: after an expired watch the whole list is replayed. Deletions
    missed meanwhile are not replayed: `on_sync(items)` gets every full list to find them.
    """

    def __init__(
        self,
        store: Any,
        resource: str,
        handler: Handler,
        *,
        namespace: str | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        name: str | None = None,
        on_sync: SyncHandler | None = None,
    ) -> None:
        self.store = store
        self.resource = resource
        self.handler = handler
        self.on_sync = on_sync
        self.namespace = namespace
        self.field_selector = field_selector
        self.label_selector = label_selector
        self._stop = threading.Event()
        self._watch: Any = None
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=name or f"informer-{resource}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.stop()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._list_and_watch()
            except Exception:  # noqa: BLE001 - keep the controller alive; re-list
                if self._stop.is_set():
                    return
                log.exception("%s informer failed; re-listing", self.resource)
                self._stop.wait(0.2)

    def _list_and_watch(self) -> None:
        from ..errors import Expired

        items, rv = self.store.list(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        if self.on_sync is not None:
            try:
                self.on_sync(items)
            except Exception:  # noqa: BLE001
                log.exception("%s sync handler failed", self.resource)
        for obj in items:
            self._dispatch("ADDED", obj)
        self.synced.set()
        while not self._stop.is_set():
            watch = self.store.watch(
                self.resource,
                namespace=self.namespace,
                resource_version=rv,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
            )
            with self._lock:
                self._watch = watch
            if self._stop.is_set():
                watch.stop()
                return
            try:
                for event_type, obj in watch:
                    if self._stop.is_set():
                        return
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if event_type != "BOOKMARK":
                        self._dispatch(event_type, obj)
            except Expired:
                return  # history trimmed: re-list
            finally:
                watch.stop()

    def _dispatch(self, event_type: str, obj: dict[str, Any]) -> None:
        try:
            self.handler(event_type, obj)
        except Exception:  # noqa: BLE001 - one bad object must not stop the loop
            log.exception("%s handler failed on %s", self.resource, event_type)
