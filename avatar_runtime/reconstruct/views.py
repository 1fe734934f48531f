"""Few-shot input: which photos and video frames an avatar is made from.

Every candidate (the photo, more photos, frames sampled from a video) is read for a face,
its sharpness (variance of the Laplacian over the face, at one scale), a rough yaw and
pitch from the landmarks, how neutral it looks (mouth closed, eyes open) and whether a
hand covers the face. Unusable ones are skipped with a reason; of the rest, the best of
each yaw/pitch cell is kept, so the views cover the head instead of repeating one pose. The photo sent as the main view
is always kept (the one-photo path is this with one candidate).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import InvalidArgument, LimitExceeded, NoFaceFound
from ..faces.detector import FaceAnalyzer, FaceObservation
from ..faces.image import fit_within

MAX_VIEWS = 10
VIDEO_CANDIDATES = 40      # frames read from a video, evenly spaced
MAX_UNCOUNTED_FRAMES = 1800  # read at most this many from a video that gives no frame count
BLUR_RATIO = 0.35          # sharper than this fraction of the sharpest view's, or skipped
YAW_CELL_DEG, PITCH_CELL_DEG = 12.0, 15.0
NOSE_TIP, RIGHT_CHEEK_EDGE, LEFT_CHEEK_EDGE, CHIN = 1, 234, 454, 152
EYES = (33, 263)
LIPS = (13, 14)
# Upper and lower lid midpoints and corners of each eye: an open eye's aperture is ~0.3 of
# its width, a closed one's under 0.1.
LIDS = ((159, 145, 33, 133), (386, 374, 362, 263))


@dataclass
class View:
    rgb: np.ndarray          # [H, W, 3] at the fitting size
    source: str              # "image", "image 2", "video frame 41"
    face: FaceObservation
    sharpness: float
    yaw_deg: float           # rough, in MotionFrame's head-rotation convention
    pitch_deg: float         # rough, likewise
    neutral: float           # 1 = mouth closed and eyes open, 0 = mouth wide open or eyes shut
    occluded: bool           # a hand covers the face

    @property
    def score(self) -> float:
        return self.sharpness * (0.5 + 0.5 * self.neutral)


@dataclass
class ViewSet:
    views: list[View]                                   # the main view first
    skipped: list[dict] = field(default_factory=list)   # {"source", "reason"}

    def report(self) -> dict:
        """What the avatar's meta records about its views."""
        return {"views": [{"source": v.source, "yaw_deg": round(v.yaw_deg, 1),
                           "pitch_deg": round(v.pitch_deg, 1)} for v in self.views],
                "skipped": self.skipped}


def video_frames(data: bytes, max_bytes: int, work_side: int,
                 count: int = VIDEO_CANDIDATES) -> list[tuple[int, np.ndarray]]:
    """(frame index, RGB) for up to `count` evenly spaced frames of a video file's bytes."""
    if len(data) > max_bytes:
        raise LimitExceeded(f"video is {len(data) / 1e6:.1f} MB; the limit max_video_bytes is "
                            f"{max_bytes / 1e6:.1f} MB")
    # OpenCV reads videos from files only.
    fd, path = tempfile.mkstemp(suffix=".video")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise InvalidArgument("video bytes could not be decoded (send an MP4, MOV, AVI or "
                                  "WebM file's bytes)")
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        # A stream that does not say how long it is (some WebM): read up to a cap, then pick.
        last = total - 1 if total > 0 else MAX_UNCOUNTED_FRAMES - 1
        wanted = set(np.linspace(0, last, min(count, last + 1)).round().astype(int).tolist())
        read, index = [], 0
        while index <= max(wanted):
            ok, bgr = capture.read()
            if not ok:
                break
            if index in wanted or total <= 0:
                read.append((index, bgr))
            index += 1
        capture.release()
        if total <= 0 and read:  # evenly spaced over what was there
            keep = np.linspace(0, len(read) - 1, min(count, len(read))).round().astype(int)
            read = [read[k] for k in sorted(set(keep.tolist()))]
        frames = [(i, fit_within(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), work_side)) for i, bgr in read]
    finally:
        os.unlink(path)
    if not frames:
        raise InvalidArgument("video has no decodable frame")
    return frames


def read_view(analyzer: FaceAnalyzer, rgb: np.ndarray, source: str) -> View | str:
    """The candidate as a View, or the reason it cannot be one."""
    try:
        face = analyzer.landmarks(rgb)
    except NoFaceFound:
        return "no face found"
    pts = face.landmarks[:, :2]
    x0, y0, x1, y1 = face.box
    occluded = any(_covers(hand, face.box) for hand in analyzer.hands(rgb))
    crop = cv2.cvtColor(rgb[max(int(y0), 0):int(y1), max(int(x0), 0):int(x1)], cv2.COLOR_RGB2GRAY)
    if crop.size == 0:
        return "face outside the image"
    crop = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA)
    sharpness = float(cv2.Laplacian(crop.astype(np.float32), cv2.CV_32F).var())
    width = pts[LEFT_CHEEK_EDGE, 0] - pts[RIGHT_CHEEK_EDGE, 0]
    across = (pts[NOSE_TIP, 0] - pts[RIGHT_CHEEK_EDGE, 0]) / max(width, 1.0)
    eyes_y = pts[list(EYES), 1].mean()
    down = (pts[NOSE_TIP, 1] - eyes_y) / max(pts[CHIN, 1] - eyes_y, 1.0)
    height = max(pts[CHIN, 1] - pts[10, 1], 1.0)
    mouth = abs(pts[LIPS[1], 1] - pts[LIPS[0], 1]) / height
    aperture = min(np.linalg.norm(pts[up] - pts[down]) / max(np.linalg.norm(pts[a] - pts[b]), 1.0)
                   for up, down, a, b in LIDS)
    # Scales read off renders of a known head turned by known angles (within ~3 deg to 30).
    return View(rgb, source, face, sharpness, yaw_deg=float(40.0 * (2 * across - 1)),
                pitch_deg=float((down - 0.42) * 190.0),
                neutral=float(np.clip(1 - mouth / 0.08, 0, 1) * np.clip((aperture - 0.08) / 0.14, 0, 1)),
                occluded=occluded)


def choose_views(candidates: list[tuple[str, np.ndarray]], analyzer: FaceAnalyzer,
                 main_source: str | None, max_views: int = MAX_VIEWS) -> ViewSet:
    """Read every candidate and keep the views to fit; `main_source` (the photo, when one
    was sent) is the main view, else the most frontal sharp one."""
    read, skipped = [], []
    for source, rgb in candidates:
        view = read_view(analyzer, rgb, source)
        (skipped.append({"source": source, "reason": view}) if isinstance(view, str) else read.append(view))
    sharpest = max((v.sharpness for v in read), default=0.0)
    usable = []
    for view in read:
        if view.source == main_source:  # the photo sent as the main view is always used
            usable.append(view)
        elif view.occluded:
            skipped.append({"source": view.source, "reason": "a hand covers the face"})
        elif view.sharpness < BLUR_RATIO * sharpest:
            skipped.append({"source": view.source, "reason": "blurred"})
        else:
            usable.append(view)
    if not usable:
        raise NoFaceFound("no usable face in any of the images or video frames sent "
                          f"({len(candidates)} read); " + "; ".join(
                              f"{s['source']}: {s['reason']}" for s in skipped[:5]))
    # The main view: the sent photo, else the most frontal, sharp, neutral one (by yaw: the
    # pitch reading depends on the face's own proportions).
    main = next((v for v in usable if v.source == main_source), None) or max(
        usable, key=lambda v: v.score * v.neutral * np.cos(np.radians(min(abs(v.yaw_deg), 80))) ** 4)
    cells: dict[tuple[int, int], View] = {}
    for view in usable:
        if view is main:
            continue
        cell = (round(view.yaw_deg / YAW_CELL_DEG), round(view.pitch_deg / PITCH_CELL_DEG))
        if cell == (round(main.yaw_deg / YAW_CELL_DEG), round(main.pitch_deg / PITCH_CELL_DEG)):
            cell = cell + ("main",)
        best = cells.get(cell)
        if best is None or view.score > best.score:
            if best is not None:
                skipped.append({"source": best.source, "reason": "a better view of the same pose was kept"})
            cells[cell] = view
        else:
            skipped.append({"source": view.source, "reason": "a better view of the same pose was kept"})
    others = sorted(cells.values(), key=lambda v: -v.score)
    for view in others[max_views - 1:]:
        skipped.append({"source": view.source, "reason": f"more than {max_views} views"})
    return ViewSet([main] + others[:max_views - 1], skipped)


def _covers(hand: np.ndarray, box) -> bool:
    """A hand's landmarks [21, 2] reach well into the face box."""
    x0, y0, x1, y1 = box
    mx, my = 0.15 * (x1 - x0), 0.15 * (y1 - y0)
    inside = ((hand[:, 0] > x0 + mx) & (hand[:, 0] < x1 - mx) & (hand[:, 1] > y0 + my) & (hand[:, 1] < y1 - my))
    return inside.sum() >= 4
