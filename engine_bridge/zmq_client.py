"""ZeroMQ implementation of the client facade (`engine_bridge.client.AvatarClient`).

Unary and streaming calls share one DEALER socket (guarded by a lock); each drive session
opens its own DEALER so frames stream to it alone.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Iterable, Iterator

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import codec
from .client import AvatarClient, BridgeError, SendWindow
from .config import DEFAULT_MAX_MESSAGE_BYTES
from .generated import pb

RECV_HWM = 64
# ZMTP heartbeats: a server that dies or hangs is noticed within ~1.5 s (docs/PROTOCOL.md).
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS, HEARTBEAT_TTL_MS = 300, 1200, 3000


class _Link:
    """A DEALER to the server with heartbeats, and a monitor that tracks whether it is up.

    `up` is None until the first handshake, then True / False as the connection comes and
    goes (libzmq reconnects by itself). A call fails with UNAVAILABLE when the connection
    drops while it waits, or when it is down and does not come back within the heartbeat
    timeout.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, curve_server_key: bytes | None):
        self.endpoint = endpoint
        self.up: bool | None = None
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, RECV_HWM)
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        self.sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)
        if curve_server_key:
            public, secret = zmq.curve_keypair()
            self.sock.curve_serverkey = curve_server_key
            self.sock.curve_publickey, self.sock.curve_secretkey = public, secret
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        self.sock.connect(endpoint)

    def update(self) -> bool:
        """Read pending monitor events; True if the connection dropped among them."""
        dropped = False
        while self.monitor.poll(0):
            event = parse_monitor_message(self.monitor.recv_multipart())["event"]
            self.up = event == zmq.EVENT_HANDSHAKE_SUCCEEDED
            dropped |= event == zmq.EVENT_DISCONNECTED
        return dropped

    def lost(self, detail: str) -> BridgeError:
        return BridgeError("UNAVAILABLE", f"lost the connection to {self.endpoint}: {detail}")

    def close(self) -> None:
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


class ZmqClient(AvatarClient):
    """`ZmqClient("tcp://127.0.0.1:5555", token=..., curve_server_key=b"<z85 public key>")`."""

    def __init__(self, endpoint: str, token: str | None = None,
                 curve_server_key: bytes | None = None, context: zmq.Context | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.endpoint = endpoint
        self.token = token
        self.curve_server_key = curve_server_key
        self.max_message_bytes = max_message_bytes
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._link = self._new_link()

    def _new_link(self) -> _Link:
        return _Link(self._ctx, self.endpoint, self.curve_server_key)

    def close(self) -> None:
        with self._lock:
            self._link.close()

    # -- plumbing -------------------------------------------------------------------------
    def _envelope(self, kind: str, request_id: int, body: dict) -> bytes:
        envelope: dict[str, Any] = {"kind": kind, "request_id": request_id, "body": body}
        if self.token is not None:
            envelope["token"] = self.token
        payload = codec.pack(envelope)
        if len(payload) > self.max_message_bytes:
            raise BridgeError("RESOURCE_EXHAUSTED", f"the {kind} request is {len(payload)} bytes, "
                              f"over max_message_bytes={self.max_message_bytes}; not sent")
        return payload

    @staticmethod
    def _recv(link: _Link, request_id: int, timeout: float | None) -> dict:
        """The next reply to `request_id` (replies to abandoned requests are skipped)."""
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        down_since = now if link.up is False else None
        poller = zmq.Poller()
        poller.register(link.sock, zmq.POLLIN)
        poller.register(link.monitor, zmq.POLLIN)
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if down_since is not None:  # wake up to give up on a connection that stays down
                wait = min(wait if wait is not None else 1.0, 0.1)
            events = dict(poller.poll(None if wait is None else int(wait * 1000)))
            if link.sock in events:  # replies that arrived before a drop are still good
                reply = codec.unpack(link.sock.recv())
                if not isinstance(reply, dict) or reply.get("request_id") != request_id:
                    continue
                error = reply.get("error")
                if error:
                    raise BridgeError(str(error.get("code", "UNKNOWN")), str(error.get("message", "")))
                return reply
            if link.monitor in events and link.update():
                raise link.lost(f"the server closed it or missed heartbeats for {HEARTBEAT_TIMEOUT_MS} ms")
            if link.up:
                down_since = None
            elif down_since is not None and time.monotonic() - down_since > HEARTBEAT_TIMEOUT_MS / 1000:
                raise link.lost(f"it is down and did not come back within {HEARTBEAT_TIMEOUT_MS} ms")
            if deadline is not None and time.monotonic() >= deadline:
                raise BridgeError("DEADLINE_EXCEEDED", f"no reply within {timeout:g} s")

    def _call(self, kind: str, request, timeout) -> Iterator[dict]:
        with self._lock:
            request_id = next(self._ids)
            self._link.update()  # drops before this call are history, but `up` tells the state
            self._link.sock.send(self._envelope(kind, request_id, codec.to_dict(request)))
            while True:
                reply = self._recv(self._link, request_id, timeout)
                yield reply
                if reply.get("last", True):
                    return

    def health(self, timeout: float = 5.0) -> str:
        """'SERVING' or 'NOT_SERVING' (open: no token needed)."""
        for reply in self._call("Health", pb.ListAvatarsRequest(), timeout):
            return str(reply["body"]["status"])
        raise BridgeError("UNAVAILABLE", "no health reply")

    def _unary(self, kind, request, response_cls, timeout):
        replies = list(self._call(kind, request, timeout))
        return codec.from_dict(response_cls, replies[-1]["body"])

    def _stream(self, kind, request, response_cls, timeout) -> Iterator:
        for reply in self._call(kind, request, timeout):
            yield codec.from_dict(response_cls, reply["body"])

    # -- drive ----------------------------------------------------------------------------
    def _drive(self, header: pb.DriveHeader, frames: Iterable[pb.MotionFrame],
               window: SendWindow | None, timeout) -> Iterator[pb.DriveResponse]:
        """A sender thread pulls `frames` (which may block: live sources) and hands them over
        an inproc pipe; this generator forwards them and yields the server's responses."""
        link = self._new_link()
        request_id = next(self._ids)
        pipe = f"inproc://drive-{id(link)}-{request_id}"
        rx = self._ctx.socket(zmq.PAIR)
        rx.bind(pipe)
        sender = threading.Thread(target=self._send_frames, args=(pipe, request_id, frames, window),
                                  name="zmq-drive-sender", daemon=True)
        try:
            link.sock.send(self._envelope("Drive", request_id, {"header": codec.to_dict(header)}))
            yield self._response(self._recv(link, request_id, timeout))
            sender.start()
            poller = zmq.Poller()
            poller.register(link.sock, zmq.POLLIN)
            poller.register(link.monitor, zmq.POLLIN)
            poller.register(rx, zmq.POLLIN)
            while True:
                events = dict(poller.poll(None if timeout is None else int(timeout * 1000)))
                if not events:
                    raise BridgeError("DEADLINE_EXCEEDED", f"no drive reply within {timeout:g} s")
                if rx in events:
                    message = rx.recv()
                    if message.startswith(b"!"):
                        raise BridgeError("INVALID_ARGUMENT", message[1:].decode(errors="replace"))
                    link.sock.send(message)
                if link.sock in events:
                    response = self._response(self._recv(link, request_id, 0))
                    yield response
                    if response.HasField("status"):
                        return
                elif link.monitor in events and link.update():
                    raise link.lost(f"the server closed it or missed heartbeats for "
                                    f"{HEARTBEAT_TIMEOUT_MS} ms")
        finally:
            if window is not None:
                window.close()
            rx.close(linger=0)
            link.close()

    def _send_frames(self, pipe: str, request_id: int, frames: Iterable[pb.MotionFrame],
                     window: SendWindow | None) -> None:
        tx = self._ctx.socket(zmq.PAIR)
        tx.setsockopt(zmq.LINGER, 0)
        tx.connect(pipe)
        try:
            for frame in frames:
                if window is not None and not window.acquire(frame.sequence):
                    return
                tx.send(self._envelope("Drive", request_id, {"frame": codec.to_dict(frame)}))
            tx.send(self._envelope("Drive", request_id, {"end": {}}))
        except BridgeError as error:  # a frame over the message cap: the stream cannot go on
            try:
                tx.send(b"!" + error.message.encode())
            except zmq.ZMQError:
                pass
        except zmq.ZMQError:
            pass  # the stream is over (closed by the consumer)
        except Exception as exc:  # noqa: BLE001 - the frame source failed: end the stream
            try:
                tx.send(b"!" + f"frame source failed: {exc}".encode())
            except zmq.ZMQError:
                pass
        finally:
            tx.close(linger=0)

    @staticmethod
    def _response(reply: dict) -> pb.DriveResponse:
        return codec.from_dict(pb.DriveResponse, reply["body"])
