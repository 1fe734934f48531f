"""gRPC transport: `avatar.v1.AvatarRuntime` + grpc.health.v1 + reflection, on grpc.aio.

    server, port = create_server(handlers, "127.0.0.1:0")
    server.start(); ...; stop(server, grace=5)

The server runs on its own asyncio loop thread, so a stream that waits (a Drive header not
sent yet, a client not reading) holds no thread; blocking runtime work runs in a thread
pool. The servicer only translates (engine_bridge.handlers does the calls). Requests are
parsed by our own deserializers, so unparsable protobuf is INVALID_ARGUMENT with one
(rate-limited) log line. Health is open (liveness "" and readiness "avatar.v1.AvatarRuntime",
NOT_SERVING while shutting down); everything else, reflection included, needs the token
when one is configured.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from avatar_runtime.errors import AvatarError, InvalidArgument
from avatar_runtime.service import AvatarService

from .config import BridgeLimits, DeadlineExceeded, Security, bearer_token, is_loopback, \
    require_token_off_loopback
from .generated import pb
from .handlers import DriveInbox, RuntimeHandlers, SessionGate, internal_error
from .ratelog import RateLimitedLog

log = logging.getLogger(__name__)
bad_input_log = RateLimitedLog(log)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AvatarRuntime"].full_name
HEALTH_PREFIX = "/grpc.health.v1.Health/"
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]
_END = object()


class _EndedCallNoise(logging.Filter):
    """grpc logs an ERROR when a handler finishes after the core already ended its call (the
    client left, or a message over the cap was refused): nothing is wrong on our side, and any
    client can cause it at will, so it goes to the debug log instead of flooding the error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "ExecuteBatchError raised in core by servicer method" not in record.getMessage():
            return True
        log.debug("a call ended before its handler did: %s", record.getMessage()[:200])
        return False


logging.getLogger("grpc._cython.cygrpc").addFilter(_EndedCallNoise())


def status_code(error: AvatarError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message-size + keepalive options; clients use the same list."""
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes), *KEEPALIVE_OPTIONS]


@dataclass(frozen=True)
class Malformed:
    """What our deserializer returns for bytes that are not the expected message."""

    message_name: str
    reason: str

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"the request is not a valid {self.message_name} protobuf "
                               f"message ({self.reason})"[:300])


def _parser(cls: type) -> Callable[[bytes], Any]:
    def parse(data: bytes):
        try:
            return cls.FromString(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError and friends: bad client bytes
            return Malformed(cls.DESCRIPTOR.name, f"{type(exc).__name__}: {exc}")
    return parse


class AvatarRuntimeServicer:
    """Calls `RuntimeHandlers` from the asyncio loop; maps `AvatarError.code` to a status."""

    def __init__(self, handlers: RuntimeHandlers, pool: concurrent.futures.ThreadPoolExecutor):
        self.handlers = handlers
        self.limits = handlers.limits
        self._pool = pool
        # Streams waiting for their header: they hold no thread, but they are capped too.
        self._pending = SessionGate(self.limits.max_pending_headers,
                                    self.limits.max_drive_sessions_per_client,
                                    "Drive streams waiting for their header",
                                    ("max_pending_headers", "max_drive_sessions_per_client"))

    # -- plumbing ----------------------------------------------------------------------
    def _record(self, method: str, context):
        return self.handlers.metrics.request("grpc", method, context.peer() or "")

    async def _abort(self, context: grpc.aio.ServicerContext, exc: BaseException, record) -> None:
        if context.done():  # the call ended already (the client left, or grpc refused a message)
            record.fail("CANCELLED")
            return
        error = exc if isinstance(exc, AvatarError) else internal_error(exc, record.request_id)
        record.fail(error)
        if error.code != "INTERNAL":
            bad_input_log.warning("gRPC request refused: %s %s", error.code, error.message[:200])
        await context.abort(status_code(error), error.message)

    async def _unary(self, context, method: str, call: Callable, request):
        with self._record(method, context) as record:
            try:
                if isinstance(request, Malformed):
                    raise request.error()
                return await asyncio.get_running_loop().run_in_executor(self._pool, call, request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status
                await self._abort(context, exc, record)

    async def _stream(self, context, method: str, call: Callable[..., Iterator], request) -> AsyncIterator:
        with self._record(method, context) as record:
            try:
                if isinstance(request, Malformed):
                    raise request.error()
                async for item in self._iterate(call(request)):
                    yield item
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                await self._abort(context, exc, record)

    async def _iterate(self, items: Iterator) -> AsyncIterator:
        """A blocking iterator, advanced on the pool; closed on the pool when abandoned."""
        future = None
        try:
            while True:
                future = self._pool.submit(next, items, _END)
                item = await asyncio.wrap_future(future)
                if item is _END:
                    return
                yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                if future is not None and not future.done():  # still running: close after it
                    future.add_done_callback(lambda _: self._pool.submit(close))
                else:
                    self._pool.submit(close)

    # -- RPCs --------------------------------------------------------------------------
    # aio tells handler kinds apart by function type: these must be coroutine functions or
    # async generator functions themselves.
    async def CreateAvatar(self, request, context):
        async for event in self._stream(context, "CreateAvatar", self.handlers.create_avatar, request):
            yield event

    async def GetAvatar(self, request, context):
        return await self._unary(context, "GetAvatar", self.handlers.get_avatar, request)

    async def ListAvatars(self, request, context):
        return await self._unary(context, "ListAvatars", self.handlers.list_avatars, request)

    async def DeleteAvatar(self, request, context):
        return await self._unary(context, "DeleteAvatar", self.handlers.delete_avatar, request)

    async def RenderFrame(self, request, context):
        return await self._unary(context, "RenderFrame", self.handlers.render_frame, request)

    async def SolveMotion(self, request, context):
        return await self._unary(context, "SolveMotion", self.handlers.solve_motion, request)

    async def CalibrateNeutral(self, request, context):
        return await self._unary(context, "CalibrateNeutral", self.handlers.calibrate_neutral, request)

    async def ExportMesh(self, request, context):
        async for chunk in self._stream(context, "ExportMesh", self.handlers.export_mesh, request):
            yield chunk

    async def Drive(self, requests: AsyncIterator, context) -> AsyncIterator[pb.DriveResponse]:
        """Header (bounded wait, no thread held), then a reader task feeds the inbox
        (latest-wins) while the render loop runs on the pool."""
        client = context.peer() or ""
        inbox = DriveInbox(self.limits.idle_timeout_s)
        reader = None
        with self._record("Drive", context) as record:
            try:
                header, requests = await self._await_header(requests, client)
                record.fields["avatar_id"] = header.avatar_id
                plan = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self.handlers.start_drive, header)
                reader = asyncio.ensure_future(_read_frames(requests, inbox))
                async for response in self._iterate(self.handlers.drive(plan, inbox, client, "grpc")):
                    if response.HasField("status"):
                        record.fields["frames_rendered"] = response.status.frames_rendered
                    yield response
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                await self._abort(context, exc, record)
            finally:
                inbox.cancel()
                if reader is not None:
                    reader.cancel()

    async def _await_header(self, requests: AsyncIterator, client: str) -> tuple[pb.DriveHeader, AsyncIterator]:
        """The header and the iterator of what follows; caps checked before reading anything."""
        timeout = self.limits.header_timeout_s
        with self._pending.slot(client):
            requests = requests.__aiter__()
            try:
                first = await asyncio.wait_for(requests.__anext__(), timeout)
            except asyncio.TimeoutError:
                raise DeadlineExceeded(f"no Drive header within {timeout:g} s; the first message "
                                       "of a Drive stream must be a header") from None
            except StopAsyncIteration:
                raise InvalidArgument("the Drive stream ended before its header") from None
        if isinstance(first, Malformed):
            raise first.error()
        if first.WhichOneof("kind") != "header":
            got = first.WhichOneof("kind") or "an empty message"
            raise InvalidArgument(f"the first Drive message must be a header, got {got}")
        return first.header, requests


async def _read_frames(requests: AsyncIterator, inbox: DriveInbox) -> None:
    """Frames into the inbox until `end` or the client half-closes. A bad frame or a second
    header is a FrameError for the client; the session goes on."""
    try:
        async for request in requests:
            if isinstance(request, Malformed):
                bad_input_log.warning("gRPC Drive frame refused: %s", request.reason[:200])
                inbox.reject(0, request.error())
                continue
            kind = request.WhichOneof("kind")
            if kind == "frame":
                inbox.put(request.frame)
            elif kind == "end":
                inbox.end()
            else:
                what = "a second header" if kind == "header" else "a Drive request with nothing set"
                inbox.reject(0, InvalidArgument(f"{what} in an open drive session; send frames, then end"))
        inbox.end()
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - the client went away mid-stream
        inbox.cancel()


_CARDINALITY = {  # method -> (request streaming, response streaming)
    "CreateAvatar": (False, True), "GetAvatar": (False, False), "ListAvatars": (False, False),
    "DeleteAvatar": (False, False), "RenderFrame": (False, False), "SolveMotion": (False, False),
    "CalibrateNeutral": (False, False),
    "ExportMesh": (False, True), "Drive": (True, True),
}
_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _generic_handler(servicer: AvatarRuntimeServicer) -> grpc.GenericRpcHandler:
    methods = pb.DESCRIPTOR.services_by_name["AvatarRuntime"].methods_by_name
    handlers = {}
    for name, cardinality in _CARDINALITY.items():
        method = methods[name]
        request_cls = pb.__dict__[method.input_type.name]
        handlers[name] = _FACTORIES[cardinality](
            getattr(servicer, name), request_deserializer=_parser(request_cls),
            response_serializer=lambda message: message.SerializeToString())
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Every method but health needs the bearer token (when one is configured)."""

    def __init__(self, security: Security, metrics):
        self.security = security
        self.metrics = metrics

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        token = None
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                token = bearer_token(value)
        try:
            self.security.check_token(token)
        except AvatarError as error:
            bad_input_log.warning("gRPC %s refused: %s", details.method, error.message)
            self.metrics.refused("grpc", details.method.rsplit("/", 1)[-1], error)
            return _refusing(handler, error)
        return handler


def _refusing(handler: grpc.RpcMethodHandler, error: AvatarError) -> grpc.RpcMethodHandler:
    async def refuse(_request, context):
        await context.abort(status_code(error), error.message)

    factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    return factory(refuse, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)


_loop_lock = threading.Lock()
_shared_loop: asyncio.AbstractEventLoop | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    """The process's one loop thread for gRPC servers: grpc.aio binds its completion queue to
    every loop that uses it, and several loops in one process wake (and trip) each other."""
    global _shared_loop
    with _loop_lock:
        if _shared_loop is None:
            _shared_loop = asyncio.new_event_loop()
            threading.Thread(target=_shared_loop.run_forever, name="grpc-loop", daemon=True).start()
        return _shared_loop


class GrpcServer:
    """A grpc.aio server on the shared event-loop thread, started and stopped from sync code."""

    def __init__(self, handlers: RuntimeHandlers, address: str, security: Security, workers: int):
        self.handlers = handlers
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="grpc")
        self._loop = _event_loop()
        self._stopped = False
        try:
            self.port = self._run(self._build(address, security))
        except BaseException:
            self._pool.shutdown(wait=False)
            raise

    def _run(self, coroutine, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _build(self, address: str, security: Security) -> int:
        limits = self.handlers.limits
        self._server = grpc.aio.server(
            handlers=[_generic_handler(AvatarRuntimeServicer(self.handlers, self._pool))],
            interceptors=[TokenInterceptor(security, self.handlers.metrics)],
            options=[*channel_options(limits.max_message_bytes), ("grpc.so_reuseport", 0)])
        self.health_servicer = health.aio.HealthServicer()
        for name in ("", SERVICE_NAME):
            await self.health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health_servicer, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self._server)
        if security.tls_cert and security.tls_key:
            credentials = grpc.ssl_server_credentials([(security.tls_key, security.tls_cert)])
            port = self._server.add_secure_port(address, credentials)
        else:
            if security.token and not is_loopback(address):
                log.warning("gRPC on %s: the token travels in clear text; add --tls-cert/--tls-key",
                            address)
            port = self._server.add_insecure_port(address)
        if not port:
            raise OSError(f"could not bind gRPC server to {address}")
        return port

    def start(self) -> "GrpcServer":
        self._run(self._server.start())
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Readiness NOT_SERVING, refuse new calls, let in-flight calls finish, then close."""
        if self._stopped:
            return
        self._stopped = True
        self._run(self.health_servicer.enter_graceful_shutdown())
        self._run(self._server.stop(grace))
        self._pool.shutdown(wait=False, cancel_futures=True)


def create_server(service: AvatarService | RuntimeHandlers, address: str = "127.0.0.1:0",
                  limits: BridgeLimits | None = None, security: Security = Security(),
                  max_workers: int | None = None) -> tuple[GrpcServer, int]:
    """Build (not start) a gRPC server on `address`; returns (server, bound port).

    Pass a `RuntimeHandlers` to share drive-session limits with a ZMQ server.
    """
    require_token_off_loopback(address, security)
    handlers = (service if isinstance(service, RuntimeHandlers)
                else RuntimeHandlers(service, limits or BridgeLimits()))
    workers = max_workers or handlers.limits.max_drive_sessions * 2 + 16
    server = GrpcServer(handlers, address, security, workers)
    return server, server.port


def stop(server: GrpcServer, grace: float = 10.0) -> None:
    """Graceful shutdown: readiness NOT_SERVING, refuse new calls, let in-flight calls finish."""
    server.stop(grace)
