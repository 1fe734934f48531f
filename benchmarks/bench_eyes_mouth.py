"""Eyes and mouth on the astronaut and on random identities: blink closure, gaze travel,
render fps, create time, and a contact sheet (rows: yaw -30, 0, +30; columns: neutral,
blink, look left, jawOpen, tongueOut).

    .venv/bin/python benchmarks/bench_eyes_mouth.py [OUT_PREFIX]   (default bench_out/eyes_mouth)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from face_parts import face_crop, part_image, recentred  # noqa: E402

from avatar_runtime.faces.image import encode_png  # noqa: E402
from avatar_runtime.head.landmarks import load_landmark_embedding  # noqa: E402
from avatar_runtime.head.model import EYE_PARTS  # noqa: E402
from avatar_runtime.motion.clips import builtin_clip  # noqa: E402
from avatar_runtime.motion.frame import MotionFrame  # noqa: E402
from avatar_runtime.render.camera import Camera  # noqa: E402
from avatar_runtime.service import AvatarService  # noqa: E402

YAWS = (-30, 0, 30)
POSES = {
    "neutral": {},
    "blink": {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    "look left": {"eyeLookOutLeft": 1.0, "eyeLookInRight": 1.0},
    "jawOpen": {"jawOpen": 1.0},
    "tongueOut": {"jawOpen": 0.4, "tongueOut": 1.0},
}
LEFT_IRIS = 473  # MediaPipe's iris centre on the subject's left eye (image right)


def random_identities(head, n: int, seed: int = 0) -> list[np.ndarray]:
    """n identities drawn inside the fitter's bounds (locals +-1, phenotypes +-0.5), sd 0.25 (stronger
    random faces bury the eyeballs in the sockets, open or not)."""
    rng = np.random.default_rng(seed)
    bound = np.array([0.5 if name.startswith("phenotype:") else 1.0 for name in head.identity_names])
    return [np.clip(rng.normal(0, 0.25, head.num_identity), -1, 1) * bound for _ in range(n)]


def blink_open_fraction(head, identity: np.ndarray, camera: Camera) -> float:
    """Eye pixels visible at eyeBlink = 1 over those visible with the eyes open."""
    def eye_pixels(weights):
        frame = MotionFrame.from_weights(weights)
        return np.isin(part_image(head, recentred(head, head.shape(identity, frame.arkit)), camera),
                       EYE_PARTS).sum()
    return float(eye_pixels(POSES["blink"]) / max(eye_pixels({}), 1))


def gaze_travel_px(head, identity: np.ndarray, camera: Camera) -> float:
    """How far (pixels, +x = image right) the left iris centre moves at eyeLookOutLeft = 1."""
    embedding = load_landmark_embedding()

    def iris(weights):
        vertices = head.shape(identity, MotionFrame.from_weights(weights).arkit)
        return camera.project(embedding.points(head, vertices)[[LEFT_IRIS]].astype(np.float64))[0][0]
    return float(iris({"eyeLookOutLeft": 1.0})[0] - iris({})[0])


def contact_sheet(service, avatar_id: str) -> np.ndarray:
    rows = []
    for yaw in YAWS:
        cells = []
        for label, weights in POSES.items():
            rgba = service.render(avatar_id, MotionFrame.from_weights(weights),
                                  Camera.orbit(yaw_deg=yaw, width=512, height=512)).rgba
            rgb = (rgba[..., :3] * (rgba[..., 3:] / 255.0) + 96 * (1 - rgba[..., 3:] / 255.0))
            cell = np.ascontiguousarray(face_crop(rgb.astype(np.uint8)))
            if yaw == YAWS[0]:
                cv2.putText(cell, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
            cells.append(cell)
        rows.append(np.concatenate(cells, 1))
    return np.concatenate(rows, 0)


def main() -> None:
    prefix = Path(sys.argv[1] if len(sys.argv) > 1 else "bench_out/eyes_mouth")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    png = encode_png(data.astronaut())
    with tempfile.TemporaryDirectory() as root:
        service = AvatarService(root, calibrate_after_create=False)
        service.warm_up()
        start = time.perf_counter()
        avatar_id = service.create(png)["id"]
        print(f"create (fit, astronaut): {time.perf_counter() - start:.2f} s")
        head = service.head
        camera = Camera.orbit(width=512, height=512)
        astronaut = service.avatar(avatar_id).tensors["identity"]
        identities = [("template", np.zeros(head.num_identity)), ("astronaut", astronaut)]
        identities += [(f"random {i}", x) for i, x in enumerate(random_identities(head, 5))]
        for name, identity in identities:
            print(f"{name:>10}: blink open fraction {blink_open_fraction(head, identity, camera):.3f}, "
                  f"gaze travel (eyeLookOutLeft=1) {gaze_travel_px(head, identity, camera):+.1f} px")

        clip = builtin_clip("demo")
        for frame in clip[:5]:
            service.render(avatar_id, frame, camera)
        times = []
        for i in range(60):
            start = time.perf_counter()
            service.render(avatar_id, clip[i % len(clip)], camera)
            times.append(time.perf_counter() - start)
        ms = float(np.median(times)) * 1000
        print(f"render 512x512 (deform + render, demo clip): {1000 / ms:.1f} fps ({ms:.1f} ms, "
              f"min {min(times) * 1000:.1f}); load average {os.getloadavg()[0]:.2f}")
        sheet = contact_sheet(service, avatar_id)
        out = prefix.with_name(prefix.name + "_contact_sheet.png")
        cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
