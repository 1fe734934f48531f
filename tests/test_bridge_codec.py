"""The msgpack <-> protobuf codec: every message type round-trips; bad input -> CodecError.

Also: the checked-in generated code is exactly what scripts/gen_protos.py produces.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_bridge import codec
from engine_bridge.codec import CodecError
from engine_bridge.generated import pb

REPO = Path(__file__).resolve().parent.parent
MESSAGES = sorted(pb.DESCRIPTOR.message_types_by_name)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SCALARS = {
    FD.TYPE_DOUBLE: st.floats(allow_nan=False),
    FD.TYPE_FLOAT: st.floats(allow_nan=False, width=32),
    FD.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FD.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_STRING: st.text(max_size=12),
    FD.TYPE_BYTES: st.binary(max_size=24),
}


def message_strategy(descriptor, depth: int = 0):
    """Random, valid instances of a message type (one oneof member at most)."""
    cls = getattr(pb, descriptor.name)
    fields = {}
    for field in descriptor.fields:
        if field.type == FD.TYPE_MESSAGE:
            value = (message_strategy(field.message_type, depth + 1) if depth < 3
                     else st.builds(getattr(pb, field.message_type.name)))
        elif field.type == FD.TYPE_ENUM:
            value = st.sampled_from([v.number for v in field.enum_type.values])
        else:
            value = _SCALARS[field.type]
        if field.label == FD.LABEL_REPEATED:
            value = st.lists(value, max_size=4)
        fields[field.name] = st.none() | value

    @st.composite
    def build(draw):
        msg = cls()
        chosen_oneofs = set()
        for name, strategy in fields.items():
            field = descriptor.fields_by_name[name]
            value = draw(strategy)
            if value is None:
                continue
            if field.containing_oneof is not None:
                if field.containing_oneof.name in chosen_oneofs:
                    continue
                chosen_oneofs.add(field.containing_oneof.name)
            if field.label == FD.LABEL_REPEATED:
                target = getattr(msg, name)
                for item in value:
                    target.add().CopyFrom(item) if field.type == FD.TYPE_MESSAGE else target.append(item)
            elif field.type == FD.TYPE_MESSAGE:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return build()


@pytest.mark.parametrize("name", MESSAGES)
@FUZZ
@given(data=st.data())
def test_every_message_round_trips(name, data):
    descriptor = pb.DESCRIPTOR.message_types_by_name[name]
    message = data.draw(message_strategy(descriptor))
    wire = codec.encode(message)
    back = codec.decode(getattr(pb, name), wire)
    assert back == message
    assert back.SerializeToString(deterministic=True) == message.SerializeToString(deterministic=True)
    # The map mirrors the proto: scalars always present, keys are the proto field names.
    as_map = codec.unpack(wire)
    assert set(as_map) <= set(descriptor.fields_by_name)


def test_map_layout_is_documented_form():
    frame = pb.Frame(sequence=3, encoding=pb.ENCODING_PNG, rgba=b"\x89PNG")
    as_map = codec.to_dict(frame)
    assert as_map["encoding"] == "ENCODING_PNG" and as_map["rgba"] == b"\x89PNG"
    assert as_map["sequence"] == 3 and as_map["depth"] == b""
    request = codec.to_dict(pb.DriveRequest(end=pb.DriveEnd()))
    assert request == {"end": {}}
    assert codec.from_dict(pb.Frame, {"encoding": 2}).encoding == pb.ENCODING_JPEG
    assert codec.from_dict(pb.MotionFrame, {"eye_gaze": None}).eye_gaze == []


@pytest.mark.parametrize("cls, data, words", [
    (pb.Camera, {"fov": 1.0}, "unknown field 'fov'"),
    (pb.Camera, {"width": -1}, "outside"),
    (pb.Camera, {"width": 1.5}, "integer"),
    (pb.Camera, {"width": True}, "integer"),
    (pb.Camera, {"c2w": 3.0}, "list"),
    (pb.Camera, {"c2w": ["a"]}, "number"),
    (pb.Camera, {"fov_y_deg": 1e300}, "32-bit"),
    (pb.Camera, [1, 2], "map"),
    (pb.MotionFrame, {"image": "text"}, "bytes"),
    (pb.MotionFrame, {"image": b"x", "landmarks": {}}, "oneof"),
    (pb.RenderOptions, {"encoding": "GIF"}, "ENCODING_RAW"),
    (pb.RenderOptions, {"depth": 1}, "true or false"),
    (pb.Avatar, {"id": b"bytes"}, "string"),
    (pb.DriveRequest, {"header": {"camera": {"width": "wide"}}}, "DriveRequest.header.camera.width"),
])
def test_bad_maps_are_rejected_clearly(cls, data, words):
    with pytest.raises(CodecError, match=words.replace("(", r"\(").replace(".", r"\.")):
        codec.from_dict(cls, data)


def test_bad_msgpack_is_rejected_clearly():
    good = codec.pack({"a": 1})
    for bad in (good[:-1], good + b"\x00", b"\xc1", b""):
        with pytest.raises(CodecError, match="msgpack"):
            codec.unpack(bad)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["c2w", "width", "arkit", "header", "frame", "image", "x", "encoding",
                         "landmarks", "xyz", "camera", "sequence"]) | st.text(max_size=4), inner, max_size=4),
    max_leaves=12)


@FUZZ
@given(value=msgpack_values, name=st.sampled_from(MESSAGES))
def test_arbitrary_maps_decode_or_raise_codec_error(value, name):
    try:
        message = codec.from_dict(getattr(pb, name), value)
    except CodecError:
        return
    assert codec.from_dict(getattr(pb, name), codec.to_dict(message)) == message


@FUZZ
@given(blob=st.binary(max_size=256))
def test_arbitrary_bytes_unpack_or_raise_codec_error(blob):
    try:
        value = codec.unpack(blob)
    except CodecError:
        return
    try:
        codec.from_dict(pb.DriveRequest, value)
    except CodecError:
        pass


def test_deep_nesting_is_refused():
    for depth in (5000, 500):  # beyond msgpack's stack, then beyond the codec's own limit
        blob = b"\x81\xa6header" * depth + b"\x80"
        with pytest.raises(CodecError):
            codec.decode(pb.DriveRequest, blob)


def test_generated_code_is_up_to_date(tmp_path):
    pytest.importorskip("grpc_tools")
    result = subprocess.run([sys.executable, "scripts/gen_protos.py", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    checked_in = REPO / "engine_bridge" / "generated" / "avatar"
    fresh = tmp_path / "avatar"
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert fresh_files == sorted(p.relative_to(checked_in) for p in checked_in.rglob("*")
                                 if p.is_file() and "__pycache__" not in p.parts)
    for rel in fresh_files:
        same = filecmp.cmp(fresh / rel, checked_in / rel, shallow=False)
        assert same, f"{rel} is stale: run scripts/gen_protos.py"
