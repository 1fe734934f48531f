"""ZeroMQ transport: one ROUTER socket, msgpack maps mirroring the proto messages.

The wire format (envelope, streaming, Drive framing, errors, limits, heartbeats) is written
down for client authors in docs/PROTOCOL.md; this module is its implementation. In short:
requests `{"kind", "request_id", "token", "body"}`, replies `{"kind", "request_id", "body" or
"error": {"code", "message"}, "last"}`. Streamed replies are flow-controlled, never dropped: a
stream has at most `stream_window` replies between its producer and the socket, and a reply
the peer's queue cannot take yet waits in a per-peer backlog (in order) until it can. Only
Drive frames are droppable (latest-wins). A stream whose client reads nothing for
`stall_timeout_s` ends with RESOURCE_EXHAUSTED.
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

from avatar_runtime.errors import AvatarError, InvalidArgument, LimitExceeded, Unavailable
from avatar_runtime.service import AvatarService

from . import codec
from .config import BridgeLimits, Security, is_loopback, require_token_off_loopback
from .generated import pb
from .handlers import DrivePlan, DriveInbox, RuntimeHandlers, internal_error
from .ratelog import RateLimitedLog

log = logging.getLogger(__name__)
bad_input_log = RateLimitedLog(log)
ENVELOPE_KEYS = {"kind", "request_id", "token", "body"}
# kind -> (request message, handler method, streams replies)
CALLS: dict[str, tuple[type, str, bool]] = {
    "CreateAvatar": (pb.CreateAvatarRequest, "create_avatar", True),
    "GetAvatar": (pb.GetAvatarRequest, "get_avatar", False),
    "ListAvatars": (pb.ListAvatarsRequest, "list_avatars", False),
    "DeleteAvatar": (pb.DeleteAvatarRequest, "delete_avatar", False),
    "RenderFrame": (pb.RenderFrameRequest, "render_frame", False),
    "SolveMotion": (pb.SolveMotionRequest, "solve_motion", False),
    "CalibrateNeutral": (pb.CalibrateNeutralRequest, "calibrate_neutral", False),
    "ExportMesh": (pb.ExportMeshRequest, "export_mesh", True),
}
KINDS = (*CALLS, "Drive", "Health")
SEND_HWM = 16  # messages libzmq queues per peer; beyond it replies wait in our backlog
MAX_BACKLOG = 1024  # replies waiting for one peer (streams are bounded by their window)
# Drop peers that stopped answering pings (a host that vanished without closing). Longer than
# stall_timeout_s: a peer whose receive queue is full cannot read our PINGs' answers either,
# and such a slow reader must get RESOURCE_EXHAUSTED, not a silent disconnect.
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS = 5000, 45000
BACKLOG_POLL_MS = 5
CLOSE_LINGER_MS = 1000


class _Credit:
    """Flow control of one streamed call: at most `window` replies in flight to the socket."""

    def __init__(self, window: int):
        self._free = threading.Semaphore(window)
        self.peer_gone = False

    def wait(self, timeout: float) -> bool:
        """Room for one more reply; False after `timeout` s or once the peer is gone."""
        return self._free.acquire(timeout=timeout) and not self.peer_gone

    def release(self) -> None:
        self._free.release()


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
    credit: _Credit | None = None   # released once the reply leaves (or its peer is gone)
    purge: _Credit | None = None    # drop this stream's replies still waiting (it failed)
    after: Callable[[], None] | None = field(default=None, repr=False)


class ZmqServer:
    """Serve `handlers` on a ROUTER socket; `start()` runs the loop on a thread."""

    def __init__(self, handlers: RuntimeHandlers, endpoint: str = "tcp://127.0.0.1:0",
                 security: Security = Security(), workers: int = 8,
                 context: zmq.Context | None = None):
        require_token_off_loopback(endpoint, security)
        if security.token and not security.curve_secret_key and not is_loopback(endpoint):
            log.warning("ZeroMQ on %s: the token travels in clear text; add --curve-secret-key "
                        "to encrypt the connection", endpoint)
        self.handlers = handlers
        self.security = security
        self.limits = handlers.limits
        self._ctx = context or zmq.Context.instance()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        self._router.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
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
        self._backlog: dict[bytes, deque[_Outgoing]] = {}  # loop thread only
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
        while (self._outbox or self._backlog) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._closed.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5.0)
        else:
            self._close_sockets()

    def _close_sockets(self) -> None:
        # The last replies (a drive's status) may still sit in libzmq's queue: give them a
        # moment to leave instead of discarding them.
        self._router.close(linger=CLOSE_LINGER_MS)
        for sock in (self._wake_rx, self._wake_tx):
            sock.close(linger=0)

    # -- the socket loop (the only thread touching the ROUTER) --------------------------
    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        try:
            while not self._closed.is_set():
                events = dict(poller.poll(BACKLOG_POLL_MS if self._backlog else 1000))
                if self._wake_rx in events:
                    while self._wake_rx.poll(0):
                        self._wake_rx.recv()
                self._retry_backlog()
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
        """Send now, or queue behind the peer's backlog (drive frames are dropped instead)."""
        peer = out.route[0]
        waiting = self._backlog.get(peer)
        if out.purge is not None and waiting:
            for stale in [o for o in waiting if o.credit is out.purge]:
                waiting.remove(stale)
                stale.credit.release()
        if not waiting and self._try_send(out):
            return
        if out.droppable:
            if out.session is not None:
                out.session.output_dropped += 1
            self.handlers.metrics.frames_dropped.inc()
            return
        waiting = self._backlog.setdefault(peer, deque())
        if len(waiting) >= MAX_BACKLOG:
            bad_input_log.warning("a peer has %d replies waiting and reads none; dropping a reply",
                                  len(waiting))
            return
        waiting.append(out)

    def _retry_backlog(self) -> None:
        for peer in list(self._backlog):
            waiting = self._backlog[peer]
            while waiting and self._try_send(waiting[0]):
                waiting.popleft()
            if not waiting:
                del self._backlog[peer]

    def _try_send(self, out: _Outgoing) -> bool:
        """True once the reply is handed to libzmq (or can never be: its peer is gone)."""
        session = out.session
        reply = out.reply
        if session is not None and "status" in (reply.get("body") or {}):
            status = dict(reply["body"]["status"])
            status["frames_dropped"] += session.output_dropped
            status["frames_rendered"] -= session.output_dropped
            reply = {**reply, "body": {"status": status}}
        payload = codec.pack(reply)
        if len(payload) > self.limits.max_message_bytes:  # a backstop: requests are checked first
            payload = codec.pack(_error_map(reply.get("kind"), reply.get("request_id"), LimitExceeded(
                f"the reply is {len(payload)} bytes, over max_message_bytes="
                f"{self.limits.max_message_bytes}")))
        try:
            self._router.send_multipart([*out.route, payload], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # the peer disconnected
                self._peer_gone(out.route[0], out)
            else:
                log.warning("send failed: %s", exc)
        if out.credit is not None:
            out.credit.release()
        return True

    def _peer_gone(self, peer: bytes, out: _Outgoing) -> None:
        for item in (out, *self._backlog.pop(peer, ())):
            if item.credit is not None:
                item.credit.peer_gone = True
                if item is not out:
                    item.credit.release()
        with self._sessions_lock:
            gone = [s for key, s in self._sessions.items() if key[0] == peer]
        for session in gone:
            session.inbox.cancel()

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
            if kind == "Drive":
                self._on_drive(route, request_id, body)
                return
            if self._stopping.is_set() and kind != "Health":
                raise Unavailable("the server is shutting down; no new calls are accepted")
            self._dispatch(route, kind, request_id, body)
        except AvatarError as error:
            bad_input_log.warning("ZeroMQ request refused: %s %s", error.code, error.message[:200])
            with self._sessions_lock:
                open_session = kind == "Drive" and _valid_id(request_id)
                session = self._sessions.get((route[0], request_id)) if open_session else None
            if session is not None:  # within an open session: a per-frame error, it goes on
                session.inbox.reject(0, error)
                return
            self.handlers.metrics.refused("zmq", kind if kind in KINDS else "?", error, route[0].hex())
            self._reply(route, kind if isinstance(kind, str) else None,
                        request_id if _valid_id(request_id) else None, error=error)
        except Exception as exc:  # noqa: BLE001
            error = internal_error(exc)
            self.handlers.metrics.refused("zmq", kind if kind in KINDS else "?", error, route[0].hex())
            self._reply(route, None, request_id if _valid_id(request_id) else None, error=error)

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
        if not _valid_id(envelope.get("request_id")):
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
            return
        cls, method, streams = CALLS[kind]
        request = codec.from_dict(cls, body, "body")
        future = self._pool.submit(self._call, route, kind, request_id, method, request, streams)
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)

    def _call(self, route, kind, request_id, method: str, request, streams: bool) -> None:
        """Worker thread: run one handler, post its reply (or replies, flow-controlled)."""
        with self.handlers.metrics.request("zmq", kind, route[0].hex()) as record:
            self._run_call(route, kind, request_id, method, request, streams, record)

    def _run_call(self, route, kind, request_id, method: str, request, streams: bool, record) -> None:
        credit = _Credit(self.limits.stream_window) if streams else None
        result = None
        try:
            result = getattr(self.handlers, method)(request)
            if not streams:
                self._post(_Outgoing(route, _reply_map(kind, request_id, codec.to_dict(result))))
                return
            previous = None
            for message in result:
                if previous is not None:
                    self._post_streamed(route, _reply_map(kind, request_id, previous, last=False), credit)
                previous = codec.to_dict(message)
            self._post_streamed(route, _reply_map(kind, request_id, previous or {}), credit)
        except _PeerGone:
            record.fail("CANCELLED")  # nobody to tell
        except AvatarError as error:
            record.fail(error)
            self._post(_Outgoing(route, _error_map(kind, request_id, error), purge=credit))
        except Exception as exc:  # noqa: BLE001
            error = internal_error(exc, record.request_id)
            record.fail(error)
            self._post(_Outgoing(route, _error_map(kind, request_id, error), purge=credit))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _post_streamed(self, route: list[bytes], reply: dict, credit: _Credit) -> None:
        """Queue one reply of a stream once its window has room (the client is reading)."""
        timeout = self.limits.stall_timeout_s
        if not credit.wait(timeout):
            if credit.peer_gone:
                raise _PeerGone()
            raise LimitExceeded(f"the client read no reply of this stream for {timeout:g} s "
                                f"(stall_timeout_s); the stream is ended")
        self._post(_Outgoing(route, reply, credit=credit))

    # -- drive -------------------------------------------------------------------------
    def _on_drive(self, route: list[bytes], request_id: Any, body: Any) -> None:
        """A header opens a session; within one, nothing but `end` (or a fatal error) ends it:
        a bad frame or a second header is a per-frame FrameError and the session goes on."""
        key = (route[0], request_id)
        with self._sessions_lock:
            session = self._sessions.get(key)
        if session is None:
            request = codec.from_dict(pb.DriveRequest, body, "body")
            if request.WhichOneof("kind") != "header":
                raise InvalidArgument(f"no drive session with request_id {request_id!r} from this "
                                      "socket; send a Drive request with a header first")
            if self._stopping.is_set():
                raise Unavailable("the server is shutting down; no new calls are accepted")
            plan = self.handlers.start_drive(request.header)
            self._open_drive(key, route, request_id, plan)
            return
        try:
            request = codec.from_dict(pb.DriveRequest, body, "body")
        except AvatarError as error:
            session.inbox.reject(0, error)
            return
        kind = request.WhichOneof("kind")
        if kind == "frame":
            session.inbox.put(request.frame)
        elif kind == "end":
            session.inbox.end()
        else:
            what = "a second header" if kind == "header" else "a Drive request with nothing set"
            session.inbox.reject(0, InvalidArgument(
                f"{what} in an open drive session; send frames, then end"))

    def _open_drive(self, key: tuple, route: list[bytes], request_id: Any, plan: DrivePlan) -> None:
        session = _Session(route, request_id, DriveInbox(self.limits.idle_timeout_s))
        with self._sessions_lock:
            self._sessions[key] = session
        thread = threading.Thread(target=self._run_drive, args=(key, session, plan),
                                  name="zmq-drive", daemon=True)
        self._drive_threads.add(thread)
        thread.start()

    def _run_drive(self, key: tuple, session: _Session, plan: DrivePlan) -> None:
        route, request_id = session.route, session.request_id
        client = route[0].hex()
        record = None

        def forget() -> None:
            self._forget(key)

        # The last reply forgets the session as it leaves, in the loop thread: a message the
        # client sends once it has that reply is never taken for part of the ended session.
        try:
            with self.handlers.metrics.request("zmq", "Drive", client) as record:
                record.fields["avatar_id"] = plan.avatar_id
                for response in self.handlers.drive(plan, session.inbox, client, "zmq"):
                    kind = response.WhichOneof("kind")
                    if kind == "status":
                        record.fields["frames_rendered"] = response.status.frames_rendered
                    self._post(_Outgoing(route, _reply_map("Drive", request_id, codec.to_dict(response),
                                                           last=kind == "status"),
                                         session=session, droppable=kind == "frame",
                                         after=forget if kind == "status" else None))
        except AvatarError as error:
            self._post(_Outgoing(route, _error_map("Drive", request_id, error), session=session, after=forget))
        except Exception as exc:  # noqa: BLE001
            error = internal_error(exc, record.request_id if record is not None else None)
            self._post(_Outgoing(route, _error_map("Drive", request_id, error), session=session, after=forget))
        finally:
            self._post(_Outgoing(route, None, after=forget))  # no last reply (the peer went away)
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
        """From the loop thread: send one reply now (or behind the peer's backlog)."""
        reply = _error_map(kind, request_id, error) if error else _reply_map(kind, request_id, body)
        self._send(_Outgoing(route, reply))


class _PeerGone(Exception):
    """The peer of a stream disconnected: stop producing."""


def _valid_id(request_id: Any) -> bool:
    return not isinstance(request_id, bool) and isinstance(request_id, (int, str, type(None)))


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
