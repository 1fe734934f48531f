"""How close a render is to its photo: silhouette IoU, PSNR/SSIM over a region, and an
identity distance from a face-recognition model that owes nothing to the runtime (dlib's
ResNet descriptor, the model behind `face_recognition`; the `bench` extra installs it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity

# dlib's own threshold: descriptors of one person lie closer than this (99.38% on LFW).
SAME_PERSON = 0.6
CHIN = 152  # MediaPipe face-mesh landmark at the bottom of the chin


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (nan when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def rows_above(shape: tuple[int, int], y: float) -> np.ndarray:
    """[H, W] bool: the rows above image row `y` (the head alone, when y is the chin)."""
    return np.broadcast_to((np.arange(shape[0]) < y)[:, None], shape)


def hull_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """[H, W] bool: the convex hull of pixel points [N, >=2] (the face, for landmarks)."""
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(points[:, :2]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def over(rgba: np.ndarray, background: np.ndarray | int) -> np.ndarray:
    """Straight-alpha RGBA [H, W, 4] uint8 composited over an RGB image or a grey level."""
    alpha = rgba[..., 3:].astype(np.float32) / 255
    return np.round(rgba[..., :3] * alpha + np.asarray(background, np.float32) * (1 - alpha)).astype(np.uint8)


def region_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, 8-bit) of two RGB images over the pixels where `mask` holds (nan: empty mask)."""
    if not mask.any():
        return float("nan")
    error = (a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2
    mse = error.mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def region_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """SSIM of two RGB images: skimage's local SSIM map (7x7 windows, so pixels up to 3 px
    outside `mask` take part) averaged over `mask` (nan: empty mask)."""
    if not mask.any():
        return float("nan")
    ys, xs = np.nonzero(mask)
    # Only the mask's box (plus the 7 px window) matters; the rest costs time.
    y0, y1 = max(ys.min() - 7, 0), ys.max() + 8
    x0, x1 = max(xs.min() - 7, 0), xs.max() + 8
    _, local = structural_similarity(a[y0:y1, x0:x1], b[y0:y1, x0:x1], channel_axis=2,
                                     data_range=255, full=True)
    return float(local[mask[y0:y1, x0:x1]].mean())


def _model_file(name: str) -> Path:
    # Found without importing face_recognition_models: its __init__ needs pkg_resources,
    # which current setuptools no longer ships.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise ImportError("face-recognition-models is not installed (pip install -e '.[bench]')")
    return Path(spec.submodule_search_locations[0]) / "models" / name


class IdentityModel:
    """dlib: HOG face detector, 5-point alignment, ResNet -> 128-d face descriptor.

    The 5-point aligner, not the 68-point one: that one's training set (iBUG 300-W) is
    licensed for research only."""

    def __init__(self):
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._aligner = dlib.shape_predictor(str(_model_file("shape_predictor_5_face_landmarks.dat")))
        self._encoder = dlib.face_recognition_model_v1(
            str(_model_file("dlib_face_recognition_resnet_model_v1.dat")))

    def descriptor(self, rgb: np.ndarray) -> np.ndarray | None:
        """[128] descriptor of the largest face in an RGB uint8 image; None when none is found."""
        rgb = np.ascontiguousarray(rgb)
        faces = self._detector(rgb, 1)  # one upsampling: faces down to ~40 px
        if not faces:
            return None
        face = max(faces, key=lambda r: r.area())
        return np.array(self._encoder.compute_face_descriptor(rgb, self._aligner(rgb, face)))


def identity_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Euclidean distance of two descriptors (< SAME_PERSON: one person); nan if either is missing."""
    return float("nan") if a is None or b is None else float(np.linalg.norm(a - b))


def load_identity_model() -> IdentityModel | None:
    """The model, or None (saying why) when dlib or its model files are not installed."""
    try:
        return IdentityModel()
    except ImportError as missing:
        print(f"[identity] {missing}: identity distances are skipped (pip install -e '.[bench]')")
        return None
