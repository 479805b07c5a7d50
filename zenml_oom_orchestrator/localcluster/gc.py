"""Deletion for the Store: graceful pod deletion, finalizers, namespace termination and the
ownerReferences cascade (Background, Foreground, Orphan), done synchronously under the store
lock so tests and controllers see a consistent result as soon as `delete` returns."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import BadRequest, Conflict
from .objects import clone, timestamp
from .resources import RESOURCES, ResourceType, resource_type
from .watch import DELETED, MODIFIED

Key = tuple[str, str]  # (namespace or "", name)
POLICIES = ("Background", "Foreground", "Orphan")
FOREGROUND = "foregroundDeletion"


def _owner_uids(obj: dict[str, Any] | None) -> set[str]:
    if obj is None:
        return set()
    return {r["uid"] for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid")}


class GarbageCollector:
    """Mixin for `Store`; relies on its lock, tables and write helpers."""

    _lock: threading.RLock
    _objects: dict[str, dict[Key, dict[str, Any]]]
    _uids: dict[str, tuple[str, Key]]
    _dependents: dict[str, set[tuple[str, Key]]]
    clock: Callable[[], float]

    # Provided by Store.
    def _snapshot(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def _commit(self, rt: ResourceType, cur: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _put(
        self, resource: str, key: Key, obj: dict[str, Any], type: str, old: dict[str, Any] | None
    ) -> None:
        raise NotImplementedError

    def conflict_error(self, rt: ResourceType, name: str) -> Conflict:
        raise NotImplementedError

    def delete(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Delete an object; returns its last state (with `deletionTimestamp` if it stays).

        Pods bound to a node and not yet finished get a `deletionTimestamp` and stay until
        deleted with grace 0 (the kubelet's final delete); objects with finalizers stay until
        the finalizers are removed. The default propagation is Background, except Orphan for
        batch/v1 Jobs, as in the real API server."""
        rt = resource_type(resource)
        if propagation_policy is not None and propagation_policy not in POLICIES:
            raise BadRequest(
                f'Unsupported value: "{propagation_policy}": supported values: '
                '"Foreground", "Background", "Orphan"'
            )
        with self._lock:
            cur = self._snapshot(rt, namespace, name)
            meta = cur["metadata"]
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise Conflict(
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                    name=name,
                    kind=rt.plural,
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise self.conflict_error(rt, name)
            result = self._delete_locked(rt, cur, grace_period_seconds, propagation_policy)
        return clone(result)

    def _delete_locked(
        self, rt: ResourceType, cur: dict[str, Any], grace: int | None, policy: str | None
    ) -> dict[str, Any]:
        policy = policy or ("Orphan" if rt.plural == "jobs" else "Background")
        meta = cur["metadata"]
        if rt.plural == "namespaces":
            return self._terminate_namespace(rt, cur)
        grace = self._pod_grace(cur, grace) if rt.plural == "pods" else 0
        uid = meta["uid"]
        if policy == "Orphan":
            self._orphan_dependents(uid)
        deps = bool(self._dependents.get(uid))
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and deps and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if not finalizers and grace == 0:
            return self._remove(rt, cur, policy)
        new = clone(cur)
        nmeta = new["metadata"]
        if finalizers:
            nmeta["finalizers"] = finalizers
        old_grace = meta.get("deletionGracePeriodSeconds")
        if "deletionTimestamp" not in meta or (old_grace is not None and grace < old_grace):
            nmeta["deletionTimestamp"] = timestamp(self.clock() + grace)
            nmeta["deletionGracePeriodSeconds"] = grace
        result = self._write_meta(rt, cur, new)
        if policy == "Foreground":
            for dep_resource, dep_key in list(self._dependents.get(uid, ())):
                dep = self._objects[dep_resource].get(dep_key)
                if dep is not None:
                    self._delete_locked(resource_type(dep_resource), dep, None, "Foreground")
        return result

    def _write_meta(
        self, rt: ResourceType, cur: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        """Write deletion metadata that `_commit` would otherwise protect."""
        if new == cur:
            return cur
        key = (cur["metadata"].get("namespace", ""), cur["metadata"]["name"])
        self._put(rt.plural, key, new, MODIFIED, cur)
        return self._finalize_if_done(rt, key, new)

    @staticmethod
    def _pod_grace(pod: dict[str, Any], requested: int | None) -> int:
        # As the real API server: unscheduled or finished pods have nothing to stop.
        if not (pod.get("spec") or {}).get("nodeName"):
            return 0
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is None:
            requested = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return max(0, int(requested or 0))

    def _finalize_if_done(self, rt: ResourceType, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
            and rt.plural != "namespaces"
        ):
            return self._remove(rt, obj, "Background")
        return obj

    def _remove(self, rt: ResourceType, cur: dict[str, Any], policy: str) -> dict[str, Any]:
        meta = cur["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        gone = clone(cur)
        self._put(rt.plural, key, gone, DELETED, cur)
        uid = meta["uid"]
        for dep_resource, dep_key in sorted(self._dependents.pop(uid, ())):
            dep = self._objects[dep_resource].get(dep_key)
            if dep is None:
                continue
            if _owner_uids(dep) - {uid} & self._uids.keys():
                self._strip_owner(dep_resource, dep, uid)  # another owner still lives
            elif policy != "Orphan":
                dep_policy = "Foreground" if policy == "Foreground" else "Background"
                self._delete_locked(resource_type(dep_resource), dep, None, dep_policy)
        if meta.get("namespace"):
            self._maybe_end_namespace(meta["namespace"])
        return gone

    def _orphan_dependents(self, uid: str) -> None:
        for dep_resource, dep_key in list(self._dependents.get(uid, ())):
            dep = self._objects[dep_resource].get(dep_key)
            if dep is not None:
                self._strip_owner(dep_resource, dep, uid)

    def _strip_owner(self, resource: str, obj: dict[str, Any], uid: str) -> None:
        new = clone(obj)
        refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            new["metadata"].pop("ownerReferences", None)
        self._commit(RESOURCES[resource], obj, new)

    def _reindex(
        self, resource: str, key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        """Keep the uid and owner→dependents indexes; finish foreground owners whose last
        dependent just went away."""
        if new is not None:
            self._uids[new["metadata"]["uid"]] = (resource, key)
        elif old is not None:
            self._uids.pop(old["metadata"]["uid"], None)
        before, after = _owner_uids(old), _owner_uids(new)
        if before == after:
            return
        ref = (resource, key)
        for uid in after - before:
            self._dependents.setdefault(uid, set()).add(ref)
        for uid in before - after:
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(ref)
                if not deps:
                    del self._dependents[uid]
                    self._release_foreground(uid)

    def _release_foreground(self, owner_uid: str) -> None:
        where = self._uids.get(owner_uid)
        if where is None:
            return
        owner = self._objects[where[0]].get(where[1])
        if owner is None or FOREGROUND not in (owner["metadata"].get("finalizers") or []):
            return
        new = clone(owner)
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"]["finalizers"] if f != FOREGROUND
        ] or None
        if new["metadata"]["finalizers"] is None:
            del new["metadata"]["finalizers"]
        self._write_meta(RESOURCES[where[0]], owner, new)

    def _terminate_namespace(self, rt: ResourceType, ns: dict[str, Any]) -> dict[str, Any]:
        name = ns["metadata"]["name"]
        marked = ns
        if not ns["metadata"].get("deletionTimestamp"):
            new = clone(ns)
            new["metadata"]["deletionTimestamp"] = timestamp(self.clock())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new.setdefault("status", {})["phase"] = "Terminating"
            marked = self._write_meta(rt, ns, new)
        for other in RESOURCES.values():
            if not other.namespaced:
                continue
            for key, obj in list(self._objects[other.plural].items()):
                if key[0] == name and not obj["metadata"].get("deletionTimestamp"):
                    self._delete_locked(other, obj, None, "Background")
        # Deleting the contents may already have removed the namespace.
        return (
            self._maybe_end_namespace(name) or self._objects["namespaces"].get(("", name)) or marked
        )

    def _maybe_end_namespace(self, name: str) -> dict[str, Any] | None:
        ns = self._objects["namespaces"].get(("", name))
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return None
        for other in RESOURCES.values():
            if other.namespaced and any(k[0] == name for k in self._objects[other.plural]):
                return None
        return self._remove(RESOURCES["namespaces"], ns, "Background")
