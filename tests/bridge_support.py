"""Helpers for the engine_bridge tests: real gRPC + ZMQ servers on ephemeral loopback ports."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

from engine_bridge import grpc_server, zmq_server
from engine_bridge.client import AvatarClient, connect
from engine_bridge.config import BridgeLimits, Security
from engine_bridge.handlers import RuntimeHandlers

TRANSPORTS = ("grpc", "zmq")


@dataclass
class Servers:
    handlers: RuntimeHandlers
    grpc_address: str  # grpc://127.0.0.1:PORT
    zmq_address: str   # tcp://127.0.0.1:PORT
    zmq: zmq_server.ZmqServer

    def address(self, transport: str) -> str:
        return self.grpc_address if transport == "grpc" else self.zmq_address

    def client(self, transport: str, **kwargs) -> AvatarClient:
        return connect(self.address(transport), **kwargs)


@contextlib.contextmanager
def running_servers(service, limits: BridgeLimits = BridgeLimits(),
                    security: Security = Security()) -> Iterator[Servers]:
    """Both servers over one RuntimeHandlers (shared session gate), stopped on exit."""
    handlers = RuntimeHandlers(service, limits)
    gserver, port = grpc_server.create_server(handlers, "127.0.0.1:0", security=security)
    gserver.start()
    zserver, endpoint = zmq_server.create_server(handlers, "tcp://127.0.0.1:0", security=security)
    zserver.start()
    try:
        yield Servers(handlers, f"grpc://127.0.0.1:{port}", endpoint, zserver)
    finally:
        zserver.stop(grace=2.0)
        grpc_server.stop(gserver, grace=2.0)
