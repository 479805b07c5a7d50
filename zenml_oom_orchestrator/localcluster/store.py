"""The local cluster's object store: the in-process API every part of the cluster shares.

Objects are JSON-like dicts exactly as the API returns them. Stored objects are immutable
snapshots (every write stores a new dict), so reads copy outside the lock and watch events
share one snapshot and one JSON encoding among all watchers. See docs/localcluster-design.md.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from .defaults import apply_defaults, default_toleration_seconds
from .errors import AlreadyExists, BadRequest, Conflict, Expired, Forbidden, NotFound
from .gc import GarbageCollector, Key
from .objects import clone, timestamp
from .resources import RESOURCES, ResourceType, resource_type
from .selectors import object_matcher
from .validation import validate, validate_pod_update
from .watch import ADDED, DELETED, MODIFIED, Event, Watch

# The errors are re-exported: the design doc names them as part of the Store API.

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Fields only the store sets: a client's values are dropped on create and kept on update.
_SYSTEM_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)
Objects = list[dict[str, Any]]  # alias: `Store.list` shadows the builtin in annotations
# hook(resource, type, obj, old): see Store.write_hooks.
WriteHook = Callable[[str, str, dict[str, Any], dict[str, Any] | None], None]
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


class Store(GarbageCollector):
    """Thread-safe object store with resourceVersions, selectors, watches and bounded
    per-resource watch history (`history_size` events; older resourceVersions are `Expired`)."""

    def __init__(
        self,
        history_size: int = 10_000,
        max_watch_queue: int = 100_000,
        clock: Callable[[], float] = time.time,
        namespaces: tuple[str, ...] = DEFAULT_NAMESPACES,
    ) -> None:
        self._lock = threading.RLock()
        self._rv = 0
        self.history_size = history_size
        self.max_watch_queue = max_watch_queue
        self.clock = clock
        self._objects: dict[str, dict[Key, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self._history: dict[str, deque[Event]] = {r: deque() for r in RESOURCES}
        self._trimmed: dict[str, int] = dict.fromkeys(RESOURCES, 0)
        self._watchers: dict[str, set[Watch]] = {r: set() for r in RESOURCES}
        self._uids: dict[str, tuple[str, Key]] = {}
        self._dependents: dict[str, set[tuple[str, Key]]] = {}
        # Called as hook(resource, type, obj, old) under the lock on every write, in
        # resourceVersion order (benchmarks stamp when a status was written). Keep them cheap.
        self.write_hooks: list[WriteHook] = []
        for ns in namespaces:
            self.create("namespaces", {"metadata": {"name": ns}})

    # -- reads ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion (of any write to any resource)."""
        return str(self._rv)

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        rt = resource_type(resource)
        with self._lock:
            obj = self._snapshot(rt, namespace, name)
        return clone(obj)

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[Objects, str]:
        """Matching objects sorted by namespace/name, and the list's resourceVersion."""
        items, rv = self.list_shared(resource, namespace, label_selector, field_selector)
        return [clone(o) for o in items], rv

    def list_shared(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[Objects, str]:
        """As `list`, but the items are the store's own snapshots: never mutate them."""
        matcher = object_matcher(label_selector, field_selector)
        items, rv = self.snapshot(resource, namespace)
        if matcher is not None:
            items = [o for o in items if matcher(o)]
        return items, rv

    def snapshot(self, resource: str, namespace: str | None = None) -> tuple[Objects, str]:
        """All objects (of a namespace) sorted by namespace/name, unfiltered and shared."""
        rt = resource_type(resource)
        with self._lock:
            objs = self._objects[resource]
            if namespace and rt.namespaced:
                keys = [k for k in objs if k[0] == namespace]
            else:
                keys = list(objs)
            keys.sort()
            return [objs[k] for k in keys], str(self._rv)

    # -- writes --------------------------------------------------------------------------------

    def create(
        self, resource: str, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Store a new object: fills uid, resourceVersion, creationTimestamp and defaults,
        resolves generateName; `AlreadyExists` on a taken name, `Invalid` on bad fields."""
        rt = resource_type(resource)
        new = clone(obj)
        meta = new.get("metadata") or {}
        new["metadata"] = meta
        new["kind"], new["apiVersion"] = rt.kind, rt.api_version
        if rt.namespaced:
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise BadRequest(
                    "the namespace of the provided object does not match the namespace "
                    "sent on the request"
                )
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        for field in (*_SYSTEM_META, "selfLink", "managedFields"):
            meta.pop(field, None)
        with self._lock:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = self._generate_name(rt, meta)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = timestamp(self.clock())
            meta["generation"] = 1
            apply_defaults(resource, new)
            if resource == "pods" and isinstance(new.get("spec"), dict):
                default_toleration_seconds(new["spec"])  # admission: on create only
            validate(rt, new)
            if rt.namespaced:
                self._check_namespace_open(rt, meta["namespace"], meta["name"])
            key = self._key(rt, meta.get("namespace"), meta["name"])
            if key in self._objects[resource]:
                raise AlreadyExists(
                    f'{self._qualified(rt)} "{meta["name"]}" already exists',
                    name=meta["name"],
                    group=rt.group,
                    kind=rt.plural,
                )
            self._put(resource, key, new, ADDED, None)
            if resource == "namespaces":
                self.create("serviceaccounts", {"metadata": {"name": "default"}}, meta["name"])
        return clone(new)

    def update(
        self, resource: str, obj: dict[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        """Replace an object (as PUT). `Conflict` if `metadata.resourceVersion` is set and
        stale. Without a subresource `.status` is kept (as the API server does for types with a
        status subresource); with `subresource="status"` only `.status` is taken."""
        rt = resource_type(resource)
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise BadRequest("name is required for update")
        with self._lock:
            cur = self._snapshot(rt, meta.get("namespace"), name)
            rv = meta.get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise self.conflict_error(rt, name)
            if subresource == "status":
                new = clone(cur)
                new["status"] = clone(obj.get("status") or {})
            else:
                new = clone(obj)
                if rt.has_status:
                    new["status"] = clone(cur.get("status"))
            result = self._commit(rt, cur, new, resize=False)
        return clone(result)

    def mutate(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        fn: Callable[[dict[str, Any]], Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Atomic read-modify-write under the store lock; `fn(obj)` edits a copy in place
        (return False to skip the write). Without a subresource every change `fn` makes is
        taken, status included (controllers are trusted); with "status" only `.status`.
        Unchanged objects are not written (no new resourceVersion, no event)."""
        rt = resource_type(resource)
        with self._lock:
            cur = self._snapshot(rt, namespace, name)
            work = clone(cur)
            if fn(work) is False:
                return clone(cur)
            if subresource == "status":
                new = clone(cur)
                new["status"] = work.get("status") or {}
            else:
                new = work
            result = self._commit(rt, cur, new, resize=subresource == "resize")
        return clone(result)

    def watch(
        self,
        resource: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout: float | None = None,
        bookmark_interval: float | None = None,
    ) -> Watch:
        """Events after `resource_version`; with None/"" /"0", first an ADDED for every
        current object. `Expired` if that version's history was trimmed. BOOKMARK events
        come every `bookmark_interval` seconds without events, when given."""
        rt = resource_type(resource)
        matcher = object_matcher(label_selector, field_selector)
        w = Watch(
            resource,
            namespace if rt.namespaced and namespace else None,
            matcher,
            timeout=timeout,
            bookmark_interval=bookmark_interval,
            max_queue=self.max_watch_queue,
            lock=self._lock,
            current_rv=lambda: self._rv,
            bookmark_object=lambda rv: {
                "kind": rt.kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(rv)},
            },
            on_stop=self._unwatch,
        )
        with self._lock:
            if resource_version in (None, "", "0"):
                objs = self._objects[resource]
                for key in sorted(objs):
                    obj = objs[key]
                    w._deliver(Event(int(obj["metadata"]["resourceVersion"]), ADDED, obj, None))
            else:
                since = self._parse_rv(resource_version)
                if since < self._trimmed[resource]:
                    raise Expired(
                        f"too old resource version: {since} ({self._trimmed[resource] + 1})"
                    )
                for ev in self._history[resource]:
                    if ev.rv > since:
                        w._deliver(ev)
            self._watchers[resource].add(w)
        return w

    def trim_history(self, resource: str | None = None, keep: int = 0) -> None:
        """Drop all but the newest `keep` history events (tests, forced-expiry faults)."""
        with self._lock:
            for r in [resource] if resource else list(RESOURCES):
                hist = self._history[r]
                while len(hist) > keep:
                    self._trimmed[r] = hist.popleft().rv
                # Nothing older than now can be resumed, even with no events dropped.
                if keep == 0:
                    self._trimmed[r] = self._rv

    # -- internals (all called with the lock held) ---------------------------------------------

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return ((namespace or "default") if rt.namespaced else "", name)

    @staticmethod
    def _qualified(rt: ResourceType) -> str:
        return f"{rt.plural}.{rt.group}" if rt.group else rt.plural

    @staticmethod
    def _parse_rv(rv: str) -> int:
        try:
            return int(rv)
        except ValueError:
            raise BadRequest(f"invalid resource version {rv!r}") from None

    def _snapshot(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._objects[rt.plural].get(self._key(rt, namespace, name))
        if obj is None:
            raise NotFound(
                f'{self._qualified(rt)} "{name}" not found',
                name=name,
                group=rt.group,
                kind=rt.plural,
            )
        return obj

    def conflict_error(self, rt: ResourceType, name: str) -> Conflict:
        """The 409 for a stale resourceVersion, worded as the API server words it."""
        return Conflict(
            f'Operation cannot be fulfilled on {self._qualified(rt)} "{name}": the object has '
            "been modified; please apply your changes to the latest version and try again",
            name=name,
            group=rt.group,
            kind=rt.plural,
        )

    def _generate_name(self, rt: ResourceType, meta: dict[str, Any]) -> str:
        base = str(meta["generateName"])[:58]
        for _ in range(100):
            name = base + "".join(random.choices(_NAME_CHARS, k=5))
            if self._key(rt, meta.get("namespace"), name) not in self._objects[rt.plural]:
                return name
        raise AlreadyExists(f"could not generate a free name from {base!r}")

    def _check_namespace_open(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self._objects["namespaces"].get(("", namespace))
        if ns is None:
            raise NotFound(f'namespaces "{namespace}" not found', name=namespace, kind="namespaces")
        if ns["metadata"].get("deletionTimestamp"):
            raise Forbidden(
                f'{rt.plural} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                name=name,
                kind=rt.plural,
                causes=[
                    {
                        "reason": "NamespaceTerminating",
                        "message": f"namespace {namespace} is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            )

    def _commit(
        self, rt: ResourceType, cur: dict[str, Any], new: dict[str, Any], resize: bool = False
    ) -> dict[str, Any]:
        """Write `new` over `cur` keeping system metadata; skip unchanged objects. A pod's spec
        changes only as the API server allows (`pods/resize` for resources; a binding)."""
        cmeta = cur["metadata"]
        meta = new.get("metadata") or {}
        new["metadata"] = meta
        new["kind"], new["apiVersion"] = rt.kind, rt.api_version
        meta["name"] = cmeta["name"]
        if rt.namespaced:
            meta["namespace"] = cmeta["namespace"]
        for field in _SYSTEM_META:
            if field in cmeta:
                meta[field] = cmeta[field]
            else:
                meta.pop(field, None)
        apply_defaults(rt.plural, new)
        validate(rt, new)
        if rt.plural == "pods" and not resize:
            validate_pod_update(cur, new)
        if new == cur:
            return cur
        if "spec" in new and _spec_changed(cur.get("spec"), new.get("spec")):
            meta["generation"] = int(cmeta.get("generation", 1)) + 1
        if cmeta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(cmeta.get("finalizers") or [])
            if added:
                raise Forbidden(
                    f"no new finalizers can be added if the object is being deleted, found new "
                    f"finalizers {sorted(added)!r}"
                )
        key = self._key(rt, cmeta.get("namespace"), cmeta["name"])
        self._put(rt.plural, key, new, MODIFIED, cur)
        return self._finalize_if_done(rt, key, new)

    def _put(
        self, resource: str, key: Key, obj: dict[str, Any], type: str, old: dict[str, Any] | None
    ) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if type == DELETED:
            del self._objects[resource][key]
        else:
            self._objects[resource][key] = obj
        for hook in self.write_hooks:
            hook(resource, type, obj, old)
        ev = Event(self._rv, type, obj, old)
        hist = self._history[resource]
        hist.append(ev)
        if len(hist) > self.history_size:
            self._trimmed[resource] = hist.popleft().rv
        ended = []
        for w in self._watchers[resource]:
            w._deliver(ev)
            if w.stopped:
                ended.append(w)
        for w in ended:
            self._watchers[resource].discard(w)
        self._reindex(resource, key, old, None if type == DELETED else obj)

    def _unwatch(self, w: Watch) -> None:
        with self._lock:
            self._watchers[w.resource].discard(w)


def _spec_changed(old: Any, new: Any) -> bool:
    """A spec change that bumps `generation`; a pod's binding (setting `nodeName`) is none."""
    if old == new:
        return False
    if isinstance(old, dict) and isinstance(new, dict) and not old.get("nodeName"):
        return {k: v for k, v in new.items() if k != "nodeName"} != old
    return True
