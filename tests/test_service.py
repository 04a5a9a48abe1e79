"""ferkit.infer.service: /predict on real and broken uploads, /health, the page, concurrency."""
from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_infer import CLASSES, face_scene, found_at, grace_hopper, make_checkpoint

from ferkit.infer import Predictor
from ferkit.infer.service import STATIC, create_app

LIMIT = 200_000  # bytes: a small upload limit for the tests


@contextlib.contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """Run `app` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    return Predictor(make_checkpoint(tmp_path_factory.mktemp("svc") / "model.pt"), bf16=False)


@pytest.fixture(scope="module")
def client(predictor) -> TestClient:
    return TestClient(create_app(predictor, max_bytes=LIMIT))


def post(client, data: bytes, name: str = "photo.jpg", type_: str = "image/jpeg"):
    return client.post("/predict", files={"file": (name, data, type_)})


def test_predict_a_real_photo(client):
    r = post(client, grace_hopper().read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (512, 600) and body["message"] == "1 face found"
    [face] = body["faces"]
    assert 130 < face["box"][0] < 190 and face["label"] in CLASSES and body["class_names"] == CLASSES
    assert sum(face["probs"].values()) == pytest.approx(1, abs=1e-5)
    assert face["score"] == max(face["probs"].values())


def test_an_enlarged_fer_face_is_found(client, real_zip):
    from test_infer import detectable_faces

    r = post(client, png_bytes(face_scene(detectable_faces(real_zip, 1)[0])), "face.png", "image/png")
    assert r.status_code == 200 and len(r.json()["faces"]) == 1 and found_at(r.json()["faces"][0]["box"])


def test_no_face_is_a_200_with_a_message(client):
    r = post(client, png_bytes(np.full((240, 320), 128, np.uint8)), "gray.png", "image/png")
    assert r.status_code == 200
    body = r.json()
    assert body.pop("ms") > 0
    assert body == {"faces": [], "width": 320, "height": 240, "message": "no face found", "class_names": CLASSES,
                    "detector": "yunet", "backend": "torch"}


def test_detection_can_be_skipped_for_a_face_crop(client):
    """The crop rule (Predictor.find_faces): a 48x48 image is a face crop unless detect=always."""
    crop = png_bytes(np.random.default_rng(0).integers(0, 255, (48, 48)).astype(np.uint8))
    for query in ("", "?detect=false"):
        r = client.post(f"/predict{query}", files={"file": ("crop.png", crop, "image/png")})
        body = r.json()
        assert r.status_code == 200 and len(body["faces"]) == 1 and body["faces"][0]["box"] == [0, 0, 48, 48]
        assert body["backend"] == "torch" and body["ms"] > 0
    assert body["detector"] == "none"
    found = client.post("/predict?detect=always", files={"file": ("crop.png", crop, "image/png")}).json()
    assert found["faces"] == [] and "detect=false" in found["message"] and found["detector"] == "yunet"
    small = png_bytes(np.random.default_rng(0).integers(0, 255, (60, 60)).astype(np.uint8))
    found = post(client, small, "small.png", "image/png").json()
    assert found["faces"] == [] and "detect=false" in found["message"]


def test_bad_uploads_get_clear_4xx(client):
    jpeg = grace_hopper().read_bytes()
    cases = [
        (b"hello, I am text", 415, "not an image"),
        (b"", 400, "empty"),
        (jpeg[: len(jpeg) // 2], 400, "truncated"),
        (b"\xff\xd8\xff" + b"\0" * 100, 415, "not an image"),  # a JPEG signature and nothing else
        (jpeg + b"\0" * LIMIT, 413, "too large"),  # over the limit, within the multipart allowance
        (b"\0" * (LIMIT + 100_000), 413, "too large"),  # refused from Content-Length alone
    ]
    for data, status, words in cases:
        r = post(client, data)
        assert r.status_code == status, (words, r.text)
        assert words in r.json()["detail"]
    r = client.post("/predict", data={"other": "x"})  # no `file` field
    assert r.status_code == 422 and "detail" in r.json()
    assert client.get("/health").json()["status"] == "ok"  # still serving


def test_health_page_and_openapi(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["class_names"] == CLASSES and health["max_bytes"] == LIMIT
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():  # no CDN or other network use: the page works offline
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name
    spec = client.get("/openapi.json").json()
    assert "/predict" in spec["paths"] and "/health" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers(predictor):
    photo = grace_hopper().read_bytes()
    app = create_app(predictor)
    with serve_in_thread(app) as url:
        alone = httpx.post(f"{url}/predict", files={"file": ("p.jpg", photo, "image/jpeg")}, timeout=30).json()
        passes = app.state.batcher.passes

        def one(_: int) -> dict:
            r = httpx.post(f"{url}/predict", files={"file": ("p.jpg", photo, "image/jpeg")}, timeout=30)
            assert r.status_code == 200
            return r.json()

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(one, range(6)))
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert len(alone["faces"]) == 1
    for a in answers:  # the same face and label; probabilities to float rounding (another batch size)
        assert [f["box"] for f in a["faces"]] == [f["box"] for f in alone["faces"]]
        assert [f["label"] for f in a["faces"]] == [f["label"] for f in alone["faces"]]
        assert a["faces"][0]["probs"] == pytest.approx(alone["faces"][0]["probs"], abs=1e-4)
    assert 1 <= app.state.batcher.passes - passes <= 6


def test_crop_batcher_runs_queued_requests_in_one_pass():
    """While the worker runs one batch, the requests that arrive queue up and share the next pass;
    each gets back exactly its own rows."""
    from ferkit.infer.batching import CropBatcher

    release, calls = threading.Event(), []

    def predict(crops):
        calls.append(len(crops))
        release.wait(10)
        return crops[:, :1, :3].reshape(len(crops), 3).astype(np.float32)  # each row is its crop's value

    batcher = CropBatcher(predict, wait_s=0.0)
    crops = [np.full((1, 48, 48), i, np.uint8) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher, c) for c in crops]
        while not calls or calls[0] + batcher._queue.qsize() < 8:  # the first pass holds the worker; the rest wait
            time.sleep(0.01)
        release.set()
        results = [f.result(10) for f in futures]
    assert len(calls) <= 2 and sum(calls) == 8
    assert all(r.shape == (1, 3) and (r == i).all() for i, r in enumerate(results))


def test_crop_batcher_passes_errors_to_every_request_of_the_batch():
    from ferkit.infer.batching import CropBatcher

    def broken(crops):
        raise RuntimeError("model failed")

    batcher = CropBatcher(broken)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher(np.zeros((1, 48, 48), np.uint8))
    assert batcher(np.zeros((0, 48, 48), np.uint8)).shape[0] == 0  # no faces: no pass


def test_crop_batcher_drops_a_cancelled_request_and_goes_on():
    """A request cancelled while it waits (its client gone) is skipped; the worker keeps serving."""
    from ferkit.infer.batching import CropBatcher

    release, calls = threading.Event(), []

    def predict(crops):
        calls.append(len(crops))
        release.wait(10)
        return np.zeros((len(crops), 3), np.float32)

    batcher = CropBatcher(predict, wait_s=0.0)
    first = batcher.submit(np.zeros((1, 48, 48), np.uint8))
    while not calls:  # the worker holds the first request's pass
        time.sleep(0.01)
    cancelled = batcher.submit(np.zeros((2, 48, 48), np.uint8))
    assert cancelled.cancel()
    release.set()
    assert first.result(10).shape == (1, 3)
    assert batcher(np.zeros((3, 48, 48), np.uint8)).shape == (3, 3)  # the worker is alive
    assert calls == [1, 3]  # the cancelled request's crops never ran
