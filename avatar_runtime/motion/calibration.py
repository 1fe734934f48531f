"""Each avatar's measured expression response, kept with the avatar.

Measuring takes a few seconds (one render + detection per channel and level), too long
for `create`, so it runs on a background thread right after creation and is stored as
two tensors of the avatar. A solve that needs it before it is ready waits for it;
avatars stored without it are measured on first use.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import weakref
from concurrent.futures import Future
from dataclasses import replace
from typing import Callable

import numpy as np

from ..avatar import Avatar
from ..errors import AvatarNotFound
from ..lru import LruCache
from ..store import AvatarStore
from .response import ExpressionResponse

log = logging.getLogger(__name__)
# Tensor names under which an avatar keeps its response.
TRAVEL, LEVELS = "expression_response", "expression_response_levels"
VIEW_BIAS, AZIMUTHS, ELEVATIONS = "view_bias", "view_bias_azimuths", "view_bias_elevations"
IDLE_EXIT_S = 1.0  # a worker with nothing queued for this long ends; the next start() starts one
Measure = Callable[[Avatar, threading.Event], "ExpressionResponse | None"]


def stored_response(avatar: Avatar) -> ExpressionResponse | None:
    t = avatar.tensors
    if TRAVEL not in t or VIEW_BIAS not in t:
        return None
    return ExpressionResponse(np.asarray(t[LEVELS], np.float64), np.asarray(t[TRAVEL]),
                              np.asarray(t[VIEW_BIAS]), np.asarray(t[AZIMUTHS], np.float64),
                              np.asarray(t[ELEVATIONS], np.float64))


def response_tensors(response: ExpressionResponse) -> dict[str, np.ndarray]:
    return {TRAVEL: response.travel.astype(np.float32), LEVELS: response.levels.astype(np.float32),
            VIEW_BIAS: response.view_bias.astype(np.float32),
            AZIMUTHS: response.azimuths.astype(np.float32),
            ELEVATIONS: response.elevations.astype(np.float32)}


class ResponseCalibration:
    """`start(id)` queues a measurement; `get(id)` returns the response, waiting if needed."""

    def __init__(self, store: AvatarStore, measure: Measure, cache_size: int = 8):
        self._store, self._measure = store, measure
        self._pending: dict[str, Future] = {}
        self._ready: LruCache[ExpressionResponse] = LruCache(cache_size)
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None  # running while measurements are queued
        self._atexit = False

    def start(self, avatar_id: str) -> Future:
        with self._lock:
            future = self._pending.get(avatar_id)
            if future is None:
                future = self._pending[avatar_id] = Future()
                self._queue.put(avatar_id)
                if self._worker is None:
                    # A daemon worker, stopped at exit between two detections: a process
                    # never waits seconds to finish a measurement it can redo later.
                    self._worker = threading.Thread(target=self._run, name="response-calibration",
                                                    daemon=True)
                    self._worker.start()
                    if not self._atexit:
                        atexit.register(_stop_worker, weakref.ref(self))
                        self._atexit = True
            return future

    def get(self, avatar_id: str) -> ExpressionResponse:
        """The avatar's response (AvatarNotFound if it is deleted meanwhile)."""
        return self._ready.get_or_make(avatar_id, lambda: self._stored_or_measured(avatar_id))

    def _stored_or_measured(self, avatar_id: str) -> ExpressionResponse:
        response = stored_response(self._store.get(avatar_id))
        return response if response is not None else self.start(avatar_id).result()

    def forget(self, avatar_id: str) -> None:
        """Drop what is known of a deleted avatar. A queued measurement is cancelled; a
        running one ends in AvatarNotFound (its result is never stored)."""
        with self._lock:
            future = self._pending.pop(avatar_id, None)
        self._ready.pop(avatar_id)
        if future is not None:
            future.cancel()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(None)
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                avatar_id = self._queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                # An idle worker ends rather than wait forever: no thread is left running
                # (or blocking an exit) in a process that has nothing to measure.
                with self._lock:
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            if avatar_id is None:
                return
            with self._lock:
                future = self._pending.get(avatar_id)
            if future is None or not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._calibrate(avatar_id))
            except BaseException as exc:  # the waiting solve reports it
                future.set_exception(exc)
            finally:
                with self._lock:
                    self._pending.pop(avatar_id, None)

    def _calibrate(self, avatar_id: str) -> ExpressionResponse:
        avatar = self._store.get(avatar_id)
        stored = stored_response(avatar)
        if stored is not None:
            return stored
        log.info("measuring the detector's response to avatar %s (once, a few seconds)", avatar_id)
        response = self._measure(avatar, self._stop)
        if response is None:
            raise RuntimeError("the runtime is shutting down")
        tensors = {**avatar.tensors, **response_tensors(response)}
        if not self._store.put(replace(avatar, tensors=tensors), replace_only=True):
            raise AvatarNotFound(f"avatar {avatar_id!r} was deleted")
        return response


def _stop_worker(ref: weakref.ref) -> None:
    calibration = ref()
    if calibration is not None:
        calibration.close(timeout=1.0)
