"""Driving an avatar: video frames solved on the runtime, or a take played back. No bpy here.

`SolvePipeline` owns a worker thread and its own connection. The main thread pushes video
frames (Blender float pixels); the worker PNG-encodes them and keeps up to `window`
SolveMotion calls in flight, then hands the solved samples back in frame order through
`poll()`. One frame is always decoded ahead, so the runtime never waits for Blender.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np

from .client import Client, ServerError, Settings
from .imaging import blender_pixels_to_rgb8, encode_png
from .motion import MotionSample

# Error codes that cost one frame (no face in it, an undecodable frame), not the drive.
FRAME_ERRORS = frozenset({"FAILED_PRECONDITION", "INVALID_ARGUMENT"})


@dataclass(frozen=True)
class Skipped:
    """A frame the runtime could not solve; the drive goes on."""

    sequence: int
    reason: str


@dataclass(frozen=True)
class Finished:
    """Every pushed frame has been answered."""

    solved: int
    skipped: int
    elapsed_s: float


Event = Union[MotionSample, Skipped, Finished, ServerError]


@dataclass(frozen=True)
class _Frame:
    sequence: int
    timecode: float
    pixels: np.ndarray  # Blender float RGBA, row 0 = bottom
    width: int
    height: int


def png_level(address: str) -> int:
    """zlib level for frames sent to `address`: none on this machine, where bytes cost
    nothing and compression costs milliseconds per frame; fast compression elsewhere."""
    if address.startswith(("ipc://", "inproc://")):
        return 0
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return 0 if host in ("127.0.0.1", "localhost", "::1") else 1


class SolvePipeline:
    """Video frames -> SolveMotion on a worker thread -> MotionSamples, in frame order."""

    def __init__(self, settings: Settings, avatar_id: str, window: int = 1):
        self.settings = settings
        self.avatar_id = avatar_id
        self.window = max(1, int(window))
        self._png_level = png_level(settings.address)
        self._inbox: queue.SimpleQueue[_Frame | None] = queue.SimpleQueue()
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._pushed = 0    # main thread only
        self._answered = 0  # main thread only
        self._thread = threading.Thread(target=self._run, name="avatar-runtime: solve", daemon=True)

    # -- main thread -----------------------------------------------------------------------
    def start(self) -> "SolvePipeline":
        self._thread.start()
        return self

    @property
    def room(self) -> int:
        """Frames to push now: enough to keep `window` calls busy plus one waiting."""
        return self.window + 1 - (self._pushed - self._answered)

    def push(self, sequence: int, timecode: float, pixels: np.ndarray, width: int, height: int) -> None:
        self._inbox.put(_Frame(sequence, timecode, pixels, width, height))
        self._pushed += 1

    def close(self) -> None:
        """No more frames: the worker finishes the pending ones, then reports Finished."""
        self._inbox.put(None)

    def cancel(self) -> None:
        self._cancel.set()
        self._inbox.put(None)

    def poll(self) -> list[Event]:
        """Events since the last poll: samples and skips in frame order, then Finished or an error."""
        events = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return events
            if isinstance(event, (MotionSample, Skipped)):
                self._answered += 1
            events.append(event)

    # -- worker thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            with Client(self.settings) as client:
                self._serve(client)
        except ServerError as error:
            self._events.put(error)
        except Exception as exc:  # noqa: BLE001 - reported in the UI, never lost
            self._events.put(ServerError("INTERNAL", f"solving failed: {type(exc).__name__}: {exc}"))

    def _serve(self, client: Client) -> None:
        started = time.monotonic()
        in_flight: dict[int, int] = {}    # request_id -> sequence
        order: deque[int] = deque()       # sequences in push order, not yet handed back
        ready: dict[int, Event] = {}      # sequence -> answer waiting for earlier frames
        solved = skipped = 0
        closing = False
        while not self._cancel.is_set():
            while not closing and len(in_flight) < self.window:
                try:
                    frame = self._inbox.get(timeout=0.0 if in_flight else 0.02)
                except queue.Empty:
                    break
                if frame is None:
                    closing = True
                    break
                rgb = blender_pixels_to_rgb8(frame.pixels, frame.width, frame.height)
                image = encode_png(rgb, self._png_level)
                request_id = client.send_solve_motion(image, self.avatar_id, frame.sequence, frame.timecode)
                in_flight[request_id] = frame.sequence
                order.append(frame.sequence)
            if not in_flight:
                if closing:
                    self._events.put(Finished(solved, skipped, time.monotonic() - started))
                    return
                continue
            try:
                reply = client.receive(0.005)
            except ServerError as error:
                if error.request_id not in in_flight or error.code not in FRAME_ERRORS:
                    raise
                sequence = in_flight.pop(error.request_id)
                ready[sequence] = Skipped(sequence, error.message)
                skipped += 1
            else:
                if reply is None:
                    continue
                sequence = in_flight.pop(reply.request_id)
                ready[sequence] = MotionSample.from_body(reply.body)
                solved += 1
            while order and order[0] in ready:
                self._events.put(ready.pop(order.popleft()))


class Playback:
    """Recorded samples released in real time by their timecodes (the first one at once)."""

    def __init__(self, samples: Sequence[MotionSample], clock: Callable[[], float] = time.monotonic):
        self._samples = sorted(samples, key=lambda s: s.timecode)
        self._clock = clock
        self._start = clock()
        self._next = 0

    @property
    def done(self) -> bool:
        return self._next >= len(self._samples)

    def poll(self) -> list[MotionSample]:
        if self.done:
            return []
        now = self._clock() - self._start + self._samples[0].timecode
        due = []
        while self._next < len(self._samples) and self._samples[self._next].timecode <= now:
            due.append(self._samples[self._next])
            self._next += 1
        return due
