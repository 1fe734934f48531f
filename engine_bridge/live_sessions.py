"""The drive sessions running now, as an operator sees them: fps, latency, drops, last frame."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

EMA = 0.1  # weight of the newest frame in the running fps / render-time averages


@dataclass
class LiveSession:
    session_id: str
    avatar_id: str
    transport: str
    client: str
    width: int
    height: int
    started_at: float = field(default_factory=time.time)
    rendered: int = 0
    refused: int = 0
    fps: float = 0.0
    render_ms: float = 0.0
    _last_at: float = 0.0
    _latest: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def frame(self, rgba: np.ndarray, render_ms: float) -> None:
        """A frame was rendered (`rgba` is kept by reference as the preview: no copy)."""
        now = time.perf_counter()
        with self._lock:
            if self._last_at:
                instant = 1.0 / max(now - self._last_at, 1e-6)
                self.fps = instant if self.rendered < 2 else (1 - EMA) * self.fps + EMA * instant
            self.render_ms = render_ms if not self.rendered else (1 - EMA) * self.render_ms + EMA * render_ms
            self._last_at, self._latest = now, rgba
            self.rendered += 1

    def latest(self) -> np.ndarray | None:
        with self._lock:
            return self._latest

    def summary(self, dropped: int = 0) -> dict:
        with self._lock:
            return {"session_id": self.session_id, "avatar_id": self.avatar_id,
                    "transport": self.transport, "client": self.client,
                    "width": self.width, "height": self.height, "started_at": self.started_at,
                    "frames_rendered": self.rendered, "frames_refused": self.refused,
                    "frames_dropped": dropped, "fps": round(self.fps, 2),
                    "render_ms": round(self.render_ms, 2)}


class LiveSessions:
    """Registry of open drive sessions (both transports)."""

    def __init__(self) -> None:
        self._sessions: dict[str, tuple[LiveSession, object]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def track(self, avatar_id: str, transport: str, client: str, width: int, height: int,
              inbox) -> Iterator[LiveSession]:
        session = LiveSession(uuid.uuid4().hex[:12], avatar_id, transport, client, width, height)
        with self._lock:
            self._sessions[session.session_id] = (session, inbox)
        try:
            yield session
        finally:
            with self._lock:
                self._sessions.pop(session.session_id, None)

    def list(self) -> list[dict]:
        with self._lock:
            entries = list(self._sessions.values())
        return [s.summary(max(0, inbox.received - s.rendered - inbox.rejected)) for s, inbox in entries]

    def get(self, session_id: str) -> LiveSession | None:
        with self._lock:
            entry = self._sessions.get(session_id)
        return entry[0] if entry else None
