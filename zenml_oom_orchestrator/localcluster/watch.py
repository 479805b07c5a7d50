"""Watches on the Store: a FIFO of history events per watcher, filtered by its selectors."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .objects import clone
from .selectors import Matcher

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"


class Event:
    """One change in the store's history. `obj` and `old` are snapshots the store never
    mutates again, so many watchers (and their JSON encodings) can share them."""

    __slots__ = ("rv", "type", "obj", "old", "_json")

    def __init__(self, rv: int, type: str, obj: dict[str, Any], old: dict[str, Any] | None):
        self.rv = rv
        self.type = type
        self.obj = obj
        self.old = old
        self._json: bytes | None = None

    def json_line(self) -> bytes:
        """The watch-stream line for the unfiltered event, encoded once and shared."""
        if self._json is None:
            self._json = encode_event(self.type, self.obj)
        return self._json


def encode_event(type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": type, "object": obj}, separators=(",", ":")).encode() + b"\n"


_END = object()
_WAKE = object()


class Watch:
    """Iterate `(type, obj)` pairs; obj is a private copy. Ends on `stop()`, on `timeout`,
    or when the consumer falls more than `max_queue` events behind (then re-watch)."""

    def __init__(
        self,
        resource: str,
        namespace: str | None,
        matcher: Matcher | None,
        *,
        timeout: float | None,
        bookmark_interval: float | None,
        max_queue: int,
        lock: Any,
        current_rv: Callable[[], int],
        bookmark_object: Callable[[int], dict[str, Any]],
        on_stop: Callable[[Watch], None],
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self._matcher = matcher
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._bookmark_interval = bookmark_interval
        self._max_queue = max_queue
        self._lock = lock
        self._current_rv = current_rv
        self._last_sent = time.monotonic()
        self._bookmark_object = bookmark_object
        self._on_stop = on_stop
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self.overflowed = False

    # Called by the store, under its lock, in resourceVersion order.
    def _deliver(self, ev: Event) -> None:
        if self.namespace is not None and ev.obj["metadata"].get("namespace") != self.namespace:
            return
        m = self._matcher
        # Drop what the selector rejects before and after: waking a thread costs far more.
        if m is not None and not m(ev.obj) and (ev.old is None or not m(ev.old)):
            return
        if self._q.qsize() >= self._max_queue:
            self.overflowed = True
            self._end()
            return
        self._q.put(ev)

    def _end(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self._q.put(_END)

    def stop(self) -> None:
        """End the watch; iteration finishes after any event already being returned."""
        self._end()
        self._on_stop(self)

    def wake(self) -> None:
        """Make a blocked `next_shared` return None now (the API server's stop and expiry)."""
        self._q.put(_WAKE)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _filter(self, ev: Event) -> tuple[str, dict[str, Any]] | None:
        m = self._matcher
        if m is None:
            return ev.type, ev.obj
        now = m(ev.obj)
        if ev.type != MODIFIED:
            return (ev.type, ev.obj) if now else None
        was = ev.old is not None and m(ev.old)
        if now:
            return (MODIFIED if was else ADDED), ev.obj
        return (DELETED, ev.obj) if was else None

    def next_shared(
        self, wait: float | None = None
    ) -> tuple[str, dict[str, Any], Event | None] | None:
        """The next event as `(type, shared snapshot, history event)`, None after `wait`
        seconds without one; raises StopIteration once the watch has ended. The snapshot must
        not be mutated. The history event is given when the type is unchanged by filtering,
        so its cached JSON line can be reused."""
        while True:
            limit = self._limit(wait)
            try:
                item = (
                    self._q.get(timeout=limit)
                    if limit is None or limit > 0
                    else self._q.get_nowait()
                )
            except queue.Empty:
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    self.stop()
                    raise StopIteration from None
                bookmark = self._maybe_bookmark()
                if bookmark is not None:
                    self._last_sent = time.monotonic()
                    return BOOKMARK, bookmark, None
                return None
            if item is _WAKE:
                return None
            if item is _END:
                self._q.put(_END)  # stay ended for further calls
                raise StopIteration
            out = self._filter(item)
            if out is not None:
                self._last_sent = time.monotonic()
                return out[0], out[1], (item if out[0] == item.type else None)

    def _limit(self, wait: float | None) -> float | None:
        limits = [x for x in (wait,) if x is not None]
        if self._bookmark_interval is not None:
            since = time.monotonic() - self._last_sent
            limits.append(max(0.0, self._bookmark_interval - since))
        if self._deadline is not None:
            limits.append(max(0.0, self._deadline - time.monotonic()))
        return min(limits) if limits else None

    def _maybe_bookmark(self) -> dict[str, Any] | None:
        if self._bookmark_interval is None:
            return None
        if time.monotonic() - self._last_sent < self._bookmark_interval:
            return None
        # Under the store lock, an empty queue means every event up to rv has reached us.
        with self._lock:
            if not self._q.empty():
                return None
            rv = self._current_rv()
        return self._bookmark_object(rv)

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            try:
                got = self.next_shared(None if self._bookmark_interval else 1.0)
            except StopIteration:
                return
            if got is not None:
                yield got[0], clone(got[1])

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def empty(self) -> bool:
        return self._q.empty()
