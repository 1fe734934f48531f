"""The operator page in a real headless Chromium against a real `avatar-runtime serve`: it lists
an avatar created through the API (with its thumbnail), shows a live drive session and its
preview frame, and an uploaded photo creates an avatar."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from skimage import data

from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.render.camera import Camera
from engine_bridge.client import connect

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("operator")
    args = [sys.executable, "-m", "engine_bridge.cli", "serve", "--grpc", "none", "--zmq",
            "tcp://127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", str(data_dir)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addresses = dict(part.split("=", 1) for part in proc.stdout.readline().split())
    assert "http" in addresses, f"serve did not start (exit {proc.poll()})"
    yield addresses
    proc.kill()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert CHROMIUM and CHROMEDRIVER, "Debian's chromium and chromium-driver are needed (scripts/setup.sh)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1200,1400",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_operator_page_lists_previews_and_creates(runtime, browser, tmp_path, astronaut_png):
    with connect(runtime["zmq"]) as client:
        avatar = client.create_avatar(astronaut_png, name="on the page")
        stop = threading.Event()

        def slow_motion():  # a session that stays open while the page looks at it
            i = 0
            while not stop.is_set():
                yield MotionFrame.from_weights({"jawOpen": 0.5 + 0.5 * np.sin(i / 3)}, sequence=i)
                i += 1
                time.sleep(0.1)

        def drive():
            with connect(runtime["zmq"]) as driver_client:
                for _ in driver_client.drive(avatar["id"], slow_motion(), Camera.orbit(width=96, height=96)):
                    pass

        driving = threading.Thread(target=drive, daemon=True)
        driving.start()
        try:
            browser.get(f"http://{runtime['http']}/")
            wait = WebDriverWait(browser, 30, poll_frequency=0.2)
            card = wait.until(lambda b: b.find_element(
                By.CSS_SELECTOR, f'.avatar[data-id="{avatar["id"]}"][data-thumbnail="loaded"]'))
            assert "on the page" in card.text
            thumbnail = card.find_element(By.TAG_NAME, "img")
            assert browser.execute_script("return arguments[0].naturalWidth", thumbnail) == 128

            row = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#sessions tbody tr"))
            assert avatar["id"] in row.text and "zmq" in row.text and "96x96" in row.text
            preview = browser.find_element(By.ID, "preview")
            wait.until(lambda b: b.execute_script("return arguments[0].naturalWidth", preview) == 96)
            assert preview.get_attribute("data-session") == row.get_attribute("data-session")
            wait.until(lambda b: "avatar_runtime_frames_rendered_total" in b.find_element(By.ID, "metrics").text)
            browser.save_screenshot(str(tmp_path / "operator.png"))
        finally:
            stop.set()
            driving.join(10)

        photo = tmp_path / "mirrored.png"
        photo.write_bytes(encode_png(np.ascontiguousarray(data.astronaut()[:, ::-1])))
        browser.find_element(By.ID, "photo").send_keys(str(photo))
        browser.find_element(By.ID, "name").send_keys("uploaded")
        browser.find_element(By.ID, "upload").click()
        status = WebDriverWait(browser, 60, poll_frequency=0.2).until(
            lambda b: b.find_element(By.ID, "create-status").get_attribute("data-created"))
        created = client.get_avatar(status)
        assert created["name"] == "uploaded" and created["id"] != avatar["id"]
        WebDriverWait(browser, 30).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, f'.avatar[data-id="{status}"]'))

        # A bad upload is refused with the runtime's message, on the page.
        bad = tmp_path / "not-a-photo.png"
        bad.write_bytes(b"not an image")
        browser.find_element(By.ID, "photo").send_keys(str(bad))
        browser.find_element(By.ID, "upload").click()
        WebDriverWait(browser, 30).until(
            lambda b: "INVALID_ARGUMENT" in b.find_element(By.ID, "create-status").text)
