"""ZeroMQ client for avatar-runtime, written against the wire protocol with pyzmq + msgpack.

No bpy here: everything in this module runs on worker threads.

Protocol (the runtime's `engine_bridge/zmq_server.py`): the server owns a ROUTER socket; a
client sends one msgpack map per request from a DEALER socket,

    {"kind": "SolveMotion", "request_id": 7, "token": "...", "body": {SolveMotionRequest}}

and gets replies `{"kind", "request_id", "body" | "error": {"code", "message"}, "last"}`.
Streaming calls (CreateAvatar, ExportMesh) send several replies, the final one with
`last: true`. Bodies mirror the proto messages of `avatar.v1` field by field (snake_case
keys, bytes as msgpack bin, enums by name). "Health" needs no token and is answered by the
server's socket thread directly, so it doubles as a heartbeat while a call is running.

Liveness, two layers:
- ZMTP heartbeats (libzmq's own PING/PONG, answered by the server's libzmq I/O thread): the
  DEALER pings every 0.5 s and drops the connection after 1.5 s without traffic; a socket
  monitor sees the drop (ZMQ_EVENT_DISCONNECTED, also at once when the server process dies)
  and fails every pending call with UNAVAILABLE. So a killed or hung (SIGSTOP) runtime fails
  a call within 2 s whatever `liveness_s` is.
- Application pings: while a call waits, the connection sends "Health" whenever the server
  has been silent for a third of `liveness_s`, and fails the call with UNAVAILABLE once it
  has been silent for `liveness_s` (nothing listening at all, or a server whose process is
  alive but does not answer).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import msgpack
import zmq
from zmq.utils.monitor import parse_monitor_message

from .motion import MotionSample

UNAVAILABLE = "UNAVAILABLE"
CANCELLED = "CANCELLED"
UNAUTHENTICATED = "UNAUTHENTICATED"
RECV_HWM = 64
HEARTBEAT_IVL_MS = 500  # ZMTP PING this often
HEARTBEAT_TIMEOUT_MS = 1500  # drop the connection after this long without any traffic
HEARTBEAT_TTL_MS = 3000  # the server may drop us after this long without our traffic


class ServerError(Exception):
    """A call that failed: an error reply from the runtime, or no runtime to answer it."""

    def __init__(self, code: str, message: str, request_id: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id  # the failed call, for error replies


@dataclass(frozen=True)
class Settings:
    """Where the runtime is and how to talk to it (the add-on preferences, as plain data)."""

    address: str = "tcp://127.0.0.1:5555"
    token: str = ""
    liveness_s: float = 1.5  # server silence after which a waiting call fails


@dataclass(frozen=True)
class Reply:
    request_id: int
    body: dict
    last: bool


@dataclass(frozen=True)
class RenderedImage:
    """A RenderFrame result: RGBA8, straight alpha, row 0 = top."""

    width: int
    height: int
    rgba: bytes
    render_ms: float


class Connection:
    """One DEALER socket to the runtime. Not thread-safe: use it from one thread."""

    def __init__(self, settings: Settings, context: zmq.Context | None = None):
        if not settings.address.startswith(("tcp://", "ipc://", "inproc://")):
            raise ServerError("INVALID_ARGUMENT", f"server address {settings.address!r} is "
                              "not a ZeroMQ endpoint like tcp://127.0.0.1:5555")
        self.settings = settings
        self._ids = itertools.count(1)
        self._pending: set[int] = set()
        self._pings: set[int] = set()
        self._last_heard = self._last_ping = 0.0
        self.connected = False  # a ZMTP connection is up (the monitor's view)
        self._socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, RECV_HWM)
        self._socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        self._socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        self._socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)
        # Before connect, so the first CONNECTED event is not missed.
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        try:
            self._socket.connect(settings.address)
        except zmq.ZMQError as exc:
            self.close()
            raise ServerError("INVALID_ARGUMENT",
                              f"cannot connect to {settings.address!r}: {exc}") from None

    def close(self) -> None:
        if self._monitor is not None:
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        self._socket.close(linger=0)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Requests sent whose final reply has not arrived yet."""
        return len(self._pending)

    # -- sending and receiving ---------------------------------------------------------
    def send(self, kind: str, body: dict) -> int:
        """Send one request; returns its request_id (pair it with `receive`)."""
        request_id = next(self._ids)
        if not self._pending:
            self._last_heard = time.monotonic()  # silence is counted from the first request on
        self._post(kind, request_id, body)
        self._pending.add(request_id)
        return request_id

    def _post(self, kind: str, request_id: int, body: dict) -> None:
        envelope: dict[str, Any] = {"kind": kind, "request_id": request_id, "body": body}
        if self.settings.token:
            envelope["token"] = self.settings.token
        self._socket.send(msgpack.packb(envelope, use_bin_type=True), copy=False)

    def receive(self, timeout: float) -> Reply | None:
        """The next reply to a pending request, or None if none came within `timeout` s.

        Raises ServerError for an error reply, and UNAVAILABLE when the connection drops or
        the server has been silent for `settings.liveness_s` while requests are pending.
        """
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._check_alive(now)
            wait = min(deadline - now, self.settings.liveness_s / 6)
            if wait <= 0:
                return None
            ready = dict(self._poller.poll(max(1, int(wait * 1000))))
            if self._monitor in ready:
                self._read_monitor()
            if self._socket in ready:
                reply = self._read()
                if reply is not None:
                    return reply

    def _read_monitor(self) -> None:
        while self._monitor.poll(0):
            event = parse_monitor_message(self._monitor.recv_multipart())["event"]
            if event == zmq.EVENT_CONNECTED:
                self.connected = True
                self._last_heard = time.monotonic()
            elif event == zmq.EVENT_DISCONNECTED:
                self.connected = False
                if self._pending:
                    self._pending.clear()
                    self._pings.clear()
                    raise ServerError(UNAVAILABLE, f"lost the connection to avatar-runtime at "
                                      f"{self.settings.address} (it stopped, or stopped answering "
                                      f"heartbeats for {HEARTBEAT_TIMEOUT_MS / 1000:.1f} s)")

    def _read(self) -> Reply | None:
        message = msgpack.unpackb(self._socket.recv(), raw=False, strict_map_key=False)
        self._last_heard = time.monotonic()
        if not isinstance(message, dict):
            return None
        request_id = message.get("request_id")
        if request_id in self._pings:
            self._pings.discard(request_id)
            return None
        if request_id not in self._pending:
            return None  # a reply to an abandoned request
        last = bool(message.get("last", True))
        error = message.get("error")
        if error or last:
            self._pending.discard(request_id)
        if error:
            raise ServerError(str(error.get("code", "UNKNOWN")), str(error.get("message", "")),
                              request_id)
        return Reply(request_id, message.get("body") or {}, last)

    def _check_alive(self, now: float) -> None:
        if not self._pending:
            return
        silent = now - self._last_heard
        if silent > self.settings.liveness_s:
            self._pending.clear()
            raise ServerError(UNAVAILABLE, f"avatar-runtime at {self.settings.address} is not "
                              f"answering (silent for {silent:.1f} s); is it running?")
        heartbeat = self.settings.liveness_s / 3
        if silent > heartbeat and now - self._last_ping > heartbeat:
            ping_id = next(self._ids)
            self._pings.add(ping_id)
            self._last_ping = now
            self._post("Health", ping_id, {})

    # -- calls -------------------------------------------------------------------------
    def stream(self, kind: str, body: dict,
               cancelled: Callable[[], bool] = lambda: False) -> Iterator[dict]:
        """Bodies of all replies to one call (one for unary calls), until the last."""
        request_id = self.send(kind, body)
        try:
            while True:
                if cancelled():
                    raise ServerError(CANCELLED, f"{kind} was cancelled")
                reply = self.receive(0.1)
                if reply is None:
                    continue
                if reply.request_id == request_id:
                    yield reply.body
                    if reply.last:
                        return
        finally:
            self._pending.discard(request_id)

    def call(self, kind: str, body: dict, cancelled: Callable[[], bool] = lambda: False) -> dict:
        """The body of the final reply to one call."""
        result: dict = {}
        for result in self.stream(kind, body, cancelled):
            pass
        return result


class Client(Connection):
    """The runtime calls the add-on uses, as snake_case methods over plain Python values."""

    def health(self) -> str:
        """'SERVING' or 'NOT_SERVING'; ServerError UNAVAILABLE when nothing answers."""
        return str(self.call("Health", {}).get("status", "UNKNOWN"))

    def list_avatars(self) -> list[dict]:
        """The runtime's avatars, oldest first: maps {id, name, reconstructor, created_at, meta_json}.

        Needs the token (unlike `health`), so it also checks the credentials.
        """
        return list(self.call("ListAvatars", {}).get("avatars") or [])

    def create_avatar(self, image: bytes, name: str = "",
                      on_progress: Callable[[str, float], None] = lambda stage, fraction: None,
                      cancelled: Callable[[], bool] = lambda: False, more_images: list[bytes] = (),
                      video: bytes = b"") -> dict:
        """Photo bytes -> the avatar map {id, name, reconstructor, created_at, meta_json}.
        more_images / video: more views of the same person (few-shot; image may be b"")."""
        request = {"image": image, "name": name}
        if more_images:
            request["more_images"] = list(more_images)
        if video:
            request["video"] = video
        for event in self.stream("CreateAvatar", request, cancelled):
            if "progress" in event:
                progress = event["progress"]
                on_progress(str(progress.get("stage", "")), float(progress.get("fraction", 0.0)))
            elif "avatar" in event:
                return event["avatar"]
        raise ServerError("INTERNAL", "CreateAvatar ended without an avatar")

    def export_mesh(self, avatar_id: str, file_format: str = "glb",
                    cancelled: Callable[[], bool] = lambda: False) -> dict[str, bytes]:
        """{file name: bytes} of the avatar's mesh export (glb: one file)."""
        files: dict[str, bytearray] = {}
        complete: set[str] = set()
        request = {"avatar_id": avatar_id, "format": file_format}
        for chunk in self.stream("ExportMesh", request, cancelled):
            name = str(chunk.get("file_name", ""))
            data = files.setdefault(name, bytearray())
            if int(chunk.get("offset", 0)) != len(data):
                raise ServerError("DATA_LOSS", f"{name}: chunk at offset {chunk.get('offset')} "
                                  f"after {len(data)} bytes")
            data += chunk.get("data", b"")
            if chunk.get("last"):  # the file is complete: its size and digest must match
                if len(data) != int(chunk.get("total_bytes", -1)):
                    raise ServerError("DATA_LOSS", f"{name}: {len(data)} of {chunk.get('total_bytes')} bytes")
                if hashlib.sha256(data).hexdigest() != chunk.get("sha256"):
                    raise ServerError("DATA_LOSS", f"{name}: the sha256 does not match the runtime's")
                complete.add(name)
        if set(files) != complete:
            raise ServerError("DATA_LOSS", f"the export ended before {sorted(set(files) - complete)} "
                              "was complete")
        return {name: bytes(data) for name, data in files.items()}

    def render_frame(self, avatar_id: str, c2w: list[float], fov_y_deg: float, width: int,
                     height: int, motion: dict | None = None) -> RenderedImage:
        """One raw RGBA frame of the avatar seen by an OpenGL camera in the runtime's world."""
        request = {"avatar_id": avatar_id,
                   "camera": {"c2w": [float(v) for v in c2w], "fov_y_deg": float(fov_y_deg),
                              "width": int(width), "height": int(height)},
                   "options": {"encoding": "ENCODING_RAW"}}
        if motion is not None:
            request["motion"] = motion
        frame = self.call("RenderFrame", request)
        rgba = bytes(frame.get("rgba", b""))
        w, h = int(frame.get("width", 0)), int(frame.get("height", 0))
        if len(rgba) != w * h * 4:
            raise ServerError("INTERNAL", f"RenderFrame sent {len(rgba)} bytes for {w}x{h} RGBA")
        return RenderedImage(w, h, rgba, float(frame.get("render_ms", 0.0)))

    def send_solve_motion(self, image: bytes, avatar_id: str, sequence: int, timecode: float) -> int:
        """Start one SolveMotion call (image -> MotionFrame); pair with `receive`."""
        return self.send("SolveMotion", {"image": image, "avatar_id": avatar_id,
                                         "sequence": int(sequence), "timecode": float(timecode)})

    def calibrate_neutral(self, avatar_id: str, image: bytes | None = None,
                          landmarks: dict | None = None, reset: bool = False) -> MotionSample:
        """Make the performer's face at rest the avatar's neutral (CalibrateNeutral).

        One of `image` (PNG/JPEG bytes of the face at rest) or `landmarks` (a map
        {xyz: 1434 floats, width, height}: MediaPipe's 478 points in pixels); or `reset=True`
        alone, back to the neutral the runtime estimated from the avatar's source photo.
        Every later solve for the avatar reads motion relative to that face. Returns the
        neutral frame as it now solves (about all zero; all zero after a reset). No face in
        the image is ServerError FAILED_PRECONDITION, an unknown avatar NOT_FOUND.
        """
        if reset:
            if image is not None or landmarks is not None:
                raise ValueError("calibrate_neutral: a neutral frame or reset=True, not both")
            body: dict[str, Any] = {"avatar_id": avatar_id, "reset": True}
        elif (image is None) == (landmarks is None):
            raise ValueError("calibrate_neutral takes one neutral frame: image or landmarks")
        elif image is not None:
            body = {"avatar_id": avatar_id, "neutral": {"image": bytes(image)}}
        else:
            body = {"avatar_id": avatar_id, "neutral": {"landmarks": {
                "xyz": [float(v) for v in landmarks["xyz"]], "width": int(landmarks["width"]),
                "height": int(landmarks["height"])}}}
        return MotionSample.from_body(self.call("CalibrateNeutral", body))
