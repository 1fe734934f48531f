"""The README's main job: `avatar-runtime demo` writes frames, videos, a contact sheet and a .glb."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np

from avatar_runtime.motion.clips import builtin_clip


def test_demo_writes_every_output(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "engine_bridge.cli", "demo", "--out", str(out),
                          "--size", "128"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[demo] done" in run.stdout + run.stderr

    frames = sorted((out / "frames").glob("frame_*.png"))
    assert len(frames) == len(builtin_clip("demo"))
    first = cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED)
    assert first.shape == (128, 128, 4)
    assert first[..., 3].max() == 255 and first[0, 0, 3] == 0  # head opaque, corner empty
    middle = cv2.imread(str(frames[len(frames) // 2]), cv2.IMREAD_UNCHANGED)
    assert not np.array_equal(first, middle)  # the clip moves the face

    video = cv2.VideoCapture(str(out / "preview.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)
    assert cv2.imread(str(out / "contact_sheet.png")).shape == (3 * 128, 4 * 128, 3)
    assert (out / "turntable.gif").stat().st_size > 0
    assert (out / "avatar.glb").read_bytes()[:4] == b"glTF"
