"""`avatar-runtime serve`: the gRPC and ZeroMQ servers over one AvatarService.

    avatar-runtime serve --grpc 127.0.0.1:50051 --zmq tcp://127.0.0.1:5555 --data-dir DIR

Port 0 picks a free port. Once both servers listen, the first line of stdout names the
bound addresses (`grpc=127.0.0.1:40123 zmq=tcp://127.0.0.1:40124`, plus `curve=<public key>`
with CURVE on); logs go to stderr.
SIGTERM / SIGINT: readiness goes NOT_SERVING, new calls are refused, in-flight calls finish
(up to --grace seconds), then the process exits 0.

`--ray [--replicas N] [--ray-address ADDR]`: the same front ends, in front of AvatarService
replicas on a Ray cluster (engine_bridge/ray_serve.py); the first line adds `ray=<GCS address>`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from . import livelink
from .config import DEFAULT_MAX_MESSAGE_BYTES, BridgeLimits, Security, require_token_off_loopback

log = logging.getLogger(__name__)
TOKEN_ENV = "AVATAR_RUNTIME_TOKEN"


def add_parser(subparsers) -> None:
    """Register the `serve` subcommand."""
    p = subparsers.add_parser("serve", help="serve avatars over gRPC and ZeroMQ")
    p.add_argument("--grpc", default="127.0.0.1:50051", metavar="HOST:PORT",
                   help="gRPC listen address ('none' to disable; default: %(default)s)")
    p.add_argument("--zmq", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                   help="ZeroMQ ROUTER endpoint ('none' to disable; default: %(default)s)")
    p.add_argument("--http", default="none", metavar="HOST:PORT",
                   help="operator HTTP port: /healthz, /readyz, /metrics (Prometheus); "
                        "default: %(default)s (off)")
    p.add_argument("--data-dir", type=Path, default=Path("avatar_store"),
                   help="avatar store folder (default: ./%(default)s)")
    p.add_argument("--weights", type=Path, default=None,
                   help="portrait4d checkpoint folder (model.safetensors + config.json); "
                        "default: $AVATAR_PORTRAIT4D_WEIGHTS; without one, portrait4d is refused")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="largest request/reply on either transport (default: 64 MiB)")
    limits.add_argument("--max-avatars", type=int, default=1000, help="avatars kept in the store")
    limits.add_argument("--max-drive-sessions", type=int, default=16,
                        help="drive sessions open at once, both transports together")
    limits.add_argument("--max-fps", type=float, default=0.0,
                        help="frames per second one drive session may render (0 = no cap)")
    limits.add_argument("--grace", type=float, default=10.0,
                        help="seconds in-flight calls get to finish on shutdown")
    sec = p.add_argument_group("security")
    sec.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                     help=f"bearer token required on every call (default: ${TOKEN_ENV}); "
                          "mandatory when binding a non-loopback address")
    sec.add_argument("--tls-cert", type=Path, help="PEM certificate: serve gRPC over TLS")
    sec.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    sec.add_argument("--curve-secret-key", metavar="KEY_OR_FILE",
                     help="Z85 CURVE secret key (or a file holding it): encrypt ZeroMQ")
    scale = p.add_argument_group("scaling out (Ray Serve; needs the 'ray' extra)")
    scale.add_argument("--ray", action="store_true",
                       help="run the runtime as Ray Serve replicas behind these front ends")
    scale.add_argument("--replicas", type=int, default=2, help="replicas (default: %(default)s)")
    scale.add_argument("--max-replicas", type=int, default=None,
                       help="autoscale between --replicas and this many on load (default: fixed)")
    scale.add_argument("--replica-cpus", type=float, default=0.5,
                       help="CPUs each replica reserves (default: %(default)s); each takes one GPU "
                            "when the cluster has GPUs")
    scale.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="an existing Ray cluster (auto, HOST:PORT or ray://HOST:10001); "
                            "default: start a local one")
    livelink.add_arguments(p)
    p.set_defaults(func=run)


def _enabled(address: str | None) -> bool:
    return bool(address) and address.lower() != "none"


def _security(args: argparse.Namespace) -> Security:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    curve = args.curve_secret_key
    if curve and Path(curve).is_file():
        curve = Path(curve).read_text().strip()
    return Security(token=args.token or None,
                    tls_cert=args.tls_cert.read_bytes() if args.tls_cert else None,
                    tls_key=args.tls_key.read_bytes() if args.tls_key else None,
                    curve_secret_key=curve.encode() if curve else None)


def _stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def _ray_deployment(args: argparse.Namespace, runtime_limits, limits: BridgeLimits):
    """The runtime as Ray Serve replicas (engine_bridge/ray_serve.py), started or joined."""
    try:
        from .ray_serve import RayDeployment, ServeSettings
    except ImportError as exc:
        raise ImportError(f"{exc}; install the 'ray' extra: pip install -e '.[ray]'") from exc
    # Calls a drive session has in flight (one each) plus unary calls: room for all.
    settings = ServeSettings(args.data_dir, replicas=args.replicas, max_replicas=args.max_replicas,
                             replica_cpus=args.replica_cpus, limits=runtime_limits,
                             portrait4d_weights=args.weights,
                             max_queued_requests=4 * limits.max_drive_sessions)
    return RayDeployment(settings, address=args.ray_address)


def run(args: argparse.Namespace) -> int:
    """Start both servers, print their addresses, serve until SIGTERM/SIGINT."""
    try:
        security = _security(args)
        for address in (args.grpc, args.zmq, args.http):
            if _enabled(address):
                require_token_off_loopback(address, security)
    except (ValueError, OSError) as exc:
        print(f"avatar-runtime serve: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    _stop_on_signals(stop)

    from avatar_runtime.limits import Limits
    from avatar_runtime.service import AvatarService

    from . import grpc_server, zmq_server
    from .handlers import RuntimeHandlers
    from .ops_http import OpsHttpServer, Readiness

    limits = BridgeLimits(max_message_bytes=args.max_message_bytes,
                          max_drive_sessions=args.max_drive_sessions, max_fps=args.max_fps)
    runtime_limits = Limits(max_avatars=args.max_avatars)
    deployment = None
    if args.ray:
        try:
            deployment = _ray_deployment(args, runtime_limits, limits)
        except Exception as exc:  # noqa: BLE001 - no ray, bad settings, no cluster: say so, exit
            print(f"avatar-runtime serve: cannot start the Ray deployment: {exc}", file=sys.stderr)
            return 2
        service = deployment.service
        _stop_on_signals(stop)  # ray.init put its own (aborting) SIGTERM handler in place
    else:
        service = AvatarService(args.data_dir, runtime_limits, portrait4d_weights=args.weights)
    handlers = RuntimeHandlers(service, limits)
    readiness = Readiness()
    readiness.add("mediapipe warmed up")
    readiness.add("avatar store", service.store_ok)
    servers, bound = [], []
    if deployment is not None:
        servers.append(lambda grace: deployment.close())  # first in, so stopped last
    try:
        if _enabled(args.http):  # first: liveness answers while MediaPipe warms up
            http = OpsHttpServer(args.http, handlers, readiness, security).start()
            servers.append(http.stop)
            bound.append(f"http={http.address}")
        service.warm_up()
        readiness.done("mediapipe warmed up")
        if _enabled(args.grpc):
            server, port = grpc_server.create_server(handlers, args.grpc, security=security)
            server.start()
            servers.append(lambda grace, s=server: grpc_server.stop(s, grace))
            bound.append(f"grpc={args.grpc.rsplit(':', 1)[0]}:{port}")
        if _enabled(args.zmq):
            zserver, endpoint = zmq_server.create_server(handlers, args.zmq, security=security)
            zserver.start()
            servers.append(zserver.stop)
            bound.append(f"zmq={endpoint}")
            if security.curve_secret_key:  # what clients need as their curve_serverkey
                import zmq

                bound.append(f"curve={zmq.curve_public(security.curve_secret_key).decode()}")
        livelink_stops, livelink_bound = livelink.start(handlers, args)
        servers.extend(livelink_stops)
        bound.extend(livelink_bound)
        if deployment is not None:
            bound.append(f"ray={deployment.address}")
    except Exception as exc:  # noqa: BLE001 - bind failures: say which and exit
        print(f"avatar-runtime serve: cannot listen: {exc}", file=sys.stderr)
        for stop_server in servers:
            stop_server(0)
        return 2
    print(" ".join(bound), flush=True)
    log.info("serving %s (data dir %s)", " ".join(bound), args.data_dir)
    while not stop.wait(0.5):
        pass
    log.info("shutting down (grace %.1f s)", args.grace)
    readiness.shutting_down = True
    for stop_server in reversed(servers):  # the HTTP port last: /readyz says 503 meanwhile
        stop_server(args.grace)
    return 0
