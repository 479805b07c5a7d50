"""One list+watch per run feeding a thread-safe local cache, after client-go's informer.

List once, then watch from the list's resourceVersion. A watch that ends or breaks resumes from
the last resourceVersion seen; only a 410 (history trimmed) forces a re-list, which is diffed
against the cache so that every change and every deletion that happened in the gap is still
delivered. The engine is level-triggered: it reads the cache, never the events, so seeing the
final state of a pod is enough; what must never happen is a pod disappearing silently, and the
tombstones make sure it doesn't.

Memory stays flat however long the run: once the engine has recorded an attempt it calls
`forget(name)`, and the pod is *settled*: its full dict (spec, status, annotations, ~15 KiB)
is dropped from the cache and only its name is kept (for `names()`, i.e. expiry at run end).
Later events about a settled pod still wake the engine but are neither stored nor compacted
(below), and its deletion leaves no tombstone. Only the attempts in flight are held in full,
less `managedFields` (server-side apply's bookkeeping, a third or more of a pod's JSON; nothing
here reads it), as client-go's `TransformStripManagedFields` does, and with their strings
shared: each event is parsed on its own, so every pod had its own copy of every key
("metadata", "resources", ...) and of every short value ("Running", "True", the image);
interned, 5,000 pods in flight hold one each (a parsed ZenML step pod from the real tier:
29.0 KiB -> 14.7 KiB, by tracemalloc).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from zenml_oom_orchestrator.supervisor.cluster import ClusterApi, WatchExpired, describe_error

log = logging.getLogger(__name__)
Pod = dict[str, Any]

# Tombstones of pods the engine no longer follows (it deleted them itself) are never
# collected; these bounds keep memory flat however long the run churns.
MAX_TOMBSTONES = 10_000
TOMBSTONE_TTL = 600.0  # the engine reads a tombstone within one resync, far sooner
ASSUME_TTL = 120.0  # an assumed pod never confirmed by list or watch is dropped after this


def _rv(obj: Pod) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


# Longer strings (termination messages, JSON annotations) are rarely repeated across pods.
SHARED_STRING_MAX = 128


def _shared(value: Any) -> Any:
    """`value` rebuilt with its keys and short strings interned (one copy per process)."""
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= SHARED_STRING_MAX else value
    if isinstance(value, dict):
        return {sys.intern(k): _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    return value


def _stripped(obj: Pod) -> Pod:
    """The pod without `metadata.managedFields` (in place: the dict is ours)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _compact(obj: Pod) -> Pod:
    """A pod from the API as the cache keeps it: stripped, its strings shared with every other
    cached pod."""
    compact: Pod = _shared(_stripped(obj))
    return compact


def _name(obj: Pod) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


class PodInformer:
    """Keeps `label_selector`'s pods in memory; calls `on_change(pod)` for each change."""

    def __init__(
        self,
        cluster: ClusterApi,
        label_selector: str,
        on_change: Callable[[Pod], None],
        watch_timeout: int = 60,
        max_backoff: float = 10.0,
    ) -> None:
        self.cluster = cluster
        self.selector = label_selector
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self._lock = threading.Lock()
        self._items: dict[str, Pod] = {}
        self._tombstones: OrderedDict[str, tuple[float, Pod]] = OrderedDict()
        self._assumed: dict[str, float] = {}
        self._settled: set[str] = set()  # recorded by the engine: name only, no dict
        self._synced = threading.Event()
        self._stopped = threading.Event()
        self._abort: Callable[[], None] | None = None
        self._rv: str | None = None  # where the next watch starts; None: list first
        self._thread: threading.Thread | None = None
        self.relists = 0  # observable for tests: 410s survived
        self.last_error: BaseException | None = None

    # -- reading (any thread) ---------------------------------------------------------------
    def get(self, name: str) -> Pod | None:
        with self._lock:
            return self._items.get(name)

    def deleted(self, name: str) -> Pod | None:
        """The last state of a pod seen deleted (its evidence), until `forget(name)`."""
        with self._lock:
            kept = self._tombstones.get(name)
            return kept[1] if kept else None

    def items(self) -> list[Pod]:
        """The pods not settled yet, in full (at start: every pod of the run)."""
        with self._lock:
            return list(self._items.values())

    def names(self) -> list[str]:
        """Every pod of the run seen so far and not known deleted, settled ones included."""
        with self._lock:
            return [*self._items, *self._settled]

    def forget(self, name: str) -> None:
        """The engine has recorded this pod's attempt: drop its state, keep only its name."""
        with self._lock:
            self._tombstones.pop(name, None)
            self._assumed.pop(name, None)
            if self._items.pop(name, None) is not None:
                self._settled.add(name)

    def assume(self, pod: Pod) -> None:
        """Insert a pod we just created, so the engine never sees its own pod as missing while
        the watch catches up (client-go's mutation cache)."""
        name = _name(pod)
        with self._lock:
            if name not in self._items and name not in self._settled:
                self._items[name] = _stripped(pod)  # the engine's own manifest, kept as is
                self._assumed[name] = time.monotonic()
            self._tombstones.pop(name, None)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pod-informer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        abort = self._abort
        if abort is not None:
            with contextlib.suppress(Exception):  # best effort: the thread is a daemon anyway
                abort()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                if self._rv is None:
                    items, rv = self.cluster.list_pods(self.selector)
                    self._replace(items)
                    self._rv = rv
                    self._synced.set()
                self._watch(self._rv)
                failures = 0
            except WatchExpired as exc:
                log.info("pod watch expired (%s): re-listing", exc)
                self.relists += 1
                self._rv = None
            except Exception as exc:  # noqa: BLE001 - the loop must outlive API trouble
                if self._stopped.is_set():
                    break
                self.last_error = exc
                failures += 1
                log.warning("pod watch failed (%s), retry %d", describe_error(exc), failures)
                if failures >= 5:
                    self._rv = None  # resuming keeps failing: start over from a fresh list
                self._stopped.wait(min(self.max_backoff, 0.1 * 2**failures))

    def _watch(self, rv: str) -> None:
        """Apply events from `rv` on; `self._rv` follows each one, so a watch that breaks
        resumes after the last event applied, never before it or past it."""

        def keep_abort(abort: Callable[[], None]) -> None:
            self._abort = abort
            if self._stopped.is_set():  # stop() ran before the abort was known: do it now
                abort()

        for kind, obj in self.cluster.watch_pods(self.selector, rv, self.watch_timeout, keep_abort):
            if self._stopped.is_set():
                break
            if kind == "DELETED":
                self._delete(obj)
            elif kind != "BOOKMARK":
                self._upsert(obj)
            self._rv = _rv(obj) or self._rv
        self._abort = None

    def _unless_settled(self, obj: Pod) -> tuple[str, Pod]:
        """The pod's name, and the pod compacted as the cache keeps it, unless the engine has
        settled it: never stored again, so compacting it would be wasted. Only this thread
        unsettles a name (_delete, _replace), so a settled pod stays settled."""
        name = _name(obj)
        with self._lock:
            settled = name in self._settled
        return name, obj if settled else _compact(obj)

    def _upsert(self, obj: Pod) -> None:
        name, obj = self._unless_settled(obj)
        with self._lock:
            if name not in self._settled:
                self._items[name] = obj
            self._assumed.pop(name, None)
            self._tombstones.pop(name, None)
        self.on_change(obj)

    def _delete(self, obj: Pod) -> None:
        name, obj = self._unless_settled(obj)
        with self._lock:
            last = self._items.pop(name, None)
            self._assumed.pop(name, None)
            if name in self._settled:  # recorded already: nobody will read its evidence
                self._settled.discard(name)
            else:
                # The DELETED object is the final state; it carries the termination evidence.
                self._bury(name, obj if obj.get("status") else (last or obj))
        self.on_change(obj)

    def _bury(self, name: str, pod: Pod) -> None:
        """Keep a deleted pod's last state (lock held), dropping the oldest past the bounds."""
        now = time.monotonic()
        self._tombstones.pop(name, None)
        self._tombstones[name] = (now, pod)
        while self._tombstones:
            oldest_name, (when, _) = next(iter(self._tombstones.items()))
            if len(self._tombstones) <= MAX_TOMBSTONES and now - when < TOMBSTONE_TTL:
                break
            del self._tombstones[oldest_name]

    def _replace(self, items: list[Pod]) -> None:
        """Swap in a fresh list; deliver what changed and what vanished in the gap."""
        with self._lock:
            settled = set(self._settled)
        listed = {_name(p) for p in items}
        fresh = {n: _compact(p) for p in items if (n := _name(p)) not in settled}
        now = time.monotonic()
        with self._lock:
            self._settled &= listed  # a settled pod missing from the list is gone
            for name in self._settled:  # settled meanwhile by the engine, too
                fresh.pop(name, None)
            old = self._items
            changed = [p for n, p in fresh.items() if _rv(old.get(n) or {}) != _rv(p)]
            gone = []
            for name, pod in old.items():
                if name in fresh:
                    continue
                since = self._assumed.get(name)
                if since is not None and now - since < ASSUME_TTL:
                    fresh[name] = pod  # created after the list was cut; the watch will confirm
                else:
                    gone.append(pod)
            self._items = fresh
            self._assumed = {
                n: t for n, t in self._assumed.items() if n in fresh and n not in listed
            }
            for pod in gone:
                self._bury(_name(pod), pod)
        for pod in changed:
            self.on_change(pod)
        for pod in gone:
            self.on_change(pod)
