"""The service's heatmaps (`POST /predict?explain=true`): each answer carries at most MAX_FACES heatmaps,
and 100 concurrent explain requests are all answered without the memory growing with them.

Skipped until service.py's /predict takes `explain` (the hook that calls `ferkit.infer.explain.add_heatmaps`).
"""
from __future__ import annotations

import base64
import inspect
import io
import resource
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image
from test_explain import onnx_region_model
from test_infer import grace_hopper
from test_service import serve_in_thread

from ferkit.infer import Predictor
from ferkit.infer.service import create_app


def takes_explain(app) -> bool:
    route = next(r for r in app.routes if getattr(r, "path", "") == "/predict")
    return "explain" in inspect.signature(route.endpoint).parameters


@pytest.fixture(scope="module")
def crowd() -> bytes:
    """Six copies of a portrait (six faces, 180 px each) in one JPEG."""
    from ferkit.infer.io import decode_image

    face = np.asarray(Image.fromarray(decode_image(grace_hopper().read_bytes())).resize((180, 210)))
    rows = [np.hstack([face] * 3)] * 2
    buf = io.BytesIO()
    Image.fromarray(np.vstack(rows)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    """A model that looks at the mouth only, in ONNX (fast: the test is about the service's limits)."""
    return Predictor(onnx_region_model(tmp_path_factory.mktemp("svc-explain") / "m.onnx"), backend="onnx", threads=1)


def post(url: str, data: bytes, explain: bool = True) -> dict:
    r = httpx.post(f"{url}/predict?explain={'true' if explain else 'false'}",
                   files={"file": ("crowd.jpg", data, "image/jpeg")}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_explain_answers_carry_at_most_max_faces_heatmaps(predictor, crowd):
    from ferkit.infer.explain import MAX_FACES

    app = create_app(predictor)
    if not takes_explain(app):
        pytest.skip("service.py's /predict does not take explain yet (issue 29, item 5 hook)")
    with serve_in_thread(app) as url:
        plain, explained = post(url, crowd, explain=False), post(url, crowd)
    assert len(explained["faces"]) == 6 > MAX_FACES
    assert all("heatmap" not in f for f in plain["faces"])
    heat = [f for f in explained["faces"] if f["heatmap"]]
    assert len(heat) == MAX_FACES and explained["faces"][MAX_FACES]["heatmap"] is None
    for f in heat:
        png = Image.open(io.BytesIO(base64.b64decode(f["heatmap"].split(",", 1)[1])))
        assert png.size == (48, 48) and png.mode == "RGBA" and 0 <= f["heatmap_drop"] <= 1
        x, y, w, h = f["heatmap_box"]
        assert w == h and w >= f["box"][2]  # the square its crop came from, margin included
    assert [f["probs"] for f in explained["faces"]] == [f["probs"] for f in plain["faces"]]


def test_a_hundred_concurrent_explain_requests_stay_bounded(predictor, crowd, monkeypatch):
    import ferkit.infer.service as service

    app = create_app(predictor)
    if not takes_explain(app):
        pytest.skip("service.py's /predict does not take explain yet (issue 29, item 5 hook)")
    monkeypatch.setattr(service, "MAX_FACES", 1)  # one face each: the test is about the crowd, not the model
    with serve_in_thread(app) as url:
        post(url, crowd)  # warm: the first request allocates what every request reuses
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with ThreadPoolExecutor(100) as pool:
            answers = list(pool.map(lambda _: post(url, crowd), range(100)))
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert all(sum(f["heatmap"] is not None for f in a["faces"]) == 1 for a in answers)
    assert grown_mb < 300, f"the peak memory grew by {grown_mb:.0f} MB for 100 concurrent explain requests"
