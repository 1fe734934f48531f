"""A client written from docs/PROTOCOL.md and the .proto alone, against real servers.

The ZeroMQ client below uses only pyzmq and msgpack; the gRPC client uses stubs generated
at test time from protos/avatar/v1/avatar_runtime.proto (plus the standard
grpc.health.v1 schema) and runs in its own interpreter, so nothing of the project's own
bridge code or generated modules is involved on the client side. The servers are started
with tests/bridge_support.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from bridge_support import running_servers

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "PROTOCOL.md"
PROTO_ROOT = ROOT / "protos"

REPLY_TIMEOUT_S = 30.0
SIDE = 64
CHUNK = 64 * 1024


# ---------------------------------------------------------------------------------------
# ARKit order, read from the table in the document


def arkit_names_from_doc() -> list[str]:
    text = DOC.read_text()
    start = text.index("ARKit order")
    block = text[text.index("```", start) + 3:]
    block = block[:block.index("```")]
    pairs = re.findall(r"(\d+)\s+([A-Za-z]+)", block)
    names = [""] * len(pairs)
    for index, name in pairs:
        names[int(index)] = name
    return names


ARKIT = arkit_names_from_doc()


def arkit(**weights: float) -> list[float]:
    values = [0.0] * len(ARKIT)
    for name, value in weights.items():
        values[ARKIT.index(name)] = value
    return values


# ---------------------------------------------------------------------------------------
# The ZeroMQ client (PROTOCOL.md sections 2-4)


class CallError(Exception):
    def __init__(self, code: str, message: str, envelope: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.envelope = envelope


class ZmqDocClient:
    """DEALER socket, one msgpack frame per message, replies told apart by request_id."""

    def __init__(self, endpoint: str, token: str | None = None,
                 timeout_s: float = REPLY_TIMEOUT_S):
        self.token = token
        self.timeout_s = timeout_s
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # Section 2.4: ZMTP heartbeats on the client as well.
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, 300)
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 1200)
        self.sock.setsockopt(zmq.HEARTBEAT_TTL, 3000)
        self.monitor = self.sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        self.handshakes = 0
        self.disconnects = 0
        self.connected = False
        self._ids = itertools.count(1)
        self._pending: dict[object, list[dict]] = {}
        self.sock.connect(endpoint)
        self.wait_connected()

    # -- connection state from the socket monitor ---------------------------------------

    def _drain_monitor(self) -> bool:
        """Handle queued monitor events; True if a disconnect was seen."""
        lost = False
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshakes += 1
                self.connected = True
            elif event == zmq.EVENT_DISCONNECTED:
                self.disconnects += 1
                self.connected = False
                lost = True
        return lost

    def wait_connected(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.connected:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallError("UNAVAILABLE", "no ZMTP handshake with the server")
            self.monitor.poll(int(left * 1000) + 1)
            self._drain_monitor()

    # -- messages ------------------------------------------------------------------------

    def new_id(self) -> int:
        return next(self._ids)

    def send(self, kind: str, body=None, request_id=None, *, raw: bytes | None = None,
             extra: dict | None = None) -> object:
        if raw is not None:
            self.sock.send(raw)
            return None
        request_id = self.new_id() if request_id is None else request_id
        envelope = {"kind": kind, "request_id": request_id}
        if self.token is not None and kind != "Health":
            envelope["token"] = self.token
        if body is not None:
            envelope["body"] = body
        if extra:
            envelope.update(extra)
        self.sock.send(msgpack.packb(envelope, use_bin_type=True))
        return request_id

    def recv(self, request_id) -> dict:
        """The next reply envelope for request_id (others are kept for their callers)."""
        queued = self._pending.get(request_id)
        if queued:
            return queued.pop(0)
        deadline = time.monotonic() + self.timeout_s
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallError("DEADLINE_EXCEEDED", f"no reply to request {request_id!r}")
            events = dict(poller.poll(int(left * 1000) + 1))
            # Replies already received count even if the connection drops right after.
            while self.sock.poll(0):
                envelope = msgpack.unpackb(self.sock.recv(), raw=False)
                if envelope.get("request_id") == request_id:
                    return envelope
                self._pending.setdefault(envelope.get("request_id"), []).append(envelope)
            if self.monitor in events and self._drain_monitor():
                raise CallError("UNAVAILABLE", "connection to the server lost")

    def stream(self, kind: str, body=None):
        """Yield the reply bodies of one call; raise CallError on an error reply."""
        request_id = self.send(kind, body)
        while True:
            envelope = self.recv(request_id)
            assert envelope["kind"] == kind
            if "error" in envelope and envelope["error"] is not None:
                assert envelope["last"] is True
                raise CallError(envelope["error"]["code"], envelope["error"]["message"],
                                envelope)
            yield envelope["body"]
            if envelope["last"]:
                return

    def call(self, kind: str, body=None) -> dict:
        replies = list(self.stream(kind, body))
        assert len(replies) == 1, replies
        return replies[0]

    def export(self, body: dict) -> tuple[dict[str, bytes], dict[str, dict], int]:
        """ExportMesh reassembled per file as section 4 says; returns files, last chunks."""
        files: dict[str, bytearray] = {}
        finals: dict[str, dict] = {}
        chunks = 0
        for chunk in self.stream("ExportMesh", body):
            chunks += 1
            name = chunk["file_name"]
            assert name not in finals, f"{name}: data after its last chunk"
            buf = files.setdefault(name, bytearray())
            assert chunk["offset"] == len(buf), (name, chunk["offset"], len(buf))
            assert len(chunk["data"]) <= (body.get("chunk_bytes") or 1 << 20)
            buf += chunk["data"]
            if chunk["last"]:
                assert len(buf) == chunk["total_bytes"], name
                assert hashlib.sha256(buf).hexdigest() == chunk["sha256"], name
                finals[name] = chunk
        assert set(finals) == set(files), "a file without its last chunk"
        return {k: bytes(v) for k, v in files.items()}, finals, chunks

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(0)
        self.ctx.term()


# ---------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def servers(service):
    with running_servers(service) as s:
        yield s


@pytest.fixture(scope="module")
def client(servers):
    c = ZmqDocClient(servers.zmq_address)
    yield c
    c.close()


AVATAR_NAME = "protocol-doc-client"


@pytest.fixture(scope="module")
def created(client, astronaut_png):
    """CreateAvatar through the document client; deleted again at the end."""
    events = list(client.stream("CreateAvatar", {"image": astronaut_png,
                                                 "name": AVATAR_NAME}))
    avatar = events[-1]["avatar"]
    yield events, avatar
    assert client.call("DeleteAvatar", {"avatar_id": avatar["id"]}) == {}


@pytest.fixture(scope="module")
def avatar_id(created) -> str:
    return created[1]["id"]


def render(client: ZmqDocClient, avatar_id: str, encoding, **extra) -> dict:
    body = {"avatar_id": avatar_id, "camera": {"width": SIDE, "height": SIDE},
            "options": {"encoding": encoding}}
    body.update(extra)
    return client.call("RenderFrame", body)


def decode_png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


# ---------------------------------------------------------------------------------------
# ZeroMQ


def test_arkit_table_in_doc_is_complete():
    assert len(ARKIT) == 52 and all(ARKIT)
    assert len(set(ARKIT)) == 52
    assert ARKIT.index("jawOpen") == 17 and ARKIT[51] == "tongueOut"


def test_heartbeats_and_monitor_configured(client):
    assert client.sock.getsockopt(zmq.HEARTBEAT_IVL) == 300
    assert client.sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == 1200
    assert client.sock.getsockopt(zmq.HEARTBEAT_TTL) == 3000
    assert client.connected and client.handshakes >= 1 and client.disconnects == 0


def test_health_dealer_req_and_pipelined(servers, client):
    assert client.call("Health") == {"status": "SERVING"}
    assert client.call("Health", {}) == {"status": "SERVING"}

    # REQ: one call at a time; pyzmq adds and strips the empty delimiter frame.
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(servers.zmq_address)
    try:
        req.send(msgpack.packb({"kind": "Health", "request_id": "req-1"}))
        assert req.poll(int(REPLY_TIMEOUT_S * 1000))
        reply = msgpack.unpackb(req.recv(), raw=False)
        assert reply["request_id"] == "req-1" and reply["last"] is True
        assert reply["body"] == {"status": "SERVING"}
    finally:
        req.close(0)
        ctx.term()

    # Several calls in flight on one DEALER; string and integer ids both echoed.
    a = client.send("Health", request_id="health-a")
    b = client.send("ListAvatars", {})
    c = client.send("Health", request_id="health-c")
    assert client.recv(c)["body"] == {"status": "SERVING"}
    assert "avatars" in client.recv(b)["body"]
    assert client.recv(a)["body"] == {"status": "SERVING"}


def test_create_get_list(client, created, astronaut_png):
    events, avatar = created
    progress = [e["progress"] for e in events[:-1]]
    assert progress, "CreateAvatar sent no progress events"
    for event in events[:-1]:
        assert set(event) == {"progress"}
        assert set(event["progress"]) == {"stage", "fraction"}
    fractions = [p["fraction"] for p in progress]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert set(events[-1]) == {"avatar"}
    assert set(avatar) == {"id", "name", "reconstructor", "created_at", "meta_json"}
    assert avatar["name"] == AVATAR_NAME and avatar["id"]
    assert avatar["reconstructor"] == "fit"  # "" = "fit"
    assert isinstance(json.loads(avatar["meta_json"]), dict)

    assert client.call("GetAvatar", {"avatar_id": avatar["id"]}) == avatar
    listed = client.call("ListAvatars", {})["avatars"]
    assert avatar in listed

    # Content hash: same photo and name -> the same avatar, nothing recomputed.
    again = list(client.stream("CreateAvatar", {"image": astronaut_png,
                                                "name": AVATAR_NAME}))
    assert again[-1]["avatar"]["id"] == avatar["id"]


def test_render_raw_jpeg_png(client, avatar_id):
    motion = {"arkit": arkit(jawOpen=0.6), "sequence": 42, "timecode": 1.5}
    raw = render(client, avatar_id, "ENCODING_RAW", motion=motion)
    assert raw["width"] == SIDE and raw["height"] == SIDE
    assert raw["encoding"] == "ENCODING_RAW"
    assert raw["sequence"] == 42 and raw["timecode"] == 1.5
    # proto3 scalars are always present in replies.
    assert set(raw) == {"sequence", "timecode", "width", "height", "encoding", "rgba",
                        "alpha", "depth", "normals", "render_ms", "encode_ms"}
    assert isinstance(raw["rgba"], bytes) and raw["alpha"] == b"" and raw["depth"] == b""
    assert len(raw["rgba"]) == SIDE * SIDE * 4
    rgba = np.frombuffer(raw["rgba"], np.uint8).reshape(SIDE, SIDE, 4)
    alpha = rgba[..., 3]
    assert (alpha == 0).any() and (alpha == 255).any()
    assert alpha[SIDE // 2, SIDE // 2] == 255  # the face fills the middle of the portrait

    jpeg = render(client, avatar_id, "ENCODING_JPEG", motion=motion)
    assert jpeg["encoding"] == "ENCODING_JPEG"
    color = cv2.imdecode(np.frombuffer(jpeg["rgba"], np.uint8), cv2.IMREAD_COLOR)
    assert color.shape == (SIDE, SIDE, 3)
    jpeg_alpha = decode_png(jpeg["alpha"])
    assert jpeg_alpha.shape == (SIDE, SIDE)
    assert np.array_equal(jpeg_alpha, alpha)
    face = alpha == 255
    diff = np.abs(color[..., ::-1].astype(int) - rgba[..., :3].astype(int))[face]
    assert diff.mean() < 12

    # Enums: the number is accepted on input, the name comes back.
    png = render(client, avatar_id, 1, motion=motion)
    assert png["encoding"] == "ENCODING_PNG"
    decoded = decode_png(png["rgba"])
    assert decoded.shape == (SIDE, SIDE, 4)
    assert np.array_equal(decoded[..., 3], alpha)

    # Depth pass: H x W float32 little-endian, +inf where empty.
    with_depth = render(client, avatar_id, "ENCODING_RAW",
                        options={"encoding": "ENCODING_RAW", "depth": True})
    depth = np.frombuffer(with_depth["depth"], "<f4").reshape(SIDE, SIDE)
    assert np.isinf(depth[alpha == 0]).mean() > 0.9
    assert np.isfinite(depth[SIDE // 2, SIDE // 2]) and depth[SIDE // 2, SIDE // 2] > 0


def test_drive_session(servers, avatar_id):
    drive = ZmqDocClient(servers.zmq_address)  # one DEALER per session
    try:
        rid = drive.new_id()
        drive.send("Drive", {"header": {
            "avatar_id": avatar_id, "camera": {"width": SIDE, "height": SIDE},
            "options": {"encoding": "ENCODING_RAW"}}}, request_id=rid)
        started = drive.recv(rid)
        assert started["kind"] == "Drive" and started["last"] is False
        header = started["body"]["header"]
        assert header["avatar_id"] == avatar_id and header["session_id"]
        assert header["width"] == SIDE and header["height"] == SIDE
        assert header["encoding"] == "ENCODING_RAW"

        n_frames, bad = 10, 5
        frames, errors = {}, {}
        for seq in range(1, n_frames + 1):
            jaw = (seq - 1) / (n_frames - 1)
            motion = {"arkit": arkit(jawOpen=jaw), "sequence": seq, "timecode": seq / 30}
            if seq == bad:
                motion["arkit"] = motion["arkit"][:51]  # wrong length: a per-frame error
            drive.send("Drive", {"frame": motion}, request_id=rid)  # 1 frame in flight
            reply = drive.recv(rid)
            assert reply["last"] is False and "error" not in reply, reply
            body = reply["body"]
            if "error" in body:
                errors[seq] = body["error"]
            else:
                frames[seq] = body["frame"]

        # A body that does not decode as a MotionFrame: sequence 0, the session goes on.
        drive.send("Drive", {"frame": {"arkit": "not a list", "sequence": 99}},
                   request_id=rid)
        undecodable = drive.recv(rid)
        assert undecodable["last"] is False
        assert undecodable["body"]["error"]["code"] == "INVALID_ARGUMENT"
        assert undecodable["body"]["error"]["sequence"] == 0

        drive.send("Drive", {"end": {}}, request_id=rid)
        final = drive.recv(rid)
        assert final["last"] is True, final
        status = final["body"]["status"]

        assert set(errors) == {bad}
        assert errors[bad]["sequence"] == bad and errors[bad]["code"] == "INVALID_ARGUMENT"
        assert errors[bad]["message"]
        assert sorted(frames) == [s for s in range(1, n_frames + 1) if s != bad]
        for seq, frame in frames.items():
            assert frame["sequence"] == seq and frame["timecode"] == seq / 30
            assert len(frame["rgba"]) == SIDE * SIDE * 4
        # jawOpen (index 17) ramps 0 -> 1: the first and last frames differ.
        first = np.frombuffer(frames[1]["rgba"], np.uint8)
        last = np.frombuffer(frames[n_frames]["rgba"], np.uint8)
        assert np.abs(first.astype(int) - last.astype(int)).sum() > 0

        assert status["frames_rendered"] == n_frames - 1
        assert status["frames_dropped"] == 0
        assert status["frames_received"] >= n_frames - 1
        assert status["elapsed_s"] > 0
        DRIVE_STATUS.update(status)

        # After the end: a frame for that request_id has no open session.
        drive.send("Drive", {"frame": {"sequence": 1}}, request_id=rid)
        orphan = drive.recv(rid)
        assert orphan["last"] is True and orphan["error"]["code"] == "INVALID_ARGUMENT"
        assert "header first" in orphan["error"]["message"]

        # Fatal: a header for an unknown avatar ends the call at once.
        with pytest.raises(CallError) as info:
            list(drive.stream("Drive", {"header": {"avatar_id": "0" * 16}}))
        assert info.value.code == "NOT_FOUND"
    finally:
        drive.close()


DRIVE_STATUS: dict = {}


def test_export_mesh_chunks(client, avatar_id):
    files, finals, chunks = client.export({"avatar_id": avatar_id, "chunk_bytes": CHUNK,
                                           "format": "obj"})
    suffixes = sorted(Path(name).suffix for name in files)
    assert suffixes == [".mtl", ".obj", ".png"], files.keys()
    assert chunks > len(files), "no file spanned several chunks"
    png_name, png = next((n, d) for n, d in files.items() if n.endswith(".png"))
    assert decode_png(png).ndim == 3
    mtl = next(data for name, data in files.items() if name.endswith(".mtl"))
    assert png_name.encode() in mtl  # the files can be saved side by side under their names
    obj = next(data for name, data in files.items() if name.endswith(".obj"))
    assert b"\nv " in obj and b"\nf " in obj
    for chunk in finals.values():
        assert re.fullmatch(r"[0-9a-f]{64}", chunk["sha256"])

    files, finals, _ = client.export({"avatar_id": avatar_id, "chunk_bytes": CHUNK,
                                      "motion": {"arkit": arkit(jawOpen=1.0)}})
    (name, glb), = files.items()
    assert name.endswith(".glb") and glb[:4] == b"glTF"
    assert finals[name]["mime_type"] == "model/gltf-binary"


def expect_error(client: ZmqDocClient, kind, body, code: str, *, extra=None) -> dict:
    rid = client.send(kind, body, extra=extra)
    reply = client.recv(rid)
    assert reply["last"] is True and reply.get("error"), reply
    assert reply["error"]["code"] == code, reply["error"]
    assert reply["error"]["message"]
    return reply


def test_error_replies(client, avatar_id):
    unknown = "0123456789abcdef"
    expect_error(client, "GetAvatar", {"avatar_id": unknown}, "NOT_FOUND")
    expect_error(client, "RenderFrame", {"avatar_id": unknown}, "NOT_FOUND")
    reply = expect_error(client, "Teleport", {}, "INVALID_ARGUMENT")
    assert reply["kind"] in ("Teleport", None)

    # Wrong type, unknown key, integer out of range, float beyond float32: named field.
    cases = [
        ({"avatar_id": avatar_id, "camera": {"width": "big"}}, "width"),
        ({"avatar_id": avatar_id, "colour": 1}, "colour"),
        ({"avatar_id": avatar_id, "camera": {"width": 1 << 40}}, "width"),
        ({"avatar_id": avatar_id, "camera": {"fov_y_deg": 1e300}}, "fov_y_deg"),
        ({"avatar_id": avatar_id, "options": {"encoding": "ENCODING_GIF"}}, "encoding"),
        ({"avatar_id": avatar_id, "motion": {"arkit": arkit(jawOpen=2.0)}}, "arkit"),
    ]
    for body, field in cases:
        reply = expect_error(client, "RenderFrame", body, "INVALID_ARGUMENT")
        assert field in reply["error"]["message"], (field, reply["error"])
    # A camera that is not rigid.
    expect_error(client, "RenderFrame",
                 {"avatar_id": avatar_id, "camera": {"c2w": [2.0] + [0.0] * 15}},
                 "INVALID_ARGUMENT")
    # Envelope: no other keys allowed.
    expect_error(client, "Health", None, "INVALID_ARGUMENT", extra={"colour": 1})

    # Bytes that are not msgpack: the reply cannot echo kind / request_id.
    client.send("", raw=b"\xc1 not msgpack")
    reply = client.recv(None)
    assert reply["last"] is True and reply["error"]["code"] == "INVALID_ARGUMENT"
    assert reply.get("kind") is None and reply.get("request_id") is None

    # The socket is still usable after all of that.
    assert client.call("Health") == {"status": "SERVING"}


def test_server_going_away_is_noticed(service, avatar_id):
    """A call waiting when the server stops ends with UNAVAILABLE; the monitor sees it."""
    context = running_servers(service)
    servers = context.__enter__()
    stopped = threading.Event()

    def stop():
        try:
            context.__exit__(None, None, None)
        finally:
            stopped.set()

    drive = ZmqDocClient(servers.zmq_address)
    try:
        rid = drive.new_id()
        drive.send("Drive", {"header": {"avatar_id": avatar_id,
                                        "camera": {"width": SIDE, "height": SIDE}}},
                   request_id=rid)
        assert "header" in drive.recv(rid)["body"]
        threading.Timer(0.2, stop).start()
        started = time.monotonic()
        try:  # the session is idle: nothing comes until the server goes
            while True:
                reply = drive.recv(rid)
                if reply["last"]:
                    outcome = reply["error"]["code"] if reply.get("error") else "status"
                    break
        except CallError as error:  # the monitor saw the connection drop
            outcome = error.code
        assert outcome in ("UNAVAILABLE", "status")
        assert stopped.wait(10)
        deadline = time.monotonic() + 3
        while drive.disconnects == 0 and time.monotonic() < deadline:
            drive.monitor.poll(100)
            drive._drain_monitor()
        assert drive.disconnects >= 1 and not drive.connected
        assert time.monotonic() - started < 6
    finally:
        if not stopped.is_set():
            stop()
        drive.close()


# ---------------------------------------------------------------------------------------
# gRPC: stubs generated from the .proto, in a separate interpreter


HEALTH_PROTO = """\
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);
}
"""

GRPC_CLIENT = textwrap.dedent("""\
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import grpc
    from avatar.v1 import avatar_runtime_pb2 as pb, avatar_runtime_pb2_grpc as rpc
    import health_pb2, health_pb2_grpc

    target, avatar_id, side = sys.argv[2], sys.argv[3], int(sys.argv[4])
    limit = 64 << 20
    channel = grpc.insecure_channel(target, options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit)])
    grpc.channel_ready_future(channel).result(timeout=10)
    health = health_pb2_grpc.HealthStub(channel)
    stub = rpc.AvatarRuntimeStub(channel)
    out = {}
    for service in ("", "avatar.v1.AvatarRuntime"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        out["health:" + service] = health_pb2.HealthCheckResponse.ServingStatus.Name(
            status.status)
    out["avatars"] = [a.id for a in stub.ListAvatars(pb.ListAvatarsRequest(),
                                                      timeout=10).avatars]
    frame = stub.RenderFrame(pb.RenderFrameRequest(
        avatar_id=avatar_id,
        motion=pb.MotionFrame(sequence=7, timecode=0.25),
        camera=pb.Camera(width=side, height=side),
        options=pb.RenderOptions(encoding=pb.ENCODING_RAW)), timeout=30)
    out["frame"] = [frame.width, frame.height, len(frame.rgba), frame.sequence,
                    frame.timecode, pb.Encoding.Name(frame.encoding)]
    out["alpha_max"] = max(frame.rgba[3::4])
    try:
        stub.GetAvatar(pb.GetAvatarRequest(avatar_id="0123456789abcdef"), timeout=10)
        out["unknown"] = "OK"
    except grpc.RpcError as error:
        out["unknown"] = error.code().name
    print(json.dumps(out))
""")


def test_grpc_from_proto_alone(tmp_path, servers, avatar_id):
    from grpc_tools import protoc  # noqa: PLC0415 - build-time tool only

    proto_dir = tmp_path / "protos"
    proto_dir.mkdir()
    (proto_dir / "health.proto").write_text(HEALTH_PROTO)
    out = tmp_path / "gen"
    out.mkdir()
    include = str(Path(protoc.__file__).parent / "_proto")
    for root, proto in ((PROTO_ROOT, "avatar/v1/avatar_runtime.proto"),
                        (proto_dir, "health.proto")):
        rc = protoc.main(["protoc", f"-I{root}", f"-I{include}", f"--python_out={out}",
                          f"--grpc_python_out={out}", str(root / proto)])
        assert rc == 0, proto
    script = tmp_path / "grpc_client.py"
    script.write_text(GRPC_CLIENT)
    target = servers.grpc_address.removeprefix("grpc://")
    result = subprocess.run([sys.executable, str(script), str(out), target, avatar_id,
                             str(SIDE)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["health:"] == "SERVING"
    assert got["health:avatar.v1.AvatarRuntime"] == "SERVING"
    assert avatar_id in got["avatars"]
    assert got["frame"] == [SIDE, SIDE, SIDE * SIDE * 4, 7, 0.25, "ENCODING_RAW"]
    assert got["alpha_max"] == 255
    assert got["unknown"] == "NOT_FOUND"
