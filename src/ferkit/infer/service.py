"""Web service: `POST /predict` (an image upload), `GET /health`, and a page at `/`.

    app = create_app(Predictor(...))      # then: uvicorn.run(app)  (or `ferkit serve`)

`/predict` is a coroutine: it awaits the work and holds no thread while it waits. Each request
hands its upload to a small pool of image workers (one per core by default), which decode it and
search it for faces: a burst of 100 requests then runs 2 decodes and detections at a time instead
of many that crowd each other out, and only those workers hold a decoded image. The faces of
concurrent requests share forward passes (`CropBatcher`, one worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ferkit.data.images import MAX_PIXELS
from ferkit.runtime.memory import release_freed_memory

from .batching import CropBatcher
from .explain import MAX_FACES
from .io import ImageReadError, decode_image
from .predictor import UNCERTAIN

STATIC = Path(__file__).parent / "static"
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself

STATUS = {"empty": 400, "corrupt": 400, "not_image": 415, "bad_array": 415, "too_large": 413, "missing": 400}


def create_app(
    predictor: Any, max_bytes: int = 10 * 1024 * 1024, max_pixels: int = MAX_PIXELS, decoders: int | None = None
) -> FastAPI:
    """The FastAPI app around a `Predictor` (anything with `predict`, `class_names`, `describe`).

    Uploads over `max_bytes`, or whose header declares more than `max_pixels`, are refused before
    they are decoded; at most `decoders` uploads (default: one per core) are decoded and searched for
    faces at once, which bounds the memory a burst of large photos can take."""
    app = FastAPI(
        title="ferkit",
        version="0.1.0",
        description="Facial expression recognition: upload a photo, get faces and class probabilities.",
    )
    app.state.predictor = predictor
    app.state.max_bytes = max_bytes
    workers = ThreadPoolExecutor(decoders or os.cpu_count() or 2, thread_name_prefix="ferkit-image")
    app.state.image_workers = workers
    # Detection runs in the request threads; the classifier runs once for the faces of all requests
    # that arrive within a few milliseconds (`CropBatcher`). A predictor without the two steps
    # (anything with `predict`) is called per request.
    batcher = CropBatcher(predictor.predict_crops) if hasattr(predictor, "find_faces") else None
    app.state.batcher = batcher

    described = predictor.describe()
    backend = described.get("backend", "?")
    detector = described.get("detector", "haar")
    in_flight, lock = 0, threading.Lock()

    @contextlib.contextmanager
    def tracked():
        """Count requests being served; the last one out of a burst gives the freed memory back."""
        nonlocal in_flight
        with lock:
            in_flight += 1
        try:
            yield
        finally:
            with lock:
                in_flight -= 1
                last = in_flight == 0
            if last:  # off the event loop: trimming a large heap can take milliseconds
                asyncio.get_running_loop().run_in_executor(None, release_freed_memory)

    def read_and_find(data: bytes, name: str, detect: bool | str) -> tuple[Any, Any]:
        """In an image worker: decode, then (for a two-step predictor) find the faces and crop them."""
        image = decode_image(data, name, max_pixels)
        return image, (predictor.find_faces(image, detect) if batcher is not None else None)

    async def faces_of(image, found, min_score: float | None) -> list[dict]:
        if batcher is None:
            faces = (await asyncio.get_running_loop().run_in_executor(workers, predictor.predict, [image]))[0]
            return faces if min_score is None else [relabel(f, min_score) for f in faces]
        boxes, crops = found
        return predictor.faces(boxes, await asyncio.wrap_future(batcher.submit(crops)), min_score)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        # Refuse before reading the body when the client announces a size over the limit;
        # the endpoint checks the real size too (a client may send no Content-Length).
        length = request.headers.get("content-length")
        if (
            request.url.path == "/predict"
            and length
            and length.isdigit()
            and int(length) > max_bytes + MULTIPART_OVERHEAD
        ):
            return JSONResponse({"detail": too_large(int(length), max_bytes)}, status_code=413)
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    def health() -> dict:
        """Liveness and what model is served."""
        return {"status": "ok", "max_bytes": max_bytes, "max_pixels": max_pixels, **predictor.describe()}

    # The endpoint is a coroutine: a request waits for its image worker and its forward pass without
    # holding a thread (100 concurrent uploads held 40 threadpool threads, contending for the GIL),
    # and its JSON is written directly (FastAPI's encoder walked every probability).
    @app.post("/predict")
    async def predict(
        file: UploadFile = File(..., description="an image: jpg, png, bmp, webp, ..."),
        detect: str = Query(
            "true",
            pattern="^(true|false|always)$",
            description="false: the image is a "
            "face crop already; true: search it, unless it is 48x48 (a crop); always: search it",
        ),
        min_score: float | None = Query(
            None,
            ge=0,
            le=1,
            description="label a face 'uncertain' when "
            "its top probability is below this (default: the server's --min-score)",
        ),
        explain: bool = Query(
            False,
            description=f"add each face's occlusion heatmap (the {MAX_FACES} largest faces; about 100 model runs each)",
        ),
    ) -> JSONResponse:
        """Detect faces in the uploaded image; per face its box [x, y, w, h], label, score and probs."""
        start = time.perf_counter()
        mode: bool | str = {"true": True, "false": False}.get(detect, detect)  # "always" stays a string
        with tracked():
            data = await file.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise HTTPException(413, too_large(None, max_bytes))
            try:
                image, found = await asyncio.get_running_loop().run_in_executor(
                    workers, read_and_find, data, file.filename or "upload", mode
                )
            except ImageReadError as e:
                raise HTTPException(STATUS.get(e.kind, 400), str(e)) from None
            del data
            faces = await faces_of(image, found, min_score)
            if explain and found is not None and faces:  # in an image worker: bounded by their number and MAX_FACES
                from .explain import add_heatmaps

                faces = await asyncio.get_running_loop().run_in_executor(
                    workers,
                    add_heatmaps,
                    predictor,
                    faces,
                    found[0],
                    found[1],
                    image.shape,
                    bool(mode),
                    MAX_FACES,
                    batcher,
                )
        n = len(faces)
        message = "no face found" if n == 0 else f"{n} face{'s' if n > 1 else ''} found"
        if n == 0 and mode and max(image.shape[:2]) <= 96:
            message += f" (a {image.shape[1]}x{image.shape[0]} image looks like a face crop already: try detect=false)"
        return JSONResponse(
            {
                "faces": faces,
                "width": int(image.shape[1]),
                "height": int(image.shape[0]),
                "message": message,
                "class_names": predictor.class_names,
                "detector": detector if mode else "none",
                "backend": backend,
                "ms": round(1000 * (time.perf_counter() - start), 1),
            }
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug must give a JSON 500 for this request, not take the server down.
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    return app


def relabel(face: dict, min_score: float) -> dict:
    """A face row labelled "uncertain" when its score is below `min_score` (a predictor without `faces`)."""
    return face | {"label": UNCERTAIN} if face["score"] < min_score else face


def too_large(size: int | None, max_bytes: int) -> str:
    got = f" ({size / 1e6:.1f} MB)" if size else ""
    return f"upload too large{got}: the limit is {max_bytes / 1e6:.1f} MB (ferkit serve --max-bytes)"
