"""Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``) of the few kinds kubectl's
``create`` subcommands send that way: Namespace, ConfigMap, Secret and ServiceAccount.

The body is the magic ``k8s\\x00`` followed by a ``runtime.Unknown`` message (``typeMeta`` 1, ``raw`` 2) whose
``raw`` holds the object in the protobuf encoding of ``k8s.io/api``; field numbers below are those of its
``generated.proto`` files. Fields kubesim does not know are skipped, as a decoder of an older version would.
"""

from __future__ import annotations

import base64
from typing import Any

from kubesim.errors import ApiError

JsonObject = dict[str, Any]
MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# A field is (name, type); a type is a scalar name, ("message", fields), ("map", value type) or ("repeated", type).
FieldType = Any
Fields = dict[int, tuple[str, FieldType]]

_OBJECT_META: Fields = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    14: ("finalizers", ("repeated", "string")),
}
_TYPE_META: Fields = {1: ("apiVersion", "string"), 2: ("kind", "string")}
_UNKNOWN: Fields = {1: ("typeMeta", ("message", _TYPE_META)), 2: ("raw", "bytes")}
_OBJECT_REFERENCE: Fields = {
    1: ("kind", "string"),
    2: ("namespace", "string"),
    3: ("name", "string"),
    5: ("apiVersion", "string"),
}
KINDS: dict[tuple[str, str], Fields] = {
    ("v1", "Namespace"): {
        1: ("metadata", ("message", _OBJECT_META)),
        2: ("spec", ("message", {1: ("finalizers", ("repeated", "string"))})),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", ("message", _OBJECT_META)),
        2: ("data", ("map", "string")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: ("metadata", ("message", _OBJECT_META)),
        2: ("data", ("map", "bytes")),
        3: ("type", "string"),
        4: ("stringData", ("map", "string")),
        5: ("immutable", "bool"),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", ("message", _OBJECT_META)),
        2: ("secrets", ("repeated", ("message", _OBJECT_REFERENCE))),
        3: ("imagePullSecrets", ("repeated", ("message", {1: ("name", "string")}))),
        4: ("automountServiceAccountToken", "bool"),
    },
}


def _unsupported(detail: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"kubesim decodes protobuf bodies only for {', '.join(kind for _, kind in KINDS)} ({detail}); "
        "send JSON or YAML instead, e.g. kubectl create -f or kubectl apply -f",
    )


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise _unsupported("truncated body")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: an int for varints, bytes for length-delimited and fixed-width values."""
    fields: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
            fields.append((number, value))
        elif wire_type == 2:
            length, position = _varint(data, position)
            fields.append((number, data[position : position + length]))
            position += length
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            fields.append((number, data[position : position + width]))
            position += width
        else:
            raise _unsupported(f"wire type {wire_type}")
    return fields


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "bool":
        return bool(value)
    if isinstance(value, int):
        return value
    if kind == "string":
        return value.decode()
    return base64.b64encode(value).decode()  # bytes are base64 in JSON


def _decode(data: bytes, fields: Fields) -> JsonObject:
    result: JsonObject = {}
    for number, value in _fields(data):
        if number not in fields:
            continue
        name, kind = fields[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            entry = {n: v for n, v in _fields(value if isinstance(value, bytes) else b"")}
            key = entry.get(1, b"")
            item = entry.get(2, b"")
            result.setdefault(name, {})[_scalar("string", key)] = _scalar(kind[1], item)
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            result.setdefault(name, []).append(_value(kind[1], value))
        else:
            result[name] = _value(kind, value)
    return result


def _value(kind: FieldType, value: int | bytes) -> Any:
    if isinstance(kind, tuple) and kind[0] == "message":
        return _decode(value if isinstance(value, bytes) else b"", kind[1])
    return _scalar(kind, value)


def decode_object(body: bytes) -> JsonObject:
    """The JSON form of a protobuf-encoded object of one of ``KINDS``; 415 for anything else."""
    if not body.startswith(MAGIC):
        raise _unsupported("no k8s protobuf envelope")
    envelope = _decode(body[len(MAGIC) :], _UNKNOWN)
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    fields = KINDS.get((api_version, kind))
    if fields is None:
        raise _unsupported(f"not {api_version} {kind}")
    raw = base64.b64decode(envelope.get("raw", ""))
    return {"apiVersion": api_version, "kind": kind, **_decode(raw, fields)}
