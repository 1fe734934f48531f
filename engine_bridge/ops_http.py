"""The runtime's HTTP port for operators: health, metrics, and the operator page.

    avatar-runtime serve --http 127.0.0.1:8080 ...

- `/healthz`: 200 while the process serves (liveness; no token).
- `/readyz`: 200 once MediaPipe is warmed up and the avatar store answered, 503 before that
  and once shutdown began (readiness; no token). The body says which check is not ready.
- `/metrics`: Prometheus text format.
- `/`: the operator page (static; engine_bridge/operator/index.html), which calls
  `GET /api/avatars`, `POST /api/avatars?name=` (body: the photo's bytes),
  `GET /api/avatars/<id>/thumbnail.png`, `GET /api/sessions`,
  `GET /api/sessions/<id>/preview.jpg`.

With a token configured, everything but /healthz, /readyz and the static page needs
`Authorization: Bearer <token>`. Loopback by default; any other address needs the token.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Callable
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import cv2
import numpy as np
from prometheus_client import make_wsgi_app

from avatar_runtime.errors import AvatarError, InvalidArgument, LimitExceeded, NotFound
from avatar_runtime.faces.image import encode_png
from avatar_runtime.lru import LruCache
from avatar_runtime.render.camera import Camera

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


PAGE = Path(__file__).with_name("operator") / "index.html"
THUMBNAIL_SIZE = 128
HTTP_STATUS = {"INVALID_ARGUMENT": "400 Bad Request", "UNAUTHENTICATED": "401 Unauthorized",
               "NOT_FOUND": "404 Not Found", "FAILED_PRECONDITION": "422 Unprocessable Entity",
               "RESOURCE_EXHAUSTED": "413 Payload Too Large", "UNAVAILABLE": "503 Service Unavailable"}


class OpsHttpServer:
    """Health, metrics, the operator page and its API on a thread; `stop()` closes it."""

    def __init__(self, address: str, handlers, readiness: Readiness,
                 security: Security = Security()):
        require_token_off_loopback(address, security)
        host, _, port = address.rpartition(":")
        self.handlers = handlers
        self.readiness = readiness
        self.security = security
        self._metrics_app = make_wsgi_app(handlers.metrics.registry)
        self._thumbnails = LruCache(256)
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
        if path in ("/", "/index.html"):
            return _reply(start_response, "200 OK", PAGE.read_bytes(), "text/html; charset=utf-8")
        try:
            self.security.check_token(bearer_token(environ.get("HTTP_AUTHORIZATION")))
            if path == "/metrics":
                return self._metrics_app(environ, start_response)
            if path.startswith("/api/"):
                return self._api(environ, start_response, path[len("/api/"):].split("/"))
            raise NotFound("paths: / /healthz /readyz /metrics /api/avatars /api/sessions")
        except AvatarError as error:
            status = HTTP_STATUS.get(error.code, "500 Internal Server Error")
            body = json.dumps({"code": error.code, "message": error.message}) + "\n"
            return _reply(start_response, status, body.encode(), "application/json")

    def _api(self, environ, start_response, parts: list[str]):
        method = environ.get("REQUEST_METHOD", "GET")
        service = self.handlers.service
        if parts == ["avatars"] and method == "GET":
            return _json(start_response, {"avatars": service.list()})
        if parts == ["avatars"] and method == "POST":
            name = parse_qs(environ.get("QUERY_STRING", "")).get("name", [""])[0]
            return _json(start_response, service.create(self._body(environ), name=name))
        if len(parts) == 3 and parts[0] == "avatars" and parts[2] == "thumbnail.png":
            return _reply(start_response, "200 OK", self._thumbnail(parts[1]), "image/png")
        if parts == ["sessions"]:
            return _json(start_response, {"sessions": self.handlers.live.list()})
        if len(parts) == 3 and parts[0] == "sessions" and parts[2] == "preview.jpg":
            session = self.handlers.live.get(parts[1])
            rgba = session.latest() if session is not None else None
            if rgba is None:
                raise NotFound(f"no frame of a live session {parts[1]!r} (ended, or none yet)")
            return _reply(start_response, "200 OK", _jpeg(rgba), "image/jpeg")
        raise NotFound(f"no {method} /api/{'/'.join(parts)}")

    def _body(self, environ) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise InvalidArgument("Content-Length must be a number") from None
        limit = self.handlers.limits.max_message_bytes
        if length > limit:
            raise LimitExceeded(f"the upload is {length} bytes; the limit is {limit} (max_message_bytes)")
        return environ["wsgi.input"].read(length)

    def _thumbnail(self, avatar_id: str) -> bytes:
        camera = Camera.orbit(width=THUMBNAIL_SIZE, height=THUMBNAIL_SIZE)
        return self._thumbnails.get_or_make(
            avatar_id, lambda: encode_png(self.handlers.service.render(avatar_id, None, camera).rgba))


def _jpeg(rgba: np.ndarray) -> bytes:
    """RGBA over mid grey as a JPEG (a preview: small and quick)."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    rgb = (rgba[..., :3] * alpha + 128 * (1 - alpha)).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return data.tobytes()


def _json(start_response, value) -> list[bytes]:
    return _reply(start_response, "200 OK", json.dumps(value).encode(), "application/json")


def _reply(start_response, status: str, data: bytes, content_type: str) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-store")])
    return [data]


def _text(start_response, status: str, body: str, content_type: str = "text/plain; charset=utf-8"):
    return _reply(start_response, status, body.encode(), content_type)
