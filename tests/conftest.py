"""Shared fixtures: one runtime with the astronaut avatar per test session (creation ~2 s)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from avatar_runtime.faces.image import encode_png


@pytest.fixture(scope="session")
def astronaut_png() -> bytes:
    return encode_png(data.astronaut())


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    from avatar_runtime.service import AvatarService

    return AvatarService(tmp_path_factory.mktemp("runtime"))


@pytest.fixture(scope="session")
def astronaut_id(service, astronaut_png) -> str:
    return service.create(astronaut_png, name="astronaut")["id"]


def over_grey(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA -> RGB over mid grey (what a detector should see)."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    return (rgba[..., :3] * alpha + 128 * (1 - alpha)).astype(np.uint8)


# The runtime's own background threads: response measurements, drive renders, creates.
BACKGROUND_THREADS = ("response-calibration", "drive-render", "create-avatar")


def wait_for_background_work(timeout: float = 120.0) -> None:
    """Join the runtime's background threads the tests started (measurement workers end
    once idle). In-process Blender (bpy) waits for this first: Blender expects one Python
    thread at work, and the real add-on never shares a process with the runtime."""
    import threading
    import time

    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name in BACKGROUND_THREADS and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


def pytest_sessionfinish(session, exitstatus):
    """Let background work finish before the interpreter shuts down: a daemon thread
    still inside native rendering code while Python finalizes can crash the process after
    every test passed."""
    wait_for_background_work(60.0)
