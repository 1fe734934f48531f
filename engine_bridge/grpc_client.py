"""gRPC implementation of the client facade (`engine_bridge.client.AvatarClient`)."""

from __future__ import annotations

from typing import Iterable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .client import AvatarClient, BridgeError, SendWindow
from .config import DEFAULT_MAX_MESSAGE_BYTES
from .generated import pb, pb_grpc
from .grpc_server import SERVICE_NAME, channel_options


def _bridge_error(exc: grpc.RpcError) -> BridgeError:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return BridgeError(code.name if code is not None else "UNKNOWN", details or "")


class GrpcClient(AvatarClient):
    """`GrpcClient("127.0.0.1:50051", token=..., root_certificates=...)`."""

    def __init__(self, target: str, token: str | None = None, tls: bool = False,
                 root_certificates: bytes | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        options = channel_options(max_message_bytes)
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.AvatarRuntimeStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def close(self) -> None:
        self._channel.close()

    def health(self, timeout: float = 5.0) -> str:
        """Readiness of the runtime service (open: no token needed)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout)
        except grpc.RpcError as exc:
            raise _bridge_error(exc) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def _unary(self, kind, request, response_cls, timeout):
        try:
            return getattr(self._stub, kind)(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _bridge_error(exc) from None

    def _stream(self, kind, request, response_cls, timeout) -> Iterator:
        try:
            yield from getattr(self._stub, kind)(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _bridge_error(exc) from None

    def _drive(self, header: pb.DriveHeader, frames: Iterable[pb.MotionFrame],
               window: SendWindow | None, timeout) -> Iterator[pb.DriveResponse]:
        def requests() -> Iterator[pb.DriveRequest]:
            yield pb.DriveRequest(header=header)
            for frame in frames:
                if window is not None and not window.acquire(frame.sequence):
                    return
                yield pb.DriveRequest(frame=frame)
            yield pb.DriveRequest(end=pb.DriveEnd())

        # `timeout` bounds each wait between messages, not the whole (open-ended) stream.
        call = self._stub.Drive(requests(), metadata=self._metadata)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise _bridge_error(exc) from None
        finally:
            call.cancel()
