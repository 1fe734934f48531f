"""gRPC transport: `avatar.v1.AvatarRuntime` + grpc.health.v1 + reflection.

    server, port = create_server(service, "127.0.0.1:0")
    server.start(); ...; stop(server, grace=5)

The servicer only translates (engine_bridge.handlers does the calls). Health: service ""
is liveness, "avatar.v1.AvatarRuntime" readiness (NOT_SERVING while shutting down).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent import futures
from typing import Callable, Iterable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from avatar_runtime.errors import AvatarError, InvalidArgument
from avatar_runtime.service import AvatarService

from .config import BridgeLimits, DeadlineExceeded, Security, require_token_off_loopback
from .generated import pb, pb_grpc
from .handlers import DriveInbox, RuntimeHandlers, internal_error

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AvatarRuntime"].full_name
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]


def status_code(error: AvatarError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message-size + keepalive options; clients use the same list."""
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes), *KEEPALIVE_OPTIONS]


class AvatarRuntimeServicer(pb_grpc.AvatarRuntimeServicer):
    """Checks the token, calls `RuntimeHandlers`, maps `AvatarError.code` to a status."""

    def __init__(self, handlers: RuntimeHandlers, security: Security = Security()):
        self.handlers = handlers
        self.security = security

    # -- plumbing ----------------------------------------------------------------------
    def _authenticate(self, context: grpc.ServicerContext) -> None:
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                token = value[len("Bearer "):]
        self.security.check_token(token)

    def _abort(self, context: grpc.ServicerContext, exc: BaseException) -> None:
        error = exc if isinstance(exc, AvatarError) else internal_error(exc)
        context.abort(status_code(error), error.message)

    def _unary(self, context, call: Callable, request):
        try:
            self._authenticate(context)
            return call(request)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            self._abort(context, exc)

    def _stream(self, context, call: Callable[..., Iterable], *args) -> Iterator:
        try:
            self._authenticate(context)
            yield from call(*args)
        except GeneratorExit:
            raise
        except Exception as exc:  # noqa: BLE001
            self._abort(context, exc)

    # -- RPCs --------------------------------------------------------------------------
    def CreateAvatar(self, request, context):
        return self._stream(context, self.handlers.create_avatar, request)

    def GetAvatar(self, request, context):
        return self._unary(context, self.handlers.get_avatar, request)

    def ListAvatars(self, request, context):
        return self._unary(context, self.handlers.list_avatars, request)

    def DeleteAvatar(self, request, context):
        return self._unary(context, self.handlers.delete_avatar, request)

    def RenderFrame(self, request, context):
        return self._unary(context, self.handlers.render_frame, request)

    def SolveMotion(self, request, context):
        return self._unary(context, self.handlers.solve_motion, request)

    def ExportMesh(self, request, context):
        return self._stream(context, self.handlers.export_mesh, request)

    def Drive(self, request_iterator, context):
        return self._stream(context, self._drive, request_iterator, context)

    def _drive(self, requests: Iterator[pb.DriveRequest], context) -> Iterator[pb.DriveResponse]:
        """A reader thread feeds the inbox (latest-wins); this thread renders and replies."""
        inbox = DriveInbox(self.handlers.limits.idle_timeout_s)
        headers: queue.Queue = queue.Queue(maxsize=1)
        context.add_callback(inbox.cancel)
        threading.Thread(target=_read_drive, args=(requests, headers, inbox),
                         name="drive-reader", daemon=True).start()
        timeout = self.handlers.limits.header_timeout_s
        try:
            header = headers.get(timeout=timeout)
        except queue.Empty:
            raise DeadlineExceeded(f"no Drive header within {timeout:g} s; the first message of "
                                   "a Drive stream must be a header") from None
        if isinstance(header, AvatarError):
            raise header
        yield from self.handlers.drive(header, inbox)


def _read_drive(requests: Iterator[pb.DriveRequest], headers: queue.Queue, inbox: DriveInbox) -> None:
    """Header first, then frames into the inbox until `end` or the client half-closes."""
    seen_header = False
    try:
        for request in requests:
            kind = request.WhichOneof("kind")
            if not seen_header:
                if kind != "header":
                    got = kind or "an empty message"
                    headers.put(InvalidArgument(f"the first Drive message must be a header, got {got}"))
                    return
                seen_header = True
                headers.put(request.header)
            elif kind == "frame":
                inbox.put(request.frame)
            elif kind == "end":
                inbox.end()
            else:
                raise InvalidArgument(f"unexpected Drive message {kind or 'with nothing set'} "
                                      "after the header; send frames, then end")
        if not seen_header:
            headers.put(InvalidArgument("the Drive stream ended before its header"))
        inbox.end()
    except AvatarError as error:
        inbox.fail(error)
    except Exception:  # noqa: BLE001 - the client went away (RpcError) mid-stream
        if not seen_header:
            headers.put(InvalidArgument("the Drive stream failed before its header"))
        inbox.cancel()


def create_server(service: AvatarService | RuntimeHandlers, address: str = "127.0.0.1:0",
                  limits: BridgeLimits | None = None, security: Security = Security(),
                  max_workers: int | None = None) -> tuple[grpc.Server, int]:
    """Build (not start) a gRPC server on `address`; returns (server, bound port).

    Pass a `RuntimeHandlers` to share drive-session limits with a ZMQ server.
    """
    require_token_off_loopback(address, security)
    handlers = (service if isinstance(service, RuntimeHandlers)
                else RuntimeHandlers(service, limits or BridgeLimits()))
    limits = handlers.limits
    workers = max_workers or limits.max_drive_sessions * 2 + 16
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                         options=[*channel_options(limits.max_message_bytes), ("grpc.so_reuseport", 0)])
    pb_grpc.add_AvatarRuntimeServicer_to_server(AvatarRuntimeServicer(handlers, security), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    if security.tls_cert and security.tls_key:
        credentials = grpc.ssl_server_credentials([(security.tls_key, security.tls_cert)])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"could not bind gRPC server to {address}")
    server.health_servicer = health_servicer  # for stop(): readiness goes NOT_SERVING first
    server.handlers = handlers
    return server, port


def stop(server: grpc.Server, grace: float = 10.0) -> None:
    """Graceful shutdown: readiness NOT_SERVING, refuse new calls, let in-flight calls finish."""
    health_servicer = getattr(server, "health_servicer", None)
    if health_servicer is not None:
        health_servicer.enter_graceful_shutdown()
    server.stop(grace).wait()
