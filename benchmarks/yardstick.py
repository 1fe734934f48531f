"""Google's MediaPipe Face Landmarker (blendshapes + facial transformation matrix) as an
independent yardstick for the runtime's solver. Read from ../shared/reference/, never
copied into the project; `load()` returns None (saying why) when it is absent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TASK = Path(__file__).resolve().parents[2] / "shared" / "reference" / "face_landmarker.task"


@dataclass(frozen=True)
class Reading:
    blendshapes: dict[str, float]  # ARKit name -> score (no tongueOut)
    rotation: np.ndarray           # [3, 3] head-to-camera rotation, OpenGL camera axes
    landmarks: np.ndarray          # [478, 3] pixels (x right, y down, z in x's scale)


class Yardstick:
    def __init__(self, task: Path = TASK):
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions

        options = FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(task)),
                                        output_face_blendshapes=True,
                                        output_facial_transformation_matrixes=True, num_faces=1)
        self._landmarker = FaceLandmarker.create_from_options(options)

    def read(self, rgb: np.ndarray) -> Reading | None:
        """The face's reading, or None when the yardstick finds no face."""
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect(image)
        if not result.face_blendshapes:
            return None
        h, w = rgb.shape[:2]
        shapes = {c.category_name: float(c.score) for c in result.face_blendshapes[0]}
        shapes.pop("_neutral", None)
        matrix = np.asarray(result.facial_transformation_matrixes[0], np.float64)
        rotation = matrix[:3, :3] / np.cbrt(np.linalg.det(matrix[:3, :3]))
        points = np.array([(p.x * w, p.y * h, p.z * w) for p in result.face_landmarks[0]], np.float32)
        return Reading(shapes, rotation, points)


def load(task: Path = TASK) -> Yardstick | None:
    if not task.exists():
        print(f"[yardstick] {task} is absent: comparisons with Google's Face Landmarker are skipped")
        return None
    return Yardstick(task)
