"""What the command line prints, as a user's terminal sees it: real CLI subprocesses."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "engine_bridge.cli"]
# absl/glog lines ("W0000 00:00:17963.. 4354 inference_feedback_manager.cc:114] ...") and
# TFLite's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
NATIVE = re.compile(r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|INFO: |WARNING: All log messages)", re.M)


def test_demo_with_a_missing_image_says_so_in_one_line(tmp_path):
    run = subprocess.run(CLI + ["demo", "--image", str(tmp_path / "missing.jpg"), "--out",
                                str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).strip().splitlines()
    print(lines)
    assert run.returncode != 0
    assert len(lines) == 1 and "missing.jpg" in lines[0] and "not found" in lines[0]
    assert not (tmp_path / "out").exists(), "nothing is started or written for a wrong path"


def _serve(tmp_path, *extra: str) -> str:
    """Start `serve`, wait for its address line, stop it; -> everything it wrote to stderr."""
    proc = subprocess.Popen(CLI + [*extra, "serve", "--grpc", "none", "--zmq", "tcp://127.0.0.1:0",
                                   "--data-dir", str(tmp_path / "store")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("zmq=tcp://127.0.0.1:"), first + proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    return err


def test_serve_keeps_mediapipe_start_up_lines_off_the_terminal(tmp_path):
    err = _serve(tmp_path)  # warm_up builds and runs the MediaPipe graphs
    print(err)
    assert not NATIVE.search(err), err
    assert "serving zmq=" in err  # the runtime's own log still shows


def test_verbose_shows_them(tmp_path):
    err = _serve(tmp_path, "--verbose")
    assert NATIVE.search(err), "with --verbose the native start-up lines come through"


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_goes_before_or_after_the_subcommand(where):
    from engine_bridge.cli import build_parser

    argv = ["--verbose", "demo"] if where == "before" else ["demo", "--verbose"]
    assert build_parser().parse_args(argv).verbose
    assert not build_parser().parse_args(["demo"]).verbose


def test_export_from_a_photo_prints_no_native_lines(tmp_path):
    from skimage import data

    from avatar_runtime.faces.image import encode_png

    photo = tmp_path / "astronaut.png"
    photo.write_bytes(encode_png(data.astronaut()))
    run = subprocess.run(CLI + ["export", "--image", str(photo), "--format", "ply", "--out",
                                str(tmp_path / "head.ply"), "--data-dir", str(tmp_path / "store")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not NATIVE.search(run.stdout + run.stderr), run.stdout + run.stderr
    assert (tmp_path / "head.ply").stat().st_size > 0
