"""The protobuf reader for kubectl's generators: what it refuses (what it reads is checked with
the real kubectl in test_kubectl.py)."""

from __future__ import annotations

import pytest

from zenml_oom_orchestrator.localcluster.apiserver.protobuf import MAGIC, decode_object
from zenml_oom_orchestrator.localcluster.errors import BadRequest


def _varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
    return out + bytes([n])


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _namespace(*fields: bytes) -> bytes:
    type_meta = _field(1, b"v1") + _field(2, b"Namespace")
    return MAGIC + _field(1, type_meta) + _field(2, b"".join(fields))


def test_reads_a_namespace_and_drops_what_go_writes_empty() -> None:
    meta = _field(1, b"zenml") + _field(2, b"") + _field(8, b"")
    assert decode_object(_namespace(_field(1, meta)), "Namespace") == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "zenml"},
    }


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_namespace(_field(1, _field(99, b"x"))), "cannot read field 99 of ObjectMeta"),
        (_namespace(_field(1, b"\x0a\x09zen")), "truncated or malformed"),
        (b"\x0a\x00", "does not start with the Kubernetes magic"),
    ],
)
def test_refuses_rather_than_drops(body: bytes, says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        decode_object(body, "Namespace")


def test_a_kind_it_does_not_read_names_the_json_way() -> None:
    body = MAGIC + _field(1, _field(1, b"batch/v1") + _field(2, b"Job")) + _field(2, b"")
    with pytest.raises(BadRequest, match="kubectl apply -f -"):
        decode_object(body, "Job")
