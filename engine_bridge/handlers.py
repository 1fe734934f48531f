"""Request handling shared by both servers: proto request in -> `AvatarService` call -> proto out.

The gRPC servicer and the ZMQ server differ only in how bytes reach these methods, so the two
transports behave identically by construction. Errors are `AvatarError`s (the servers map
`.code`); anything else is a bug and becomes INTERNAL with a logged request id.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import queue
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Callable, Iterator

from avatar_runtime.errors import AvatarError, InvalidArgument, LimitExceeded
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.render.camera import Camera
from avatar_runtime.service import AvatarService, Smoothing

from . import validation
from .config import BridgeLimits, DeadlineExceeded
from .convert import (RenderOptions, SourceMotion, avatar_to_proto, frame_to_proto, motion_from_proto,
                      motion_or_source_from_proto, motion_to_proto)
from .generated import pb
from .live_sessions import LiveSessions
from .metrics import RuntimeMetrics

log = logging.getLogger(__name__)
FrameTap = Callable[[str, MotionFrame], None]
MIME_TYPES = {"glb": "model/gltf-binary", "obj": "model/obj", "mtl": "model/mtl",
              "png": "image/png", "ply": "application/ply"}
DEFAULT_CHUNK_BYTES = 1024 * 1024
MIN_CHUNK_BYTES = 1024
CHUNK_OVERHEAD_BYTES = 4096  # MeshChunk fields + envelope around `data`


def internal_error(exc: BaseException, request_id: str | None = None) -> AvatarError:
    """Log an unexpected exception under the call's request id; return the error to report."""
    request_id = request_id or uuid.uuid4().hex[:12]
    log.error("internal error (request %s)", request_id, exc_info=exc)
    return AvatarError(f"internal error (request id {request_id}); see the server log")



_DONE = object()


def _pipelined(items: Iterator, stopped: Callable[[], bool], poll_s: float = 0.1) -> Iterator:
    """`items` produced on a worker thread, one item ahead of the consumer, in order; the
    worker's exception is raised here. Closing this generator (the client left) lets the
    worker finish once `stopped()` says so (the inbox is cancelled then)."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    closed = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not closed.is_set():
                    try:
                        handoff.put(item, timeout=poll_s)
                        break
                    except queue.Full:
                        if stopped():
                            return
                if closed.is_set():
                    return
            handoff.put(_DONE)
        except BaseException as exc:  # handed to the consumer below
            handoff.put(exc)

    worker = threading.Thread(target=produce, name="drive-render", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        closed.set()
        with suppress(queue.Empty):
            handoff.get_nowait()  # a worker blocked on a full hand-off sees `closed` next

class CreateAbandoned(Exception):
    """Ends a CreateAvatar whose caller has gone (raised inside the work, never sent)."""

class SessionGate:
    """Counts open drive sessions (or other `what`) across transports; refuses past `limit`
    overall or `per_client` for one client (a gRPC connection, a ZeroMQ socket)."""

    def __init__(self, limit: int, per_client: int | None = None, what: str = "drive sessions",
                 limit_names: tuple[str, str] = ("max_drive_sessions", "max_drive_sessions_per_client")):
        self.limit = limit
        self.per_client = per_client or limit
        self.what = what
        self.limit_names = limit_names
        self.active = 0
        self._by_client: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, client: str = "") -> Iterator[None]:
        with self._lock:
            if self.active >= self.limit:
                raise LimitExceeded(f"too many {self.what}: {self.active} open "
                                    f"(limit {self.limit_names[0]}={self.limit})")
            held = self._by_client.get(client, 0)
            if held >= self.per_client:
                raise LimitExceeded(f"this client already holds {held} {self.what} "
                                    f"(limit {self.limit_names[1]}={self.per_client})")
            self.active += 1
            self._by_client[client] = held + 1
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1
                self._by_client[client] -= 1
                if not self._by_client[client]:
                    del self._by_client[client]


@dataclass
class Rejected:
    """A frame the session could not use; reported to the client as a FrameError, in order."""

    sequence: int
    error: AvatarError


MAX_QUEUED_REJECTIONS = 32


class DriveInbox:
    """Mailbox from the receiving side to the render loop (latest-wins).

    `put` replaces the pending frame (counting it as dropped), so memory stays at two frames
    however fast the client sends. When a render finishes, `commit` fixes the newest frame
    that arrived meanwhile as the next one to render, so a frame sent in reply to a
    delivered one (pipelined clients) never displaces it. `reject` queues a per-frame error
    (the session goes on); `end` lets the loop finish what is pending; `cancel` (client gone)
    stops it now; `fail` stops it with an error.
    """

    def __init__(self, idle_timeout_s: float = 60.0):
        self.idle_timeout_s = idle_timeout_s
        self.received = 0
        self.dropped = 0
        self.rejected = 0
        self._pending: MotionFrame | SourceMotion | None = None
        self._next: MotionFrame | SourceMotion | None = None
        self._rejections: collections.deque[Rejected] = collections.deque()
        self._rendering = False
        self._ended = self._cancelled = False
        self._error: AvatarError | None = None
        self._cond = threading.Condition()

    def put(self, msg: pb.MotionFrame) -> None:
        """Validate one wire frame and make it the pending one; a bad frame is rejected (a
        FrameError for the client), never fatal."""
        try:
            item = motion_or_source_from_proto(msg)
        except AvatarError as error:
            self.reject(int(msg.sequence), error)
            return
        self.offer(item)

    def offer(self, item: MotionFrame | SourceMotion) -> bool:
        """Make an already-validated frame the pending one (latest-wins); False (ignored) once
        the stream has ended: the session is finishing and has nobody to tell."""
        with self._cond:
            if self._ended:
                return False
            self.received += 1
            if not self._rendering and self._next is None:
                self._next = item  # the renderer is free: this one is next, whatever follows
                self._cond.notify()
                return True
            if self._pending is not None:
                self.dropped += 1
            self._pending = item
            self._cond.notify()
            return True

    def reject(self, sequence: int, error: AvatarError) -> None:
        """Report `error` for frame `sequence` to the client; the session goes on."""
        with self._cond:
            if self._ended:
                return
            self.received += 1
            self.rejected += 1
            if len(self._rejections) >= MAX_QUEUED_REJECTIONS:
                self._rejections.popleft()  # a flood of bad frames keeps the newest reports
            self._rejections.append(Rejected(sequence, error))
            self._cond.notify()

    def commit(self) -> None:
        """The renderer is free: the pending frame becomes the next one (no longer replaceable)."""
        with self._cond:
            self._rendering = False
            if self._next is None and self._pending is not None:
                self._next, self._pending = self._pending, None

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify()

    def cancel(self) -> None:
        with self._cond:
            self._ended = self._cancelled = True
            self._cond.notify()

    def fail(self, error: AvatarError) -> None:
        with self._cond:
            self._error, self._ended = error, True
            self._cond.notify()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def take(self) -> MotionFrame | SourceMotion | Rejected | None:
        """A rejection to report, else the newest frame, waiting for one; None once ended
        (or cancelled) and drained."""
        deadline = time.monotonic() + self.idle_timeout_s
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._cancelled:
                    return None
                if self._rejections:
                    return self._rejections.popleft()
                if self._next is not None:
                    item, self._next = self._next, None
                    self._rendering = True
                    return item
                if self._pending is not None:
                    item, self._pending = self._pending, None
                    self._rendering = True
                    return item
                if self._ended:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeadlineExceeded(f"drive session idle for {self.idle_timeout_s:g} s "
                                           "(no frames and no end); closed")
                self._cond.wait(left)


class RuntimeHandlers:
    """The servicer logic both transports call; holds the service and the session gate."""

    def __init__(self, service: AvatarService, limits: BridgeLimits = BridgeLimits()):
        self.service = service
        self.limits = limits
        self.sessions = SessionGate(limits.max_drive_sessions, limits.max_drive_sessions_per_client)
        self.live = LiveSessions()
        self.metrics = RuntimeMetrics(sessions=lambda: self.sessions.active,
                                      avatars=lambda: len(service.store))
        self._frame_taps: list[FrameTap] = []
        self._feeds: dict[int, tuple[str, DriveInbox]] = {}
        self._feeds_lock = threading.Lock()

    # -- avatars -----------------------------------------------------------------------
    def create_avatar(self, req: pb.CreateAvatarRequest) -> Iterator[pb.CreateAvatarEvent]:
        """Runs `service.create` on a worker thread; yields its progress, then the avatar.
        A caller that goes away (cancels) stops the work at its next stage: nothing is stored."""
        events: queue.Queue = queue.Queue()
        abandoned = threading.Event()

        def progress(stage: str, fraction: float) -> None:
            if abandoned.is_set():
                raise CreateAbandoned(f"the caller left CreateAvatar before stage {stage!r}")
            events.put(pb.CreateAvatarEvent(progress=pb.Progress(stage=stage, fraction=fraction)))

        def work() -> None:
            try:
                started = time.perf_counter()
                summary = self.service.create(req.image, req.name, req.reconstructor or "fit", progress,
                                              more_images=list(req.more_images), video=req.video,
                                              refine=req.refine)
                self.metrics.create_seconds.observe(time.perf_counter() - started)
                events.put(pb.CreateAvatarEvent(avatar=avatar_to_proto(summary)))
            except BaseException as exc:  # handed to the caller's thread below
                events.put(exc)

        threading.Thread(target=work, name="create-avatar", daemon=True).start()
        try:
            while True:
                event = events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if event.HasField("avatar"):
                    return
        finally:
            abandoned.set()

    def get_avatar(self, req: pb.GetAvatarRequest) -> pb.Avatar:
        return avatar_to_proto(self.service.get(req.avatar_id))

    def list_avatars(self, req: pb.ListAvatarsRequest) -> pb.ListAvatarsResponse:
        return pb.ListAvatarsResponse(avatars=[avatar_to_proto(s) for s in self.service.list()])

    def delete_avatar(self, req: pb.DeleteAvatarRequest) -> pb.DeleteAvatarResponse:
        self.service.delete(req.avatar_id)
        return pb.DeleteAvatarResponse()

    # -- frames ------------------------------------------------------------------------
    def render_frame(self, req: pb.RenderFrameRequest) -> pb.Frame:
        item = motion_or_source_from_proto(req.motion if req.HasField("motion") else None)
        camera, options = validation.render_target(
            self.service, self.limits, req.camera if req.HasField("camera") else None,
            req.options if req.HasField("options") else None)
        t0 = time.perf_counter()
        motion = self._motion(item, req.avatar_id)
        out = self.service.render(req.avatar_id, motion, camera, depth=options.depth, normals=options.normals)
        frame = frame_to_proto(out, options, motion.sequence, motion.timecode,
                               (time.perf_counter() - t0) * 1e3)
        self._count_frame("render", frame)
        return frame

    def solve_motion(self, req: pb.SolveMotionRequest) -> pb.MotionFrame:
        frame = self.service.solve_motion(req.image, req.avatar_id or None, int(req.sequence),
                                          float(req.timecode))
        return motion_to_proto(frame)

    def calibrate_neutral(self, req: pb.CalibrateNeutralRequest) -> pb.MotionFrame:
        """The face at rest (image or landmarks) becomes the avatar's neutral; or reset."""
        if req.reset:
            if req.HasField("neutral"):
                raise InvalidArgument("CalibrateNeutral: send a neutral frame or reset, not both")
            self.service.reset_neutral(req.avatar_id)
            return motion_to_proto(MotionFrame.neutral())
        item = motion_or_source_from_proto(req.neutral if req.HasField("neutral") else None)
        if not isinstance(item, SourceMotion) or item.kind == "embedding":
            raise InvalidArgument("CalibrateNeutral needs the face at rest as neutral.image or "
                                  "neutral.landmarks (or reset: true)")
        if item.kind == "image":
            frame = self.service.calibrate_neutral(req.avatar_id, image=item.payload)
        else:
            frame = self.service.calibrate_neutral(req.avatar_id, landmarks=item.payload,
                                                   width=item.width, height=item.height)
        return motion_to_proto(frame)

    def export_mesh(self, req: pb.ExportMeshRequest) -> Iterator[pb.MeshChunk]:
        """The avatar's mesh files, each streamed in chunks (expression from `req.motion`);
        the last chunk of each file carries its SHA-256."""
        motion = motion_from_proto(req.motion if req.HasField("motion") else None)
        size = int(req.chunk_bytes) or DEFAULT_CHUNK_BYTES
        if size < MIN_CHUNK_BYTES:
            raise InvalidArgument(f"chunk_bytes must be at least {MIN_CHUNK_BYTES} (or 0 for the "
                                  f"default {DEFAULT_CHUNK_BYTES}), got {size}")
        size = min(size, self.limits.max_message_bytes - CHUNK_OVERHEAD_BYTES)
        files = self.service.export_mesh(req.avatar_id, req.format or "glb", motion.arkit,
                                         source=req.source or "mesh")
        for name, data in files.items():
            mime = MIME_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
            view = memoryview(data)
            offsets = range(0, max(len(data), 1), size)
            for offset in offsets:
                last = offset == offsets[-1]
                yield pb.MeshChunk(data=bytes(view[offset:offset + size]), offset=offset,
                                   total_bytes=len(data), mime_type=mime, file_name=name,
                                   sha256=hashlib.sha256(data).hexdigest() if last else "",
                                   last=last)

    # -- drive -------------------------------------------------------------------------
    def start_drive(self, header: pb.DriveHeader) -> "DrivePlan":
        """Check a Drive header completely (before DriveStarted): camera, options, avatar."""
        camera, options, smoothing = validation.drive_header(self.service, self.limits, header)
        return DrivePlan(header.avatar_id, camera, options, smoothing)

    def drive(self, plan: "DrivePlan", inbox: DriveInbox, client: str = "",
              transport: str = "") -> Iterator[pb.DriveResponse]:
        """DriveStarted, then one Frame per rendered motion (or a FrameError per refused
        frame), then DriveStatus. The caller feeds `inbox` from its receiving side."""
        with self.sessions.slot(client), self._fed(plan.avatar_id, inbox), \
                self.live.track(plan.avatar_id, transport, client, plan.camera.width,
                                plan.camera.height, inbox) as live:
            started = time.perf_counter()
            yield pb.DriveResponse(header=pb.DriveStarted(
                session_id=live.session_id, avatar_id=plan.avatar_id, width=plan.camera.width,
                height=plan.camera.height, encoding=plan.options.encoding, max_fps=self.limits.max_fps))
            rendered = 0
            # Two stages: a worker renders the next frame while this generator encodes and
            # hands over the last one (one rendered frame waits at most: latest-wins holds).
            for item in _pipelined(self._rendered(plan, inbox, live), stopped=inbox.cancelled):
                if isinstance(item, Rejected):
                    yield pb.DriveResponse(error=pb.FrameError(
                        sequence=item.sequence, code=item.error.code, message=item.error.message))
                    continue
                frame, out, render_ms = item
                rendered += 1
                wire = frame_to_proto(out, plan.options, frame.sequence, frame.timecode, render_ms)
                self._count_frame("drive", wire)
                yield pb.DriveResponse(frame=wire)
            dropped = inbox.received - rendered - inbox.rejected
            self.metrics.frames_dropped.inc(dropped)
            yield pb.DriveResponse(status=pb.DriveStatus(
                frames_received=inbox.received, frames_rendered=rendered, frames_dropped=dropped,
                elapsed_s=time.perf_counter() - started))

    def _rendered(self, plan: "DrivePlan", inbox: DriveInbox, live) -> Iterator:
        """(motion, render, render ms) per frame of `inbox`, or a Rejected for a refused one."""
        smooth = plan.smoothing.filter()
        for item, t0 in self._paced(inbox):
            if not isinstance(item, Rejected):
                try:
                    frame = smooth(self._motion(item, plan.avatar_id))
                except AvatarError as error:  # e.g. no face in an image frame: report, go on
                    item = Rejected(item.sequence, error)
            if isinstance(item, Rejected):
                inbox.commit()
                live.refused += 1
                self.metrics.frame_errors.labels(item.error.code).inc()
                yield item
                continue
            out = self.service.render(plan.avatar_id, frame, plan.camera,
                                      depth=plan.options.depth, normals=plan.options.normals)
            render_ms = (time.perf_counter() - t0) * 1e3
            inbox.commit()
            live.frame(out.rgba, render_ms)
            self._tap(plan.avatar_id, frame)
            yield frame, out, render_ms

    def _count_frame(self, call: str, frame: pb.Frame) -> None:
        self.metrics.frames_rendered.labels(call).inc()
        self.metrics.render_seconds.observe(frame.render_ms / 1e3)
        self.metrics.encode_seconds.observe(frame.encode_ms / 1e3)

    def _motion(self, item: MotionFrame | SourceMotion, avatar_id: str) -> MotionFrame:
        """Weights for a frame: as sent, or solved from its image / landmarks / motion code."""
        if not isinstance(item, SourceMotion):
            return item
        if item.kind == "image":
            return self.service.solve_motion(item.payload, avatar_id, item.sequence, item.timecode)
        if item.kind == "landmarks":
            return self.service.solve_landmarks(avatar_id, item.payload, item.width, item.height,
                                                item.sequence, item.timecode)
        return self.service.motion_from_code(avatar_id, item.payload, item.sequence, item.timecode)

    def _paced(self, inbox: DriveInbox) -> Iterator[tuple]:
        """(item, start time) from `inbox`, frames at most `max_fps` a second."""
        interval = 1.0 / self.limits.max_fps if self.limits.max_fps > 0 else 0.0
        next_start = 0.0
        while True:
            if interval:
                wait = next_start - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            item = inbox.take()
            if item is None:
                return
            started = time.perf_counter()
            if not isinstance(item, Rejected):
                next_start = started + interval
            yield item, started

    # -- motion from elsewhere, motion to elsewhere (engine_bridge/livelink.py) ----------------
    def add_frame_tap(self, tap: FrameTap) -> None:
        """`tap(avatar_id, motion)` is called with the motion of every frame a drive session renders."""
        self._frame_taps.append(tap)

    def feed_motion(self, avatar_id: str, frame: MotionFrame) -> int:
        """Put `frame` into every open drive session on `avatar_id` (latest-wins, like a client
        frame); returns how many sessions took it."""
        with self._feeds_lock:
            inboxes = [inbox for avatar, inbox in self._feeds.values() if avatar == avatar_id]
        return sum(inbox.offer(frame) for inbox in inboxes)  # ending sessions decline

    @contextmanager
    def _fed(self, avatar_id: str, inbox: DriveInbox) -> Iterator[None]:
        with self._feeds_lock:
            self._feeds[id(inbox)] = (avatar_id, inbox)
        try:
            yield
        finally:
            with self._feeds_lock:
                self._feeds.pop(id(inbox), None)

    def _tap(self, avatar_id: str, frame: MotionFrame) -> None:
        for tap in self._frame_taps:
            try:
                tap(avatar_id, frame)
            except Exception:  # noqa: BLE001 - an output's failure must not stop the session
                log.exception("frame tap failed")


@dataclass(frozen=True)
class DrivePlan:
    """A checked Drive header: what every frame of the session renders with."""

    avatar_id: str
    camera: Camera
    options: RenderOptions
    smoothing: Smoothing
