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

from . import codec
from .client import AvatarClient, BridgeError, SendWindow
from .generated import pb

RECV_HWM = 64


class ZmqClient(AvatarClient):
    """`ZmqClient("tcp://127.0.0.1:5555", token=..., curve_server_key=b"<z85 public key>")`."""

    def __init__(self, endpoint: str, token: str | None = None,
                 curve_server_key: bytes | None = None, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.token = token
        self.curve_server_key = curve_server_key
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._socket = self._new_socket()

    def _new_socket(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, RECV_HWM)
        if self.curve_server_key:
            public, secret = zmq.curve_keypair()
            sock.curve_serverkey = self.curve_server_key
            sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.connect(self.endpoint)
        return sock

    def close(self) -> None:
        with self._lock:
            self._socket.close(linger=0)

    # -- plumbing -------------------------------------------------------------------------
    def _envelope(self, kind: str, request_id: int, body: dict) -> bytes:
        envelope: dict[str, Any] = {"kind": kind, "request_id": request_id, "body": body}
        if self.token is not None:
            envelope["token"] = self.token
        return codec.pack(envelope)

    @staticmethod
    def _recv(sock: zmq.Socket, request_id: int, timeout: float | None) -> dict:
        """The next reply to `request_id` (replies to abandoned requests are skipped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not sock.poll(None if wait is None else int(wait * 1000)):
                raise BridgeError("DEADLINE_EXCEEDED", f"no reply within {timeout:g} s")
            reply = codec.unpack(sock.recv())
            if not isinstance(reply, dict) or reply.get("request_id") != request_id:
                continue
            error = reply.get("error")
            if error:
                raise BridgeError(str(error.get("code", "UNKNOWN")), str(error.get("message", "")))
            return reply

    def _call(self, kind: str, request, timeout) -> Iterator[dict]:
        with self._lock:
            request_id = next(self._ids)
            self._socket.send(self._envelope(kind, request_id, codec.to_dict(request)))
            while True:
                reply = self._recv(self._socket, request_id, timeout)
                yield reply
                if reply.get("last", True):
                    return

    def health(self, timeout: float = 5.0) -> str:
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
        sock = self._new_socket()
        request_id = next(self._ids)
        pipe = f"inproc://drive-{id(sock)}-{request_id}"
        rx = self._ctx.socket(zmq.PAIR)
        rx.bind(pipe)
        sender = threading.Thread(target=self._send_frames, args=(pipe, request_id, frames, window),
                                  name="zmq-drive-sender", daemon=True)
        try:
            sock.send(self._envelope("Drive", request_id, {"header": codec.to_dict(header)}))
            yield self._response(self._recv(sock, request_id, timeout))
            sender.start()
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(rx, zmq.POLLIN)
            while True:
                events = dict(poller.poll(None if timeout is None else int(timeout * 1000)))
                if not events:
                    raise BridgeError("DEADLINE_EXCEEDED", f"no drive reply within {timeout:g} s")
                if rx in events:
                    message = rx.recv()
                    if message.startswith(b"!"):
                        raise BridgeError("INVALID_ARGUMENT", message[1:].decode(errors="replace"))
                    sock.send(message)
                if sock in events:
                    response = self._response(self._recv(sock, request_id, 0))
                    yield response
                    if response.HasField("status"):
                        return
        finally:
            if window is not None:
                window.close()
            rx.close(linger=0)
            sock.close(linger=0)

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
