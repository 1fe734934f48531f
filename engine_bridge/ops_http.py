"""The runtime's HTTP port for operators: `/healthz`, `/readyz`, `/metrics` (Prometheus).

    avatar-runtime serve --http 127.0.0.1:8080 ...

- `/healthz`: 200 while the process serves (liveness; no token).
- `/readyz`: 200 once MediaPipe is warmed up and the avatar store answered, 503 before that
  and once shutdown began (readiness; no token). The body says which check is not ready.
- `/metrics`: Prometheus text format; needs `Authorization: Bearer <token>` when the
  runtime has a token.

Loopback by default; any other address needs the token (as the other transports).
"""

from __future__ import annotations

import json
import logging
import threading
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from avatar_runtime.errors import AvatarError

from .config import Security, bearer_token, require_token_off_loopback

log = logging.getLogger(__name__)


class Readiness:
    """What readiness waits for; each check is named so /readyz can say which is missing."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], bool]] = {}
        self._done: set[str] = set()
        self.shutting_down = False

    def add(self, name: str, check: Callable[[], bool] | None = None) -> None:
        """A check: a callable polled on each /readyz, or (None) one marked with `done`."""
        self._checks[name] = check or (lambda: name in self._done)

    def done(self, name: str) -> None:
        self._done.add(name)

    def status(self) -> tuple[bool, dict[str, bool]]:
        checks = {}
        for name, check in self._checks.items():
            try:
                checks[name] = bool(check())
            except Exception:  # noqa: BLE001 - a failing check means "not ready", not a 500
                log.warning("readiness check %s failed", name, exc_info=True)
                checks[name] = False
        checks["not shutting down"] = not self.shutting_down
        return all(checks.values()), checks


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("http %s", format % args)


class OpsHttpServer:
    """/healthz, /readyz and /metrics on a thread; `stop()` closes it."""

    def __init__(self, address: str, metrics_registry, readiness: Readiness,
                 security: Security = Security()):
        require_token_off_loopback(address, security)
        host, _, port = address.rpartition(":")
        self.readiness = readiness
        self.security = security
        self._metrics_app = make_wsgi_app(metrics_registry)
        self._server = make_server(host.strip("[]") or "127.0.0.1", int(port), self._app,
                                   server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self.address = f"{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    def start(self) -> "OpsHttpServer":
        self._thread.start()
        return self

    def stop(self, grace: float = 0.0) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the WSGI app ------------------------------------------------------------------------
    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            ready, checks = self.readiness.status()
            body = json.dumps({"ready": ready, "checks": checks}, sort_keys=True) + "\n"
            return _text(start_response, "200 OK" if ready else "503 Service Unavailable", body,
                         "application/json")
        if path == "/metrics":
            try:
                self.security.check_token(bearer_token(environ.get("HTTP_AUTHORIZATION")))
            except AvatarError as error:
                return _text(start_response, "401 Unauthorized", error.message + "\n")
            return self._metrics_app(environ, start_response)
        return _text(start_response, "404 Not Found", "paths: /healthz /readyz /metrics\n")


def _text(start_response, status: str, body: str, content_type: str = "text/plain; charset=utf-8"):
    data = body.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]
