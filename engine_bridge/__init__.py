"""Transports for avatar-runtime: gRPC and ZeroMQ servers, the msgpack codec, clients, CLI.

Nothing here computes: every request is translated into one `AvatarService` call.
The client facade lives in `engine_bridge.client` (`connect(...)`).
"""
