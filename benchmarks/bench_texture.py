"""Texture bake cleanliness on the astronaut: letterbox bands and a hand over the jaw.

Prints, per degraded photo, how far its bake strays from the clean photo's bake where it
matters (the crown for bands, the texels the hand hides for the hand), the create time,
and writes a contact sheet (rows: cases; columns: yaw -30, 0, +30) to OUT (default
bench_out/texture_contact_sheet.png).

    .venv/bin/python benchmarks/bench_texture.py [OUT]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from texture_cases import with_hand, with_top_band  # noqa: E402

from avatar_runtime.faces.detector import shared_analyzer  # noqa: E402
from avatar_runtime.reconstruct.fit_reconstructor import TEXTURE_SIZE, FitReconstructor  # noqa: E402
from avatar_runtime.reconstruct.texture import texel_map  # noqa: E402
from avatar_runtime.render.camera import Camera  # noqa: E402
from avatar_runtime.render.mesh_renderer import MeshRenderer  # noqa: E402

YAWS = (-30, 0, 30)
LUMA = np.array([0.299, 0.587, 0.114])


def crown_texels(head, tm) -> np.ndarray:
    """[N] bool: texels on top of the head (where a band over the crown lands)."""
    points = tm.surface @ head.template.astype(np.float64)
    return (tm.scalp > 0.95) & (points[:, 1] > 0.06)


def under_pixels(head, tm, fit, camera) -> np.ndarray:
    """[N, 2] where each texel lands in the photo."""
    return camera.project(tm.surface @ fit.vertices(head).astype(np.float64))[0]


def face_under_hand(mask: np.ndarray, head, tm, fit, camera) -> np.ndarray:
    """[N] bool: face texels (chin and up, the neck left out) facing the photo's camera
    whose projection lands on `mask` > 0.5."""
    from avatar_runtime.reconstruct.texture import _sample, _vertex_normals

    vertices = fit.vertices(head)
    points = tm.surface @ vertices.astype(np.float64)
    normals = tm.surface @ _vertex_normals(vertices, head.faces)
    facing = (normals * (camera.position - points)).sum(1) > 0
    on_face = (tm.surface @ head.template.astype(np.float64))[:, 1] > -0.105  # chin height
    return facing & on_face & (_sample(mask[..., None], under_pixels(head, tm, fit, camera))[:, 0] > 0.5)


def hand_copied(baked: np.ndarray, occluded_photo: np.ndarray, clean_baked: np.ndarray,
                pixels: np.ndarray) -> tuple[float, float]:
    """(fraction of texels whose bake reproduces the hand pixel they sit under within 8
    levels, fraction nearer that hand pixel than the clean photo's bake of the texel)."""
    from avatar_runtime.reconstruct.texture import _sample

    hand = _sample(occluded_photo.astype(np.float32), pixels)
    to_hand = np.abs(baked - hand).max(1)
    nearer = np.linalg.norm(baked - hand, axis=1) < np.linalg.norm(baked - clean_baked, axis=1)
    return float(np.mean(to_hand < 8)), float(np.mean(nearer))


def renders(reconstructor, avatar, size: int = 256) -> list[np.ndarray]:
    head = reconstructor.head
    renderer = MeshRenderer(head.faces, head.face_uvs, avatar.tensors["texture"])
    vertices = head.shape(avatar.tensors["identity"])
    out = []
    for yaw in YAWS:
        rgba = renderer.render(vertices, Camera.orbit(yaw, 0, width=size, height=size)).rgba
        alpha = rgba[..., 3:4] / 255.0
        out.append((rgba[..., :3] * alpha + 48 * (1 - alpha)).astype(np.uint8))
    return out


def texels(avatar, tm) -> np.ndarray:
    return avatar.tensors["texture"].reshape(-1, 3)[tm.texels].astype(np.float64)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench_out/texture_contact_sheet.png")
    analyzer = shared_analyzer()
    rec = FitReconstructor(analyzer)
    head, tm = rec.head, texel_map(rec.head, TEXTURE_SIZE)
    photo = data.astronaut()
    landmarks = analyzer.landmarks(photo).landmarks
    rec.create(photo, "warm")  # graph and cache start-up is not per avatar

    occluded, hand = with_hand(photo, landmarks)
    cases = {"clean": photo,
             "letterbox 48 rows": with_top_band(photo, 0, 48),
             "band over the crown": with_top_band(photo, 55, 40),
             "hand over the jaw": occluded}
    avatars, seconds = {}, {}
    for name, rgb in cases.items():
        start = time.perf_counter()
        avatars[name] = rec.create(rgb, name)
        seconds[name] = time.perf_counter() - start

    # "before": the same fits baked with the person matte alone (no bands, no hands).
    from avatar_runtime.reconstruct.fit import photo_camera
    from avatar_runtime.reconstruct.fit_reconstructor import PHOTO_FOV_DEG
    from avatar_runtime.reconstruct.texture import bake_texture

    def plain_bake(rgb):
        camera = photo_camera(rgb.shape[1], rgb.shape[0], PHOTO_FOV_DEG)
        fit = rec.fitter.fit(analyzer.landmarks(rgb).landmarks, camera)
        baked = bake_texture(head, fit.vertices(head), rgb, camera, analyzer.matte(rgb), TEXTURE_SIZE)
        return baked.reshape(-1, 3)[tm.texels].astype(np.float64)

    clean = texels(avatars["clean"], tm)
    crown = crown_texels(head, tm)
    print(f"crown texels: {crown.sum()}; clean crown luma {np.mean(clean[crown] @ LUMA):.1f}")
    for name in ("letterbox 48 rows", "band over the crown"):
        for when, t in (("before", plain_bake(cases[name])[crown]), ("after", texels(avatars[name], tm)[crown])):
            print(f"{name:20s} {when:6s} crown luma {np.mean(t @ LUMA):6.1f}  mean |diff| vs clean "
                  f"{np.abs(t - clean[crown]).mean():5.1f}  texels darker than 40: {np.mean((t @ LUMA) < 40):6.1%}")

    camera = photo_camera(photo.shape[1], photo.shape[0], PHOTO_FOV_DEG)
    fit = rec.fitter.fit(landmarks, camera)
    under = face_under_hand(hand, head, tm, fit, camera)
    pixels = under_pixels(head, tm, fit, camera)[under]
    c = clean[under]
    for when, t in (("before", plain_bake(occluded)[under]), ("after", texels(avatars["hand over the jaw"], tm)[under])):
        copied, nearer = hand_copied(t, occluded, c, pixels)
        print(f"hand over the jaw    {when:6s} {under.sum()} face texels under the hand: mean |diff| vs "
              f"clean {np.abs(t - c).mean():5.1f}; hand pixel copied (within 8 levels) {copied:6.1%}; "
              f"nearer the hand than the clean bake {nearer:6.1%}")
    print(f"hands found: clean photo {avatars['clean'].meta['hands_found']}, "
          f"hand photo {avatars['hand over the jaw'].meta['hands_found']}")
    print("create: " + ", ".join(f"{n} {t:.2f} s" for n, t in seconds.items()))

    sheet = np.concatenate([np.concatenate(renders(rec, avatars[n]), 1) for n in cases], 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"contact sheet (rows: {', '.join(cases)}; yaw {YAWS}): {out}")


if __name__ == "__main__":
    main()
