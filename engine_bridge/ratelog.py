"""Log lines for bad input, rate-limited so a flood of malformed requests cannot flood the log."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """At most `burst` lines per `period` seconds; the next line after a quiet spell says how
    many were left out."""

    def __init__(self, logger: logging.Logger, period_s: float = 10.0, burst: int = 5):
        self.logger = logger
        self.period_s = period_s
        self.burst = burst
        self._window_start = 0.0
        self._count = 0
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, message: str, *args) -> bool:
        """Log one line unless the budget of this period is spent; returns whether it logged."""
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= self.period_s:
                self._window_start, self._count = now, 0
            if self._count >= self.burst:
                self._suppressed += 1
                return False
            self._count += 1
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            message += f" ({suppressed} similar lines left out)"
        self.logger.warning(message, *args)
        return True
