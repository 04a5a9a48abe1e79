"""End to end in headless Chromium: the page uploads a photo and draws faces and bar charts, skips
detection for a face crop, and streams a (fake) webcam live.

Needs Debian's chromium and chromium-driver (.ci/install_browser.sh) and selenium; skipped
without them. Takes a screenshot after a prediction: into the test's temporary folder, or over
docs/ui-screenshot.png with FERKIT_UPDATE_SCREENSHOT=1 (a test never changes the repository otherwise).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_infer import CLASSES, grace_hopper, make_checkpoint
from test_service import serve_in_thread

from ferkit.infer import Predictor, default_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "ui-screenshot.png"

webdriver = pytest.importorskip("selenium.webdriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    if os.environ.get("CI"):  # CI installs them (.ci/install_browser.sh): their absence there is a failure
        raise RuntimeError("CI: /usr/bin/chromium or /usr/bin/chromedriver missing; .ci/install_browser.sh should have installed them")
    pytest.skip("chromium and chromium-driver are not installed (run .ci/install_browser.sh)", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,800",
                 # a synthetic camera, allowed without a prompt: the webcam path runs headless
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    """The service on a free port, with the shipped model when there is one (a nicer screenshot)."""
    from ferkit.infer.service import create_app

    try:
        ckpt = default_checkpoint()
    except FileNotFoundError:
        ckpt = make_checkpoint(tmp_path_factory.mktemp("browser") / "model.pt")
    with serve_in_thread(create_app(Predictor(ckpt))) as url:
        yield url


def upload(browser, path: Path) -> str:
    """Choose `path` in the page's file input; returns the final state of the results panel."""
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "results").get_attribute("data-state") in ("done", "error"))
    return browser.find_element(By.ID, "results").get_attribute("data-state")


def test_upload_draws_faces_and_bars(browser, page_url, tmp_path):
    browser.get(page_url + "/")
    assert "ferkit" in browser.title
    photo = tmp_path / "grace_hopper.jpg"
    shutil.copy(grace_hopper(), photo)
    assert upload(browser, photo) == "done"
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .face-card")
    assert len(cards) == 1
    bars = cards[0].find_elements(By.CSS_SELECTOR, ".bar")
    assert [b.get_attribute("data-cls") for b in bars] == CLASSES
    widths = [float(b.get_attribute("style").split("width:")[1].split("%")[0]) for b in bars]
    assert sum(widths) == pytest.approx(100, abs=1)
    assert "1 face found" in browser.find_element(By.ID, "status").text
    assert "TTA" not in browser.find_element(By.ID, "model").text  # the service runs without TTA
    size = browser.execute_script("const c = document.getElementById('photo'); return [c.width, c.height];")
    assert size == [512, 600]
    # the box is drawn in the colour of its label: a pixel on its left edge has that colour
    label = cards[0].find_element(By.TAG_NAME, "h2").text.split(": ")[1].split()[0]
    box_x, box_y = (int(v) for v in cards[0].find_element(By.TAG_NAME, "small").text.split("box ")[1].split(", ")[:2])
    pixel, color = browser.execute_script(
        "const d = document.getElementById('photo').getContext('2d')"
        f".getImageData({box_x}, {box_y + 60}, 1, 1).data; return [Array.from(d), COLORS['{label}']];")
    assert pixel[:3] == [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    shot = SCREENSHOT if os.environ.get("FERKIT_UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    browser.set_window_size(1280, 860)
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_a_bad_file_shows_the_error(browser, page_url, tmp_path):
    browser.get(page_url + "/")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    assert upload(browser, bad) == "error"
    status = browser.find_element(By.ID, "status")
    assert "415" in status.text and "not an image" in status.text and "error" in status.get_attribute("class")


def test_a_face_crop_with_detection_skipped(browser, page_url, tmp_path):
    import numpy as np
    from PIL import Image

    browser.get(page_url + "/")
    crop = tmp_path / "crop48.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48)).astype(np.uint8)).save(crop)
    browser.find_element(By.ID, "nodetect").click()
    assert upload(browser, crop) == "done"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results .face-card")) == 1
    status = browser.find_element(By.ID, "status").text
    assert "1 face found" in status and "detector none" in status and "ms on the server" in status


def test_live_webcam_streams_frames_and_draws_the_answers(browser, page_url):
    """Chromium's fake camera (a moving test pattern) goes live; with detection skipped each frame
    is one face, so every answer draws a card; the page counts the frames it got answers for."""
    browser.get(page_url + "/")
    browser.find_element(By.ID, "nodetect").click()
    browser.find_element(By.ID, "webcam").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "live").is_displayed())
    browser.find_element(By.ID, "live").click()
    WebDriverWait(browser, 60).until(
        lambda d: int(d.find_element(By.ID, "results").get_attribute("data-frames") or 0) >= 3)
    status = browser.find_element(By.ID, "status").text
    assert status.startswith("live: 1 face found") and "ms round trip" in status and "detector none" in status
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results .face-card")) == 1
    browser.find_element(By.ID, "webcam").click()  # stop: the loop ends with the stream
    frames = int(browser.find_element(By.ID, "results").get_attribute("data-frames"))
    import time
    time.sleep(1.0)
    assert int(browser.find_element(By.ID, "results").get_attribute("data-frames")) <= frames + 1
