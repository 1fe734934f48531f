"""One codec between protobuf messages and msgpack maps (the ZeroMQ wire format).

A message becomes a map with the proto's snake_case field names:

- scalars as themselves (bytes as msgpack bin), enums by name (`"ENCODING_PNG"`; numbers
  are accepted on input), repeated fields as lists, sub-messages as maps;
- proto3 scalars and repeated fields are always present; sub-messages and oneof members
  only when set (at most one member of a oneof); `None` on input means "not set".

`to_dict(msg)` / `from_dict(cls, d)` convert; `pack` / `unpack` add msgpack. Every problem
with input raises `CodecError` (an `InvalidArgument`) saying which field and what is allowed.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from avatar_runtime.errors import InvalidArgument

FD = FieldDescriptor
_INT_RANGES = {
    FD.TYPE_INT32: (-2**31, 2**31 - 1), FD.TYPE_SINT32: (-2**31, 2**31 - 1),
    FD.TYPE_SFIXED32: (-2**31, 2**31 - 1), FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1), FD.TYPE_INT64: (-2**63, 2**63 - 1),
    FD.TYPE_SINT64: (-2**63, 2**63 - 1), FD.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1), FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38
MAX_DEPTH = 16


class CodecError(InvalidArgument):
    """Input that does not decode into the expected message."""


# -- proto -> dict ----------------------------------------------------------------------
def to_dict(message: Message) -> dict:
    """Proto message -> msgpack-ready dict (see module doc)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.label == FD.LABEL_REPEATED:
            out[field.name] = [_scalar_out(field, v) for v in value]
        elif _has_presence(field):
            if message.HasField(field.name):
                out[field.name] = _scalar_out(field, value)
        else:
            out[field.name] = _scalar_out(field, value)
    return out


def _has_presence(field: FieldDescriptor) -> bool:
    return field.type == FD.TYPE_MESSAGE or field.containing_oneof is not None


def _scalar_out(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FD.TYPE_MESSAGE:
        return to_dict(value)
    if field.type == FD.TYPE_ENUM:
        member = field.enum_type.values_by_number.get(value)
        return member.name if member is not None else value
    return value


# -- dict -> proto ----------------------------------------------------------------------
def from_dict(cls: type[Message], data: Any, where: str | None = None) -> Message:
    """Dict (as decoded from msgpack) -> proto message of type `cls`, or CodecError."""
    message = cls()
    _fill(message, data, where or cls.DESCRIPTOR.name, 0)
    return message


def _fill(message: Message, data: Any, where: str, depth: int) -> None:
    descriptor: Descriptor = message.DESCRIPTOR
    if depth > MAX_DEPTH:
        raise CodecError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        raise CodecError(f"{where} must be a map ({descriptor.name}), got {_kind(data)}")
    oneofs_seen: dict[str, str] = {}
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key) if isinstance(key, str) else None
        if field is None:
            names = ", ".join(descriptor.fields_by_name) or "none"
            raise CodecError(f"{where}: unknown field {key!r} for {descriptor.name} (fields: {names})")
        if value is None:
            continue
        path = f"{where}.{key}"
        if field.containing_oneof is not None:
            group = field.containing_oneof.name
            if group in oneofs_seen:
                raise CodecError(f"{where}: {oneofs_seen[group]!r} and {key!r} are both set, but "
                                 f"they are alternatives (oneof {group}); set one")
            oneofs_seen[group] = key
        if field.label == FD.LABEL_REPEATED:
            if not isinstance(value, (list, tuple)):
                raise CodecError(f"{path} must be a list, got {_kind(value)}")
            if field.type == FD.TYPE_MESSAGE:
                container = getattr(message, key)
                for i, item in enumerate(value):
                    _fill(container.add(), item, f"{path}[{i}]", depth + 1)
            else:
                getattr(message, key).extend(
                    _scalar_in(field, item, f"{path}[{i}]") for i, item in enumerate(value))
        elif field.type == FD.TYPE_MESSAGE:
            sub = getattr(message, key)
            sub.SetInParent()
            _fill(sub, value, path, depth + 1)
        else:
            setattr(message, key, _scalar_in(field, value, path))


def _scalar_in(field: FieldDescriptor, value: Any, path: str) -> Any:
    kind = field.type
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CodecError(f"{path} must be a number, got {_kind(value)}")
        value = float(value)
        if kind == FD.TYPE_FLOAT and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise CodecError(f"{path} = {value:g} does not fit a 32-bit float")
        return value
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        if isinstance(value, bool) or not isinstance(value, int):
            raise CodecError(f"{path} must be an integer, got {_kind(value)}")
        if not low <= value <= high:
            raise CodecError(f"{path} = {value} is outside {low}..{high}")
        return value
    if kind == FD.TYPE_BOOL:
        if not isinstance(value, bool):
            raise CodecError(f"{path} must be true or false, got {_kind(value)}")
        return value
    if kind == FD.TYPE_STRING:
        if not isinstance(value, str):
            raise CodecError(f"{path} must be a string, got {_kind(value)}")
        return value
    if kind == FD.TYPE_BYTES:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise CodecError(f"{path} must be bytes (msgpack bin), got {_kind(value)}")
        return bytes(value)
    if kind == FD.TYPE_ENUM:
        return _enum_in(field, value, path)
    raise CodecError(f"{path}: unsupported field type {kind}")  # pragma: no cover


def _enum_in(field: FieldDescriptor, value: Any, path: str) -> int:
    enum = field.enum_type
    if isinstance(value, str) and value in enum.values_by_name:
        return enum.values_by_name[value].number
    # Range first: upb looks numbers up by their low 32 bits (2**32 + 1 would "be" 1).
    if (isinstance(value, int) and not isinstance(value, bool) and -2**31 <= value < 2**31
            and value in enum.values_by_number):
        return value
    names = ", ".join(enum.values_by_name)
    raise CodecError(f"{path} = {value!r} is not a {enum.name} (one of {names})")


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            bytes: "bytes", list: "a list", tuple: "a list", dict: "a map"}.get(
        type(value), type(value).__name__)


# -- msgpack ----------------------------------------------------------------------------
def pack(obj: Any) -> bytes:
    """Any msgpack-able object (dicts from `to_dict`) -> bytes."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Bytes -> object, or CodecError for anything that is not exactly one msgpack value."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except msgpack.ExtraData:
        raise CodecError("message has trailing bytes after the msgpack value") from None
    except (ValueError, msgpack.UnpackException, TypeError, RecursionError) as exc:
        kind = type(exc).__name__
        raise CodecError(f"message is not valid msgpack ({kind}: {exc})"[:300]) from None


def encode(message: Message) -> bytes:
    """Proto message -> msgpack bytes."""
    return pack(to_dict(message))


def decode(cls: type[Message], data: bytes) -> Message:
    """Msgpack bytes -> proto message of type `cls`, or CodecError."""
    return from_dict(cls, unpack(data))
