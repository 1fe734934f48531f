"""Bad input and vanishing clients: clear errors, sessions cleaned up, servers stay up.

Raw sockets (no facade) send garbage to the ZMQ server and invalid protobuf to gRPC.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_support import TRANSPORTS, running_servers
from engine_bridge import codec
from engine_bridge.config import BridgeLimits
from engine_bridge.generated import pb, pb_grpc

REPO = Path(__file__).resolve().parent.parent
LIMITS = BridgeLimits(header_timeout_s=1.5, idle_timeout_s=2.0)
FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def servers(service):
    with running_servers(service, LIMITS) as running:
        yield running


@pytest.fixture(scope="module")
def raw(servers):
    """A bare DEALER on the ZMQ server: send(bytes or parts) -> the reply map."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(servers.zmq_address)

    def exchange(payload=None, parts_out: list | None = None):
        """Send `payload` (bytes or a list of frames; None = send nothing), return the next reply."""
        if payload is not None:
            sock.send_multipart(payload if isinstance(payload, list) else [payload])
        assert sock.poll(5000), "the server did not answer"
        parts = sock.recv_multipart()
        if parts_out is not None:
            parts_out[:] = parts
        return msgpack.unpackb(parts[-1], raw=False)

    yield exchange
    sock.close()


def assert_alive(exchange) -> None:
    reply = exchange(codec.pack({"kind": "Health", "request_id": "ping"}))
    assert reply["body"] == {"status": "SERVING"} and reply["request_id"] == "ping"


def error_of(reply) -> tuple[str, str]:
    assert "error" in reply and reply["last"] is True
    return reply["error"]["code"], reply["error"]["message"]


# -- ZMQ -----------------------------------------------------------------------------------
@pytest.mark.parametrize("payload, words", [
    (b"\xc1garbage", "msgpack"),
    (codec.pack({"kind": "GetAvatar", "request_id": 1})[:-3], "msgpack"),
    (codec.pack([1, 2, 3]), "map"),
    (codec.pack({"kind": "Teleport", "request_id": 2}), "unknown request kind"),
    (codec.pack({"kind": "GetAvatar", "request_id": 3, "colour": 1}), "unknown request keys"),
    (codec.pack({"kind": "GetAvatar", "request_id": 4, "body": {"avatar_id": 7}}), "string"),
    (codec.pack({"kind": "GetAvatar", "request_id": 5, "body": {"nope": 1}}), "unknown field"),
    (codec.pack({"kind": "RenderFrame", "request_id": 6, "body": {"camera": {"c2w": "x"}}}), "list"),
    (codec.pack({"kind": "GetAvatar", "request_id": [1], "body": {}}), "request_id"),
    (codec.pack({"kind": "Drive", "request_id": 8, "body": {"frame": {}}}), "header first"),
    (codec.pack({"kind": "Drive", "request_id": 9, "body": {}}), "header first"),
    ([b"a", b"b", b"c"], "frames"),
])
def test_zmq_bad_requests_get_clear_errors(raw, payload, words):
    code, message = error_of(raw(payload))
    assert code == "INVALID_ARGUMENT" and words in message
    assert_alive(raw)


def test_zmq_req_style_delimiter_is_echoed(raw):
    parts: list = []
    reply = raw([b"", codec.pack({"kind": "ListAvatars", "request_id": 10, "body": {}})], parts)
    assert parts[0] == b"" and len(parts) == 2  # REQ sockets need the delimiter back
    assert "avatars" in reply["body"]


@FUZZ
@given(blob=st.binary(max_size=300))
def test_zmq_random_bytes(raw, blob):
    reply = raw(blob)
    assert "error" in reply or "body" in reply
    assert_alive(raw)


@FUZZ
@given(body=st.dictionaries(
    st.sampled_from(["avatar_id", "motion", "camera", "options", "x"]),
    st.none() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=4) | st.binary(max_size=4)
    | st.lists(st.floats(), max_size=3) | st.dictionaries(st.text(max_size=3), st.integers(-9, 9)),
    max_size=3),
       kind=st.sampled_from(["GetAvatar", "RenderFrame", "DeleteAvatar", "SolveMotion", "ExportMesh"]))
def test_zmq_random_bodies(raw, body, kind, astronaut_id):
    if kind == "DeleteAvatar":  # never delete the shared avatar
        body["avatar_id"] = "f" * 16
    reply = raw(codec.pack({"kind": kind, "request_id": 11, "body": body}))
    while reply.get("last") is False:
        reply = raw()
    if "error" in reply:
        assert reply["error"]["code"] in {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION",
                                          "RESOURCE_EXHAUSTED", "UNIMPLEMENTED"}
    assert_alive(raw)


# -- gRPC ----------------------------------------------------------------------------------
def test_grpc_invalid_protobuf(servers):
    target = servers.grpc_address.split("://")[1]
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/avatar.v1.AvatarRuntime/GetAvatar")
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff\xff not a protobuf", timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "GetAvatarRequest" in info.value.details()
        unknown = channel.unary_unary("/avatar.v1.AvatarRuntime/Teleport")
        with pytest.raises(grpc.RpcError) as info:
            unknown(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        stub = pb_grpc.AvatarRuntimeStub(channel)
        assert stub.ListAvatars(pb.ListAvatarsRequest(), timeout=5) is not None


def test_grpc_drive_needs_a_header_first(servers, astronaut_id):
    target = servers.grpc_address.split("://")[1]
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.AvatarRuntimeStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Drive(iter([pb.DriveRequest(frame=pb.MotionFrame())]), timeout=10))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "header" in info.value.details()
        # A second header is a per-frame error: reported in order, the session goes on.
        header = pb.DriveRequest(header=pb.DriveHeader(avatar_id=astronaut_id,
                                                       camera=pb.Camera(width=32, height=32)))
        twice = [header, header, pb.DriveRequest(frame=pb.MotionFrame(sequence=5)),
                 pb.DriveRequest(end=pb.DriveEnd())]
        kinds = [r.WhichOneof("kind") for r in stub.Drive(iter(twice), timeout=10)]
        assert kinds[0] == "header" and kinds[-1] == "status" and "error" in kinds


def test_grpc_header_never_sent(servers):
    target = servers.grpc_address.split("://")[1]

    def silent():
        time.sleep(5)
        yield from ()

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.AvatarRuntimeStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Drive(silent(), timeout=10))
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "header" in info.value.details() and time.monotonic() - started < 4.5


def test_zmq_idle_session_is_closed(raw, astronaut_id, servers):
    header = {"header": {"avatar_id": astronaut_id, "camera": {"width": 32, "height": 32}}}
    started = raw(codec.pack({"kind": "Drive", "request_id": 12, "body": header}))
    assert "header" in started["body"]
    time.sleep(LIMITS.idle_timeout_s + 0.5)
    code, message = error_of(raw())
    assert code == "DEADLINE_EXCEEDED" and "idle" in message
    time.sleep(0.2)
    assert servers.handlers.sessions.active == 0
    assert_alive(raw)



def test_zmq_a_message_after_the_last_reply_is_not_lost(raw, astronaut_id, servers, monkeypatch):
    """The drive thread may still be winding down when the client, holding the session's
    last reply, sends again under that request_id: the message is answered, not swallowed
    by the ended session."""
    drive = servers.handlers.drive

    def lingering(*args, **kwargs):
        yield from drive(*args, **kwargs)
        time.sleep(1.0)  # as a loaded machine may delay the thread after the last reply

    monkeypatch.setattr(servers.handlers, "drive", lingering)
    header = {"header": {"avatar_id": astronaut_id, "camera": {"width": 32, "height": 32}}}
    assert "header" in raw(codec.pack({"kind": "Drive", "request_id": 13, "body": header}))["body"]
    final = raw(codec.pack({"kind": "Drive", "request_id": 13, "body": {"end": {}}}))
    assert final["last"] is True and "status" in final["body"]
    code, message = error_of(raw(codec.pack({"kind": "Drive", "request_id": 13, "body": {"frame": {}}})))
    assert code == "INVALID_ARGUMENT" and "header first" in message
    time.sleep(1.2)
    assert servers.handlers.sessions.active == 0


# -- vanishing clients ---------------------------------------------------------------------
CLIENT_SCRIPT = textwrap.dedent("""
    import sys, time, itertools
    from avatar_runtime.motion.frame import MotionFrame
    from avatar_runtime.render.camera import Camera
    from engine_bridge.client import connect
    def frames():
        for i in itertools.count():
            time.sleep(0.005)
            yield MotionFrame.neutral(sequence=i)
    client = connect(sys.argv[1])
    for frame in client.drive(sys.argv[2], frames(), Camera.orbit(width=64, height=64), window=None):
        print("frame", frame.sequence, flush=True)
""")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_killed_client_is_cleaned_up(servers, astronaut_id, transport):
    child = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, servers.address(transport), astronaut_id],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for _ in range(3):
            assert child.stdout.readline().startswith("frame")
        assert servers.handlers.sessions.active >= 1
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + LIMITS.idle_timeout_s + 5
    while servers.handlers.sessions.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert servers.handlers.sessions.active == 0
    with servers.client(transport) as c:
        assert c.health() == "SERVING"
        assert [f.sequence for f in c.drive(astronaut_id, [pb.MotionFrame(sequence=1)])] == [1]
