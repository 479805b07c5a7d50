"""Decode the protobuf bodies kubectl sends for the kinds its generators create.

kubectl 1.32 writes `kubectl create namespace|secret|serviceaccount|role|rolebinding|
clusterrole|clusterrolebinding` and `kubectl auth can-i` as `application/vnd.kubernetes.protobuf`
and does not fall back to JSON on a 415. The body is the `k8s\\x00` magic, then a
`runtime.Unknown` (typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3,
contentType=4) whose `raw` is the object's own message. The field numbers below are those of
k8s.io/api and k8s.io/apimachinery `generated.proto`.

Only the fields these kinds carry are known. A field outside them is refused (400) rather than
dropped, so nothing a client sent is silently lost; server-set fields (uid, resourceVersion,
creationTimestamp, ...) and `status` are read and ignored, as the API server ignores them on
create.
"""

from __future__ import annotations

import base64
from typing import Any

from ..errors import BadRequest

MAGIC = b"k8s\x00"
IGNORED = "-"  # a known field the server does not take from a client

# Field number -> (JSON name, type, repeated). Types: "string", "bytes", "bool", "int",
# "map" (map<string,string>), "bytesmap" (map<string,bytes>), or another message's name.
Field = tuple[str, str, bool]
MESSAGES: dict[str, dict[int, Field]] = {
    "TypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "Unknown": {
        1: ("typeMeta", "TypeMeta", False),
        2: ("raw", "bytes", False),
        3: ("contentEncoding", "string", False),
        4: ("contentType", "string", False),
    },
    "ObjectMeta": {
        1: ("name", "string", False),
        2: ("generateName", "string", False),
        3: ("namespace", "string", False),
        4: (IGNORED, "string", False),  # selfLink
        5: (IGNORED, "string", False),  # uid
        6: (IGNORED, "string", False),  # resourceVersion
        7: (IGNORED, "int", False),  # generation
        8: (IGNORED, "bytes", False),  # creationTimestamp
        9: (IGNORED, "bytes", False),  # deletionTimestamp
        10: (IGNORED, "int", False),  # deletionGracePeriodSeconds
        11: ("labels", "map", False),
        12: ("annotations", "map", False),
        13: ("ownerReferences", "OwnerReference", True),
        14: ("finalizers", "string", True),
        17: (IGNORED, "bytes", True),  # managedFields
    },
    "OwnerReference": {
        1: ("kind", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
        6: ("controller", "bool", False),
        7: ("blockOwnerDeletion", "bool", False),
    },
    "Namespace": {
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "NamespaceSpec", False),
        3: (IGNORED, "bytes", False),
    },
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "Secret": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "bytesmap", False),
        3: ("type", "string", False),
        4: ("stringData", "map", False),
        5: ("immutable", "bool", False),
    },
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta", False),
        2: ("secrets", "ObjectReference", True),
        3: ("imagePullSecrets", "LocalObjectReference", True),
        4: ("automountServiceAccountToken", "bool", False),
    },
    "ObjectReference": {
        1: ("kind", "string", False),
        2: ("namespace", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
        6: ("resourceVersion", "string", False),
        7: ("fieldPath", "string", False),
    },
    "LocalObjectReference": {1: ("name", "string", False)},
    "PolicyRule": {
        1: ("verbs", "string", True),
        2: ("apiGroups", "string", True),
        3: ("resources", "string", True),
        4: ("resourceNames", "string", True),
        5: ("nonResourceURLs", "string", True),
    },
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {
        1: ("metadata", "ObjectMeta", False),
        2: ("rules", "PolicyRule", True),
        3: ("aggregationRule", "AggregationRule", False),
    },
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", True)},
    "LabelSelector": {1: ("matchLabels", "map", False)},
    "Subject": {
        1: ("kind", "string", False),
        2: ("apiGroup", "string", False),
        3: ("name", "string", False),
        4: ("namespace", "string", False),
    },
    "RoleRef": {
        1: ("apiGroup", "string", False),
        2: ("kind", "string", False),
        3: ("name", "string", False),
    },
    "RoleBinding": {
        1: ("metadata", "ObjectMeta", False),
        2: ("subjects", "Subject", True),
        3: ("roleRef", "RoleRef", False),
    },
    "SelfSubjectAccessReview": {
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "SelfSubjectAccessReviewSpec", False),
        3: (IGNORED, "bytes", False),
    },
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes", False),
        2: ("nonResourceAttributes", "NonResourceAttributes", False),
    },
    "ResourceAttributes": {
        1: ("namespace", "string", False),
        2: ("verb", "string", False),
        3: ("group", "string", False),
        4: ("version", "string", False),
        5: ("resource", "string", False),
        6: ("subresource", "string", False),
        7: ("name", "string", False),
    },
    "NonResourceAttributes": {1: ("path", "string", False), 2: ("verb", "string", False)},
}
MESSAGES["ClusterRoleBinding"] = MESSAGES["RoleBinding"]
MESSAGES["SelfSubjectRulesReview"] = {
    1: ("metadata", "ObjectMeta", False),
    2: ("spec", "SelfSubjectRulesReviewSpec", False),
    3: (IGNORED, "bytes", False),
}
MESSAGES["SelfSubjectRulesReviewSpec"] = {1: ("namespace", "string", False)}
# Strings without `omitempty` in their Go types: "" is shown, as the real API server does.
KEEP_EMPTY = {("RoleRef", "apiGroup"), ("Subject", "kind"), ("Subject", "name")}
KINDS = (
    "Namespace",
    "Secret",
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise BadRequest("the protobuf body is truncated or malformed")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field on the wire, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise BadRequest("the protobuf body is truncated or malformed")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        else:
            raise BadRequest(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _scalar(kind: str, value: int | bytes, where: str) -> Any:
    if kind in ("string", "bytes") and not isinstance(value, bytes):
        raise BadRequest(f"protobuf field {where} should be length-delimited")
    if kind == "string":
        assert isinstance(value, bytes)
        return value.decode()
    if kind == "bytes":
        return value
    if kind == "bool":
        return bool(value)
    if isinstance(value, bytes):
        raise BadRequest(f"protobuf field {where} should be a number")
    return value - (1 << 64) if value >= 1 << 63 else value  # int64 two's complement


def decode_message(message: str, data: bytes) -> dict[str, Any]:
    """One protobuf message as the dict its JSON form would give."""
    schema = MESSAGES[message]
    out: dict[str, Any] = {}
    for number, _, value in _fields(data):
        if number not in schema:
            raise BadRequest(
                f"the local API server cannot read field {number} of {message} in a protobuf "
                "body; send JSON instead (kubectl ... --dry-run=client -o yaml | kubectl apply -f -)"
            )
        name, kind, repeated = schema[number]
        if name == IGNORED:
            continue
        where = f"{message}.{name}"
        if kind in ("map", "bytesmap"):
            if not isinstance(value, bytes):
                raise BadRequest(f"protobuf field {where} should be length-delimited")
            entry = dict((n, v) for n, _, v in _fields(value))
            key = _scalar("string", entry.get(1, b""), where)
            item = entry.get(2, b"")
            mapped = (
                base64.b64encode(item).decode()  # type: ignore[arg-type]
                if kind == "bytesmap"
                else _scalar("string", item, where)
            )
            out.setdefault(name, {})[key] = mapped
            continue
        if kind in MESSAGES:
            if not isinstance(value, bytes):
                raise BadRequest(f"protobuf field {where} should be a message")
            decoded: Any = decode_message(kind, value)
        else:
            decoded = _scalar(kind, value, where)
        if repeated:
            out.setdefault(name, []).append(decoded)
        elif decoded != "" or (message, name) in KEEP_EMPTY:
            # Go writes every non-pointer string, empty or not; JSON omits the empty ones.
            out[name] = decoded
    return out


def decode_object(body: bytes, expected_kind: str) -> dict[str, Any]:
    """The object in a `k8s\\x00` + runtime.Unknown body, as JSON-shaped data."""
    if not body.startswith(MAGIC):
        raise BadRequest("the protobuf body does not start with the Kubernetes magic 'k8s\\x00'")
    unknown = decode_message("Unknown", body[len(MAGIC) :])
    type_meta = unknown.get("typeMeta") or {}
    kind = type_meta.get("kind") or expected_kind
    if kind != expected_kind:
        raise BadRequest(f"the body is a {kind}, but this URL takes a {expected_kind}")
    if kind not in KINDS:
        raise BadRequest(
            f"the local API server reads protobuf bodies only for {', '.join(KINDS)}, not "
            f"{kind}; send JSON instead (kubectl ... --dry-run=client -o yaml | kubectl apply -f -)"
        )
    if unknown.get("contentEncoding"):
        raise BadRequest(f"unsupported contentEncoding {unknown['contentEncoding']!r}")
    obj = decode_message(kind, unknown.get("raw", b""))
    api_version = type_meta.get("apiVersion")
    return {**({"apiVersion": api_version} if api_version else {}), "kind": kind, **obj}
