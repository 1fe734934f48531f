"""Client facade: the same snake_case methods over gRPC or ZeroMQ, one exception type.

    from engine_bridge.client import connect
    with connect("grpc://127.0.0.1:50051") as client:      # or "tcp://127.0.0.1:5555" (ZMQ)
        avatar = client.create_avatar(png_bytes)
        rgba = client.render_frame(avatar["id"], MotionFrame.neutral(), Camera.orbit())
        for frame in client.drive(avatar["id"], frames, camera):
            show(frame.rgba)

Every failure is a `BridgeError(code, message)` with the server's status name as `code`.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .generated import pb

ENCODINGS = {"raw": pb.ENCODING_RAW, "png": pb.ENCODING_PNG, "jpeg": pb.ENCODING_JPEG}
DEFAULT_TIMEOUT_S = 120.0


class BridgeError(RuntimeError):
    """A call failed; `code` is a gRPC status name (NOT_FOUND, INVALID_ARGUMENT, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class FrameError(BridgeError):
    """One drive frame the server refused; the session went on."""

    def __init__(self, code: str, message: str, sequence: int):
        super().__init__(code, message)
        self.sequence = sequence


class DriveStream:
    """Iterator over rendered frames (`DecodedFrame`) of one drive session.

    `started` (dict) is set once the server accepted the header; `status` (dict with
    frames_received / frames_rendered / frames_dropped / elapsed_s) when the stream ends.
    Frames the server refused (bad values, no face in an image frame) do not end the
    stream: each lands in `frame_errors` as a `BridgeError` with its `sequence`.
    """

    def __init__(self, responses: Iterator[pb.DriveResponse], window: "SendWindow | None"):
        self._responses = responses
        self._window = window
        self.started: dict | None = None
        self.status: dict | None = None
        self.frame_errors: list[FrameError] = []

    def __iter__(self) -> "DriveStream":
        return self

    def __next__(self):
        from .convert import frame_from_proto

        try:
            for response in self._responses:
                kind = response.WhichOneof("kind")
                if kind == "header":
                    self.started = _fields(response.header)
                elif kind == "frame":
                    if self._window is not None:
                        self._window.resolve(response.frame.sequence)
                    return frame_from_proto(response.frame)
                elif kind == "error":
                    error = response.error
                    if self._window is not None:
                        self._window.resolve(error.sequence)
                    self.frame_errors.append(FrameError(error.code, error.message, error.sequence))
                elif kind == "status":
                    self.status = _fields(response.status)
            raise StopIteration
        except BaseException:
            if self._window is not None:
                self._window.close()
            raise

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
        close = getattr(self._responses, "close", None) or getattr(self._responses, "cancel", None)
        if close is not None:
            close()


class SendWindow:
    """At most `size` frames sent but not yet answered (answers resolve by sequence)."""

    def __init__(self, size: int):
        self.size = max(1, int(size))
        self._sent: collections.deque[int] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def acquire(self, sequence: int) -> bool:
        """Wait for room; record `sequence` as sent. False once closed."""
        with self._cond:
            while not self._closed and len(self._sent) >= self.size:
                self._cond.wait(1.0)
            if self._closed:
                return False
            self._sent.append(sequence)
            return True

    def resolve(self, sequence: int) -> None:
        """A frame came back: it and every frame sent before it are answered (or dropped)."""
        with self._cond:
            if sequence in self._sent:
                while self._sent and self._sent.popleft() != sequence:
                    pass
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class AvatarClient(ABC):
    """The facade; `GrpcClient` and `ZmqClient` implement the three transport primitives."""

    # -- transport primitives -------------------------------------------------------------
    @abstractmethod
    def _unary(self, kind: str, request, response_cls, timeout: float | None):
        """One request -> one response message."""

    @abstractmethod
    def _stream(self, kind: str, request, response_cls, timeout: float | None) -> Iterator:
        """One request -> response messages."""

    @abstractmethod
    def _drive(self, header: pb.DriveHeader, frames: Iterable[pb.MotionFrame],
               window: SendWindow | None, timeout: float | None) -> Iterator[pb.DriveResponse]:
        """Header, frames (respecting `window`), end -> DriveResponse messages."""

    @abstractmethod
    def health(self) -> str:
        """'SERVING' when the server is up and ready."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- avatars --------------------------------------------------------------------------
    def create_avatar(self, image_bytes: bytes, name: str = "", reconstructor: str = "fit",
                      progress: Callable[[str, float], None] | None = None,
                      timeout: float | None = DEFAULT_TIMEOUT_S, more_images: Sequence[bytes] = (),
                      video: bytes = b"", refine: str = "") -> dict:
        """Photo bytes -> avatar summary {id, name, reconstructor, created_at, meta}.

        more_images / video: more views of the same person (few-shot); the summary's
        meta["views"] / meta["skipped"] say which were used. image_bytes may be b"" with a video.
        refine: "volume" also fits a radiance field (see AvatarService.create).
        """
        from .convert import avatar_from_proto

        request = pb.CreateAvatarRequest(image=bytes(image_bytes), name=name, reconstructor=reconstructor,
                                         more_images=[bytes(b) for b in more_images], video=bytes(video),
                                         refine=refine)
        avatar = None
        for event in self._stream("CreateAvatar", request, pb.CreateAvatarEvent, timeout):
            if event.HasField("avatar"):  # the last event: read on to the stream's clean end
                avatar = avatar_from_proto(event.avatar)
            elif progress is not None:
                progress(event.progress.stage, event.progress.fraction)
        if avatar is None:
            raise BridgeError("INTERNAL", "CreateAvatar ended without an avatar")
        return avatar

    def get_avatar(self, avatar_id: str, timeout: float | None = 30.0) -> dict:
        from .convert import avatar_from_proto

        return avatar_from_proto(self._unary("GetAvatar", pb.GetAvatarRequest(avatar_id=avatar_id),
                                             pb.Avatar, timeout))

    def list_avatars(self, timeout: float | None = 30.0) -> list[dict]:
        from .convert import avatar_from_proto

        response = self._unary("ListAvatars", pb.ListAvatarsRequest(), pb.ListAvatarsResponse, timeout)
        return [avatar_from_proto(a) for a in response.avatars]

    def delete_avatar(self, avatar_id: str, timeout: float | None = 30.0) -> None:
        self._unary("DeleteAvatar", pb.DeleteAvatarRequest(avatar_id=avatar_id),
                    pb.DeleteAvatarResponse, timeout)

    # -- frames ---------------------------------------------------------------------------
    def render(self, avatar_id: str, motion=None, camera=None, encoding: str = "raw",
               depth: bool = False, normals: bool = False, timeout: float | None = 60.0):
        """One frame with all requested passes (`DecodedFrame`)."""
        from .convert import frame_from_proto

        request = pb.RenderFrameRequest(avatar_id=avatar_id, options=_options(encoding, depth, normals))
        if motion is not None:
            request.motion.CopyFrom(_motion(motion))
        if camera is not None:
            request.camera.CopyFrom(_camera(camera))
        return frame_from_proto(self._unary("RenderFrame", request, pb.Frame, timeout))

    def render_frame(self, avatar_id: str, motion=None, camera=None, **kwargs) -> np.ndarray:
        """[H, W, 4] uint8 RGBA (straight alpha) for `motion` (MotionFrame) seen by `camera`."""
        return self.render(avatar_id, motion, camera, **kwargs).rgba

    def drive(self, avatar_id: str, frames: Iterable, camera=None, encoding: str = "raw",
              depth: bool = False, normals: bool = False, smoothing: dict | None = None,
              window: int | None = 2, timeout: float | None = 60.0) -> DriveStream:
        """Stream `frames` (MotionFrame) -> iterator of rendered `DecodedFrame`s, in order.

        `window` frames may be in flight (sent, not yet rendered); `window=None` sends as
        fast as `frames` yields (live sources) and lets the server drop stale frames.
        """
        header = pb.DriveHeader(avatar_id=avatar_id, options=_options(encoding, depth, normals))
        if camera is not None:
            header.camera.CopyFrom(_camera(camera))
        if smoothing is not None:
            header.smoothing.CopyFrom(pb.Smoothing(enabled=smoothing.get("enabled", True),
                                                   min_cutoff=smoothing.get("min_cutoff", 0.0),
                                                   beta=smoothing.get("beta", 0.0)))
        send_window = SendWindow(window) if window else None
        wire = (_motion(f) for f in frames)
        return DriveStream(self._drive(header, wire, send_window, timeout), send_window)

    def solve_motion(self, image: bytes, avatar_id: str | None = None, sequence: int = 0,
                     timecode: float = 0.0, timeout: float | None = 60.0):
        """Image bytes -> `MotionFrame` (52 ARKit weights + head pose)."""
        from .convert import motion_from_proto

        request = pb.SolveMotionRequest(image=bytes(image), avatar_id=avatar_id or "",
                                        sequence=sequence, timecode=timecode)
        return motion_from_proto(self._unary("SolveMotion", request, pb.MotionFrame, timeout))

    def calibrate_neutral(self, avatar_id: str, image: bytes | None = None, landmarks=None,
                          width: int = 0, height: int = 0, reset: bool = False,
                          timeout: float | None = 60.0):
        """The driving face at rest (image bytes, or [478, 3] landmarks in pixels of a width x
        height image) becomes the avatar's neutral; `reset=True` forgets it. Returns the
        calibrated frame as it now solves (`MotionFrame`)."""
        from .convert import motion_from_proto

        request = pb.CalibrateNeutralRequest(avatar_id=avatar_id, reset=reset)
        if image is not None:
            request.neutral.image = bytes(image)
        elif landmarks is not None:
            request.neutral.landmarks.CopyFrom(pb.Landmarks(
                xyz=np.asarray(landmarks, np.float32).ravel().tolist(), width=width, height=height))
        return motion_from_proto(self._unary("CalibrateNeutral", request, pb.MotionFrame, timeout))

    def export_mesh(self, avatar_id: str, motion=None, format: str = "glb", source: str = "mesh",
                    timeout: float | None = 120.0) -> bytes:
        """The avatar's main mesh file (.glb by default) as bytes."""
        return next(iter(self.export_mesh_files(avatar_id, motion, format, source, timeout).values()))

    def export_mesh_files(self, avatar_id: str, motion=None, format: str = "glb",
                          source: str = "mesh", timeout: float | None = 120.0) -> dict[str, bytes]:
        """{file name: bytes} of the export, main file first (obj adds .mtl and .png);
        source "volume" extracts a portrait4d avatar's learned surface."""
        request = pb.ExportMeshRequest(avatar_id=avatar_id, format=format, source=source)
        if motion is not None:
            request.motion.CopyFrom(_motion(motion))
        files: dict[str, bytearray] = {}
        done: set[str] = set()
        for chunk in self._stream("ExportMesh", request, pb.MeshChunk, timeout):
            data = files.setdefault(chunk.file_name, bytearray())
            if chunk.offset != len(data) or chunk.file_name in done:
                raise BridgeError("DATA_LOSS", f"{chunk.file_name}: chunk at offset {chunk.offset} "
                                  f"after {len(data)} bytes received")
            data.extend(chunk.data)
            if chunk.last:
                _verify(chunk.file_name, data, chunk.total_bytes, chunk.sha256)
                done.add(chunk.file_name)
        missing = sorted(set(files) - done)
        if missing:
            raise BridgeError("DATA_LOSS", f"the export ended before the last chunk of {missing}")
        return {name: bytes(data) for name, data in files.items()}


def _verify(name: str, data: bytearray, total_bytes: int, sha256: str) -> None:
    """DATA_LOSS unless a received file has its announced size and digest."""
    if len(data) != total_bytes:
        raise BridgeError("DATA_LOSS", f"{name}: received {len(data)} bytes of {total_bytes}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise BridgeError("DATA_LOSS", f"{name}: sha256 {digest} does not match the server's {sha256}")


def _options(encoding: str, depth: bool, normals: bool) -> pb.RenderOptions:
    if encoding not in ENCODINGS:
        raise BridgeError("INVALID_ARGUMENT", f"encoding must be one of {', '.join(ENCODINGS)}")
    return pb.RenderOptions(encoding=ENCODINGS[encoding], depth=depth, normals=normals)


def _motion(motion: Any) -> pb.MotionFrame:
    if isinstance(motion, pb.MotionFrame):
        return motion
    from .convert import motion_to_proto

    return motion_to_proto(motion)


def _camera(camera: Any) -> pb.Camera:
    if isinstance(camera, pb.Camera):
        return camera
    from .convert import camera_to_proto

    return camera_to_proto(camera)


def _fields(message) -> dict:
    from .codec import to_dict

    return to_dict(message)


def connect(address: str, token: str | None = None, **kwargs) -> AvatarClient:
    """`grpc://host:port` (or `grpcs://` for TLS) -> GrpcClient; `tcp://` / `ipc://` -> ZmqClient."""
    if address.startswith(("grpc://", "grpcs://")):
        try:
            from .grpc_client import GrpcClient
        except ImportError as exc:
            raise BridgeError("UNAVAILABLE", f"the gRPC transport needs grpcio ({exc}); "
                              "install avatar-runtime with its default dependencies") from None
        return GrpcClient(address.split("://", 1)[1], token=token,
                          tls=address.startswith("grpcs://"), **kwargs)
    if address.startswith(("tcp://", "ipc://")):
        try:
            from .zmq_client import ZmqClient
        except ImportError as exc:
            raise BridgeError("UNAVAILABLE", f"the ZeroMQ transport needs pyzmq and msgpack "
                              f"({exc}); pip install pyzmq msgpack") from None
        return ZmqClient(address, token=token, **kwargs)
    raise BridgeError("INVALID_ARGUMENT", f"unknown address {address!r}: use grpc://host:port, "
                      "grpcs://host:port, tcp://host:port or ipc://path")
