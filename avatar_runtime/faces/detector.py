"""MediaPipe face mesh (478 landmarks incl. irises), selfie segmentation (alpha matte) and
hand landmarks (21 per hand: what may cover the face)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..errors import NoFaceFound
from .native_logs import native_logs_quieted

NUM_LANDMARKS = 478


@dataclass(frozen=True)
class FaceObservation:
    landmarks: np.ndarray  # [478, 3] pixels: x right, y down, z depth (x's scale, toward camera < 0)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 pixels
    num_faces: int         # faces found; the largest one is reported


class FaceAnalyzer:
    """Face landmarks and person matte for RGB images. Thread-safe (MediaPipe graphs are not)."""

    def __init__(self, max_faces: int = 4):
        self._max_faces = max_faces
        self._lock = threading.Lock()
        self._mesh = None
        self._segmenter = None
        self._hands = None
        self._warm: set[str] = set()

    def _graphs(self):
        with self._lock:
            if self._mesh is None:
                self._build_graphs()
        return self._mesh, self._segmenter

    def _build_graphs(self) -> None:
        with native_logs_quieted():
            import mediapipe as mp

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=self._max_faces, refine_landmarks=True,
                min_detection_confidence=0.5)
            self._segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
            self._hands = mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2,
                                                   model_complexity=0, min_detection_confidence=0.5)
            # The graphs open their models on worker threads, logging as they go: one run
            # each waits for that inside the quiet block.
            blank = np.zeros((64, 64, 3), np.uint8)
            self._mesh.process(blank)
            self._segmenter.process(blank)
            self._hands.process(blank)

    def _run(self, name: str, graph, rgb: np.ndarray, warmed=lambda result: True):
        """graph.process(rgb) under the lock, quieted until `warmed(result)`: the face
        mesh logs natively again on the first image with a face in it."""
        with self._lock:
            if name in self._warm:
                return graph.process(np.ascontiguousarray(rgb))
            with native_logs_quieted():
                result = graph.process(np.ascontiguousarray(rgb))
            if warmed(result):
                self._warm.add(name)
            return result

    def landmarks(self, rgb: np.ndarray) -> FaceObservation:
        """The largest face's 478 landmarks; NoFaceFound when there is none."""
        found = self.all_landmarks(rgb)
        if not found:
            raise NoFaceFound("no face found in the image; use a photo with one clearly "
                              "visible face (frontal or up to ~45 deg turned), at least ~100 px wide")
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for _, b in found]
        points, box = found[int(np.argmax(areas))]
        return FaceObservation(points, box, len(found))

    def all_landmarks(self, rgb: np.ndarray) -> list[tuple[np.ndarray, tuple]]:
        h, w = rgb.shape[:2]
        mesh, _ = self._graphs()
        result = self._run("mesh", mesh, rgb, lambda r: bool(r.multi_face_landmarks))
        faces = []
        for face in result.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], np.float32)
            box = (float(pts[:, 0].min()), float(pts[:, 1].min()),
                   float(pts[:, 0].max()), float(pts[:, 1].max()))
            faces.append((pts, box))
        return faces

    def hands(self, rgb: np.ndarray) -> list[np.ndarray]:
        """[21, 2] pixel landmarks (MediaPipe's hand order: wrist, then thumb to little
        finger, base to tip) of each hand found, at most two."""
        h, w = rgb.shape[:2]
        self._graphs()
        result = self._run("hands", self._hands, rgb, lambda r: bool(r.multi_hand_landmarks))
        return [np.array([(p.x * w, p.y * h) for p in hand.landmark], np.float32)
                for hand in result.multi_hand_landmarks or []]

    def matte(self, rgb: np.ndarray) -> np.ndarray:
        """Person matte [H, W] float32 in [0, 1]."""
        _, segmenter = self._graphs()
        result = self._run("segmenter", segmenter, rgb)
        return np.clip(result.segmentation_mask.astype(np.float32), 0.0, 1.0)


_shared: FaceAnalyzer | None = None


def shared_analyzer() -> FaceAnalyzer:
    """One analyzer per process: its graphs take ~100 ms to build."""
    global _shared
    if _shared is None:
        _shared = FaceAnalyzer()
    return _shared
