"""What a running runtime is doing: Prometheus metrics and one structured log line per call.

Both transports report every call through `RuntimeMetrics.request(...)`, so the counters and
the request log agree whichever transport served it. Durations are in seconds (Prometheus
convention); the log line carries them in milliseconds for people.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from avatar_runtime.errors import AvatarError

request_log = logging.getLogger("avatar_runtime.requests")
FRAME_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.033, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


@dataclass
class CallRecord:
    """One call as it is being served; `code` is set when it fails."""

    transport: str
    method: str
    peer: str
    request_id: str
    code: str = "OK"
    fields: dict = field(default_factory=dict)

    def fail(self, error: AvatarError | str) -> None:
        self.code = error if isinstance(error, str) else error.code


class RuntimeMetrics:
    """The runtime's metrics in a registry of its own (several runtimes may share a process)."""

    def __init__(self, sessions: Callable[[], int] = lambda: 0, avatars: Callable[[], int] = lambda: 0):
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_rendered = Counter("avatar_runtime_frames_rendered", "Frames rendered",
                                       ["call"], registry=r)
        self.frames_dropped = Counter("avatar_runtime_frames_dropped",
                                      "Drive frames dropped (latest-wins, or a client too slow to take them)",
                                      registry=r)
        self.frame_errors = Counter("avatar_runtime_frame_errors", "Drive frames refused, by code",
                                    ["code"], registry=r)
        self.render_seconds = Histogram("avatar_runtime_render_seconds", "Deform + render time per frame",
                                        buckets=FRAME_BUCKETS, registry=r)
        self.encode_seconds = Histogram("avatar_runtime_encode_seconds", "Encode time per frame",
                                        buckets=FRAME_BUCKETS, registry=r)
        self.create_seconds = Histogram("avatar_runtime_create_seconds", "CreateAvatar time",
                                        buckets=CALL_BUCKETS, registry=r)
        self.requests = Counter("avatar_runtime_requests", "Calls by transport, method and status code",
                                ["transport", "method", "code"], registry=r)
        self.request_seconds = Histogram("avatar_runtime_request_seconds", "Call duration",
                                         ["transport", "method"], buckets=CALL_BUCKETS, registry=r)
        Gauge("avatar_runtime_drive_sessions", "Open drive sessions", registry=r).set_function(sessions)
        Gauge("avatar_runtime_avatars", "Stored avatars", registry=r).set_function(avatars)

    @contextmanager
    def request(self, transport: str, method: str, peer: str = "",
                request_id: str | None = None) -> Iterator[CallRecord]:
        """Count, time and log one call. An AvatarError escaping it sets the code; so does
        `record.fail(...)` for errors the transport answers itself."""
        record = CallRecord(transport, method, peer, request_id or uuid.uuid4().hex[:12])
        started = time.perf_counter()
        try:
            yield record
        except AvatarError as error:
            record.fail(error)
            raise
        except GeneratorExit:
            record.fail("CANCELLED")
            raise
        except BaseException:
            if record.code == "OK":
                record.fail("CANCELLED" if _is_cancellation() else "INTERNAL")
            raise
        finally:
            self.finish(record, time.perf_counter() - started)

    def finish(self, record: CallRecord, seconds: float) -> None:
        self.requests.labels(record.transport, record.method, record.code).inc()
        self.request_seconds.labels(record.transport, record.method).observe(seconds)
        line = {"request_id": record.request_id, "transport": record.transport,
                "method": record.method, "code": record.code, "ms": round(seconds * 1e3, 2),
                "peer": record.peer, **record.fields}
        request_log.info(json.dumps(line, sort_keys=True))

    def refused(self, transport: str, method: str, error: AvatarError, peer: str = "") -> None:
        """A call answered with an error before it reached a handler (bad envelope, token)."""
        self.finish(CallRecord(transport, method or "?", peer, uuid.uuid4().hex[:12], error.code), 0.0)


def _is_cancellation() -> bool:
    import asyncio
    import sys

    return isinstance(sys.exc_info()[1], asyncio.CancelledError)
