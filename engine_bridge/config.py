"""Transport settings shared by both servers: limits, auth token, address checks."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from avatar_runtime.errors import AvatarError, Unauthenticated

MiB = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 64 * MiB


def bearer_token(value: str | None) -> str | None:
    """The token of an `authorization` value: scheme `Bearer` in any case (RFC 7235)."""
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class DeadlineExceeded(AvatarError):
    """A client kept a stream open without sending what it must (header, frames)."""

    code = "DEADLINE_EXCEEDED"


@dataclass(frozen=True)
class BridgeLimits:
    """Caps each server enforces before a request reaches the service."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest request or reply on the wire, both directions (gRPC and ZMQ)."""
    max_drive_sessions: int = 16
    """Drive sessions open at once, over both transports together."""
    max_drive_sessions_per_client: int = 8
    """Drive sessions one client (a gRPC connection, a ZeroMQ socket) may hold at once."""
    max_pending_headers: int = 256
    """gRPC Drive streams opened but still waiting for their header, all clients together
    (each costs no thread, only memory; per client the cap is max_drive_sessions_per_client)."""
    max_fps: float = 0.0
    """Frames per second one drive session may render; 0 = no cap."""
    header_timeout_s: float = 10.0
    """How long a new gRPC Drive stream may wait before sending its header."""
    idle_timeout_s: float = 60.0
    """A drive session with no input (frames or end) for this long is closed."""
    stream_window: int = 8
    """Replies of one ZeroMQ stream queued for a peer before the server waits for it to read."""
    stall_timeout_s: float = 30.0
    """A streaming reply (ExportMesh, CreateAvatar) whose client reads nothing for this long
    is ended with RESOURCE_EXHAUSTED."""


@dataclass(frozen=True)
class Security:
    """Optional bearer token (required off loopback), TLS for gRPC, CURVE for ZMQ."""

    token: str | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    curve_secret_key: bytes | None = None

    def check_token(self, presented: str | None) -> None:
        """Raise Unauthenticated unless no token is configured or `presented` matches it."""
        if self.token is None:
            return
        if presented is None:
            raise Unauthenticated("a token is required: send 'authorization: Bearer <token>' "
                                  "(gRPC metadata) or a 'token' field (ZMQ)")
        if not hmac.compare_digest(presented.encode(), self.token.encode()):
            raise Unauthenticated("wrong token")


def host_of(address: str) -> str:
    """'127.0.0.1:50051' / '[::1]:0' / 'tcp://host:5555' / 'ipc://x' -> host ('' for local kinds)."""
    if "://" in address:
        parts = urlsplit(address)
        if parts.scheme in ("ipc", "inproc"):
            return ""
        return parts.hostname or address.split("://", 1)[1].rsplit(":", 1)[0]
    if address.startswith("unix:"):
        return ""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host.strip("[]")


def is_loopback(address: str) -> bool:
    host = host_of(address)
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', '0.0.0.0' parse; names and wildcards other than localhost do not


def require_token_off_loopback(address: str, security: Security) -> None:
    """Refuse (ValueError) to bind a non-loopback address without a token."""
    if not is_loopback(address) and not security.token:
        raise ValueError(f"refusing to listen on {address}: it is not a loopback address, so a "
                         "token is required (--token); bind 127.0.0.1 for local use")
