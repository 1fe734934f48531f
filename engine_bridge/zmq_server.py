"""ZeroMQ transport: one ROUTER socket, msgpack maps mirroring the proto messages.

Request (DEALER, or REQ with its empty delimiter frame):

    {"kind": "RenderFrame", "request_id": 7, "token": "...", "body": {RenderFrameRequest}}

Replies carry the same kind and request_id, plus `"body"` (the response message) or
`"error": {"code", "message"}`, and `"last": true` on the final reply of a call. Streaming
calls (CreateAvatar, ExportMesh, Drive) send several replies. Drive mirrors gRPC: send a
Drive request whose body is `{"header": {...}}`, then `{"frame": {...}}` requests (no reply
each) and `{"end": {}}`, all with the same request_id; the server streams DriveResponse
bodies (header, frames, status) back to the sending socket. Latest-wins: a frame not yet
rendered is replaced by a newer one, and a frame the client is too slow to take (its socket
queue is full) is dropped; both count in DriveStatus.frames_dropped. A "Health" request
(no token needed) answers {"status": "SERVING"}.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from avatar_runtime.errors import AvatarError, InvalidArgument, LimitExceeded
from avatar_runtime.service import AvatarService

from . import codec
from .config import BridgeLimits, Security, require_token_off_loopback
from .generated import pb
from .handlers import DriveInbox, RuntimeHandlers, internal_error

log = logging.getLogger(__name__)
ENVELOPE_KEYS = {"kind", "request_id", "token", "body"}
# kind -> (request message, handler method, streams replies)
CALLS: dict[str, tuple[type, str, bool]] = {
    "CreateAvatar": (pb.CreateAvatarRequest, "create_avatar", True),
    "GetAvatar": (pb.GetAvatarRequest, "get_avatar", False),
    "ListAvatars": (pb.ListAvatarsRequest, "list_avatars", False),
    "DeleteAvatar": (pb.DeleteAvatarRequest, "delete_avatar", False),
    "RenderFrame": (pb.RenderFrameRequest, "render_frame", False),
    "SolveMotion": (pb.SolveMotionRequest, "solve_motion", False),
    "ExportMesh": (pb.ExportMeshRequest, "export_mesh", True),
}
KINDS = (*CALLS, "Drive", "Health")
SEND_HWM = 16  # replies queued per peer before frames are dropped (bounded memory)


class _Unavailable(AvatarError):
    code = "UNAVAILABLE"


@dataclass
class _Session:
    route: list[bytes]
    request_id: Any
    inbox: DriveInbox
    output_dropped: int = 0


@dataclass
class _Outgoing:
    route: list[bytes]
    reply: dict | None
    session: _Session | None = None
    droppable: bool = False
    after: Callable[[], None] | None = field(default=None, repr=False)


class ZmqServer:
    """Serve `handlers` on a ROUTER socket; `start()` runs the loop on a thread."""

    def __init__(self, handlers: RuntimeHandlers, endpoint: str = "tcp://127.0.0.1:0",
                 security: Security = Security(), workers: int = 8,
                 context: zmq.Context | None = None):
        require_token_off_loopback(endpoint, security)
        self.handlers = handlers
        self.security = security
        self.limits = handlers.limits
        self._ctx = context or zmq.Context.instance()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._router.setsockopt(zmq.LINGER, 0)
        # Hard cap: libzmq disconnects a peer sending more; up to it we answer RESOURCE_EXHAUSTED.
        self._router.setsockopt(zmq.MAXMSGSIZE, 2 * self.limits.max_message_bytes + 4096)
        if security.curve_secret_key:
            self._router.curve_secretkey = security.curve_secret_key
            self._router.curve_server = True
        self._router.bind(endpoint)
        self.endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_addr = f"inproc://zmq-server-wake-{id(self)}"
        self._wake_rx = self._ctx.socket(zmq.PULL)
        self._wake_rx.bind(self._wake_addr)
        self._wake_tx = self._ctx.socket(zmq.PUSH)
        self._wake_tx.connect(self._wake_addr)
        self._wake_lock = threading.Lock()
        self._outbox: deque[_Outgoing] = deque()
        self._sessions: dict[tuple, _Session] = {}
        self._sessions_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="zmq-call")
        self._drive_threads: set[threading.Thread] = set()
        self._inflight: set[futures.Future] = set()
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="zmq-server", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "ZmqServer":
        self._thread.start()
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new calls, let in-flight ones finish (up to `grace` s), then close."""
        self._stopping.set()
        deadline = time.monotonic() + grace
        futures.wait(list(self._inflight), timeout=grace)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for thread in list(self._drive_threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._sessions_lock:
            for session in self._sessions.values():
                session.inbox.cancel()
        while self._outbox and time.monotonic() < deadline:
            time.sleep(0.01)
        self._closed.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5.0)
        else:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self._router, self._wake_rx, self._wake_tx):
            sock.close(linger=0)

    # -- the socket loop (the only thread touching the ROUTER) --------------------------
    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        try:
            while not self._closed.is_set():
                events = dict(poller.poll(1000))
                if self._wake_rx in events:
                    while self._wake_rx.poll(0):
                        self._wake_rx.recv()
                self._flush()
                if self._router in events:
                    for _ in range(64):  # bounded batch so replies keep flowing
                        try:
                            parts = self._router.recv_multipart(zmq.NOBLOCK, copy=True)
                        except zmq.Again:
                            break
                        self._on_message(parts)
                    self._flush()
        except Exception:  # pragma: no cover - a bug in the loop itself
            log.exception("ZMQ server loop failed")
        finally:
            self._close_sockets()

    def _flush(self) -> None:
        while self._outbox:
            out = self._outbox.popleft()
            if out.reply is not None:
                self._send(out)
            if out.after is not None:
                out.after()

    def _send(self, out: _Outgoing) -> None:
        session = out.session
        if session is not None and "status" in (out.reply.get("body") or {}):
            status = out.reply["body"]["status"]
            status["frames_dropped"] += session.output_dropped
            status["frames_rendered"] -= session.output_dropped
        try:
            payload = codec.pack(out.reply)
            self._router.send_multipart([*out.route, payload], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            if out.droppable and session is not None:
                session.output_dropped += 1
            else:
                log.warning("dropping a reply to a peer that is not reading")
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # the peer disconnected
                if session is not None:
                    session.inbox.cancel()
            else:
                log.warning("send failed: %s", exc)

    # -- requests ----------------------------------------------------------------------
    def _on_message(self, parts: list[bytes]) -> None:
        if len(parts) == 3 and parts[1] == b"":
            route, payload = parts[:2], parts[2]
        elif len(parts) == 2:
            route, payload = parts[:1], parts[1]
        else:
            self._reply(parts[:1], None, None, error=InvalidArgument(
                f"expected one message frame (plus a REQ delimiter), got {len(parts) - 1} frames"))
            return
        kind, request_id = None, None
        try:
            envelope = codec.unpack(payload)  # size-capped by MAXMSGSIZE; parsed for the ids
            if isinstance(envelope, dict):
                kind, request_id = envelope.get("kind"), envelope.get("request_id")
            if len(payload) > self.limits.max_message_bytes:
                raise LimitExceeded(f"request is {len(payload)} bytes; the limit is "
                                    f"{self.limits.max_message_bytes} (max_message_bytes)")
            kind, body = self._check_envelope(envelope)
            ongoing_drive = kind == "Drive" and isinstance(body, dict) and "header" not in body
            if self._stopping.is_set() and kind != "Health" and not ongoing_drive:
                raise _Unavailable("the server is shutting down; no new calls are accepted")
            self._dispatch(route, kind, request_id, body)
        except AvatarError as error:
            self._reply(route, kind if isinstance(kind, str) else None, request_id, error=error)
        except Exception as exc:  # noqa: BLE001
            self._reply(route, None, request_id, error=internal_error(exc))

    def _check_envelope(self, envelope: Any) -> tuple[str, Any]:
        if not isinstance(envelope, dict):
            raise InvalidArgument("a request must be a msgpack map with 'kind', 'request_id', "
                                  "'body' (and 'token' when the server requires one)")
        unknown = set(map(str, envelope)) - ENVELOPE_KEYS
        if unknown:
            raise InvalidArgument(f"unknown request keys {sorted(unknown)}; allowed: {sorted(ENVELOPE_KEYS)}")
        kind = envelope.get("kind")
        if kind not in KINDS:
            raise InvalidArgument(f"unknown request kind {kind!r}; kinds: {', '.join(KINDS)}")
        request_id = envelope.get("request_id")
        if isinstance(request_id, bool) or not isinstance(request_id, (int, str, type(None))):
            raise InvalidArgument("request_id must be an integer or a string")
        token = envelope.get("token")
        if token is not None and not isinstance(token, str):
            raise InvalidArgument("token must be a string")
        if kind != "Health":
            self.security.check_token(token)
        return kind, envelope.get("body") or {}

    def _dispatch(self, route: list[bytes], kind: str, request_id: Any, body: Any) -> None:
        if kind == "Health":
            status = "NOT_SERVING" if self._stopping.is_set() else "SERVING"
            self._reply(route, kind, request_id, body={"status": status})
        elif kind == "Drive":
            self._on_drive(route, request_id, codec.from_dict(pb.DriveRequest, body, "body"))
        else:
            cls, method, streams = CALLS[kind]
            request = codec.from_dict(cls, body, "body")
            future = self._pool.submit(self._call, route, kind, request_id, method, request, streams)
            self._inflight.add(future)
            future.add_done_callback(self._inflight.discard)

    def _call(self, route, kind, request_id, method: str, request, streams: bool) -> None:
        """Worker thread: run one handler, post its reply (or replies)."""
        try:
            result = getattr(self.handlers, method)(request)
            if not streams:
                self._post(_Outgoing(route, _reply_map(kind, request_id, codec.to_dict(result))))
                return
            previous = None
            for message in result:
                if previous is not None:
                    self._post(_Outgoing(route, _reply_map(kind, request_id, previous, last=False)))
                previous = codec.to_dict(message)
            self._post(_Outgoing(route, _reply_map(kind, request_id, previous or {})))
        except AvatarError as error:
            self._post(_Outgoing(route, _error_map(kind, request_id, error)))
        except Exception as exc:  # noqa: BLE001
            self._post(_Outgoing(route, _error_map(kind, request_id, internal_error(exc))))

    # -- drive -------------------------------------------------------------------------
    def _on_drive(self, route: list[bytes], request_id: Any, request: pb.DriveRequest) -> None:
        key = (tuple(route), request_id)
        kind = request.WhichOneof("kind")
        if kind is None:
            raise InvalidArgument("a Drive request body needs one of header, frame, end")
        with self._sessions_lock:
            session = self._sessions.get(key)
        if kind == "header":
            if session is not None:
                raise InvalidArgument(f"drive session {request_id!r} already has a header")
            session = _Session(route, request_id, DriveInbox(self.limits.idle_timeout_s))
            with self._sessions_lock:
                self._sessions[key] = session
            thread = threading.Thread(target=self._run_drive, args=(key, session, request.header),
                                      name="zmq-drive", daemon=True)
            self._drive_threads.add(thread)
            thread.start()
            return
        if session is None:
            raise InvalidArgument(f"no drive session with request_id {request_id!r} from this "
                                  "socket; send a Drive request with a header first")
        if kind == "frame":
            try:
                session.inbox.put(request.frame)
            except AvatarError as error:
                session.inbox.fail(error)
        else:
            session.inbox.end()

    def _run_drive(self, key: tuple, session: _Session, header: pb.DriveHeader) -> None:
        route, request_id = session.route, session.request_id
        try:
            for response in self.handlers.drive(header, session.inbox):
                kind = response.WhichOneof("kind")
                self._post(_Outgoing(route, _reply_map("Drive", request_id, codec.to_dict(response),
                                                       last=kind == "status"),
                                     session=session, droppable=kind == "frame"))
        except AvatarError as error:
            self._post(_Outgoing(route, _error_map("Drive", request_id, error), session=session))
        except Exception as exc:  # noqa: BLE001
            self._post(_Outgoing(route, _error_map("Drive", request_id, internal_error(exc)),
                                 session=session))
        finally:
            self._post(_Outgoing(route, None, after=lambda: self._forget(key)))
            self._drive_threads.discard(threading.current_thread())

    def _forget(self, key: tuple) -> None:
        with self._sessions_lock:
            self._sessions.pop(key, None)

    # -- outbox ------------------------------------------------------------------------
    def _post(self, out: _Outgoing) -> None:
        """From any thread: queue a reply (or just an `after` action) for the loop thread."""
        self._outbox.append(out)
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock:
            try:
                self._wake_tx.send(b"", zmq.NOBLOCK)
            except (zmq.Again, zmq.ZMQError):
                pass  # the loop is already awake (or closed)

    def _reply(self, route, kind, request_id, body=None, error: AvatarError | None = None) -> None:
        """From the loop thread: send one reply now."""
        reply = _error_map(kind, request_id, error) if error else _reply_map(kind, request_id, body)
        self._send(_Outgoing(route, reply))


def _reply_map(kind: str | None, request_id: Any, body: dict, last: bool = True) -> dict:
    return {"kind": kind, "request_id": request_id, "body": body, "last": last}


def _error_map(kind: str | None, request_id: Any, error: AvatarError) -> dict:
    return {"kind": kind, "request_id": request_id, "last": True,
            "error": {"code": error.code, "message": error.message}}


def create_server(service: AvatarService | RuntimeHandlers, endpoint: str = "tcp://127.0.0.1:0",
                  limits: BridgeLimits | None = None, security: Security = Security(),
                  workers: int = 8) -> tuple[ZmqServer, str]:
    """Build (not start) a ZMQ server; returns (server, bound endpoint e.g. tcp://127.0.0.1:40124)."""
    handlers = (service if isinstance(service, RuntimeHandlers)
                else RuntimeHandlers(service, limits or BridgeLimits()))
    server = ZmqServer(handlers, endpoint, security, workers)
    return server, server.endpoint
