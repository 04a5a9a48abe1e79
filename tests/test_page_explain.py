"""The page's heatmaps, in headless Chromium: with "show heatmaps" ticked, a photo comes back with each
face's occlusion heatmap drawn over it (and its note in the face's card); unticked, the same photo is
drawn without. Takes a screenshot: into the test's temporary folder, or over
docs/ui-heatmap-screenshot.png with FERKIT_UPDATE_SCREENSHOT=1.

Needs chromium, chromium-driver and selenium, as tests/test_browser.py (skipped without them).
"""
from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path

import pytest
from test_browser import CHROMEDRIVER, CHROMIUM, browser, upload  # noqa: F401  (the module's skips and fixture)
from test_infer import grace_hopper
from test_service import serve_in_thread

# isort: split
# After test_browser, whose import skips this module where selenium or chromium is missing.
from fastapi import FastAPI, File, Query, UploadFile  # module level: the endpoint's annotations are names
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "ui-heatmap-screenshot.png"


def explain_app(predictor):
    """The service, when its /predict takes explain=true; else the page's own files with a /predict
    that does what the service's hook does (`ferkit.infer.explain.add_heatmaps`), so that the page is
    tested either way."""
    from ferkit.infer.explain import add_heatmaps
    from ferkit.infer.io import decode_image
    from ferkit.infer.service import STATIC, create_app

    app = create_app(predictor)
    route = next(r for r in app.routes if getattr(r, "path", "") == "/predict")
    if "explain" in inspect.signature(route.endpoint).parameters:
        return app
    stub = FastAPI()
    stub.mount("/static", StaticFiles(directory=STATIC), name="static")
    stub.get("/")(lambda: FileResponse(STATIC / "index.html"))
    stub.get("/health")(predictor.describe)

    @stub.post("/predict")
    def predict(file: UploadFile = File(...), detect: bool = Query(True), explain: bool = Query(False)) -> dict:
        image = decode_image(file.file.read())
        found, crops = predictor.find_faces(image, detect)
        faces = predictor.faces(found, predictor.predict_crops(crops)) if len(crops) else []
        if explain:
            faces = add_heatmaps(predictor, faces, found, crops, image.shape, detect)
        return {"faces": faces, "width": int(image.shape[1]), "height": int(image.shape[0]),
                "message": f"{len(faces)} face{'s' if len(faces) != 1 else ''} found", "class_names": predictor.class_names,
                "detector": predictor.detector.name, "backend": predictor.backend, "ms": 0}
    return stub


@pytest.fixture(scope="module")
def page_url():
    from ferkit.infer import Predictor

    with serve_in_thread(explain_app(Predictor(threads=1))) as url:  # the shipped model
        yield url


def canvas_pixels(browser) -> list[int]:  # noqa: F811
    return browser.execute_script(
        "const c = document.getElementById('photo');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);")


def test_the_heatmap_is_drawn_over_the_face_on_request(browser, page_url, tmp_path):  # noqa: F811
    browser.get(page_url + "/")
    photo = tmp_path / "grace_hopper.jpg"
    shutil.copy(grace_hopper(), photo)
    browser.find_element(By.ID, "explain").click()
    assert upload(browser, photo) == "done"
    results = browser.find_element(By.ID, "results")
    assert results.get_attribute("data-heatmaps") == "1"
    card = browser.find_element(By.CSS_SELECTOR, "#results .face-card")
    assert "Heatmap: hiding the hottest part lowers p(" in card.find_element(By.CSS_SELECTOR, ".why").text
    with_heat = canvas_pixels(browser)
    shot = SCREENSHOT if os.environ.get("FERKIT_UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    browser.set_window_size(1280, 860)
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    browser.find_element(By.ID, "explain").click()  # unticked: the same photo again, without heatmaps
    WebDriverWait(browser, 20).until(lambda d: results.get_attribute("data-state") == "done"
                                     and results.get_attribute("data-heatmaps") == "0")
    assert not browser.find_elements(By.CSS_SELECTOR, "#results .why")
    without = canvas_pixels(browser)
    assert len(without) == len(with_heat) == 512 * 600 * 4
    changed = sum(a != b for a, b in zip(with_heat, without))
    assert changed > 1000  # the heat is drawn over the face, and only with the box ticked
