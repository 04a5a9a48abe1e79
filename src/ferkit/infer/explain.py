"""Heatmaps of what drove a prediction: occlusion sensitivity (Zeiler and Fergus 2014), batched.

    heat = occlusion_maps(crops, predictor.predict_crops)   # (N, 48, 48) in [0, 1]
    rgb = overlay(crop, heat[0])                             # the face with the heatmap over it

A grey patch (the face's own mean grey: the detail goes, no bright or dark edge comes) slides over
each 48x48 face; each occluded copy goes through the model, and a pixel's heat is the mean drop, over
the patches that cover it, of the probability of the class predicted on the whole face. Only
probabilities are needed, so it works with every backend (int8 ONNX, float32 ONNX, torch) and with
test-time augmentation; all copies of all faces go through `predict_fn` in chunks of `chunk` copies,
which bounds the memory whatever the number of faces.

The patch is 12 px (a quarter of the face: at FER-2013's framing an eye, the brow above it, or the
mouth; the eyes' centres are 17 px apart and the mouth corners 14 px, `FER_LANDMARKS`), moved 4 px
at a time: 10 x 10 = 100 copies per face, each pixel covered by up to 9 of them, which gives a smooth
map at pixel resolution. A stride of 2 would cost 3.6x more (361 copies) for a map that differs only
in its finest detail; a patch of 8 px hides half an eye, which a CNN that sees both eyes and the brows
often does not miss, so its map is mostly flat.

No torch here: `ferkit[infer]` runs it. Grad-CAM (torch only) is not implemented.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image

from ferkit.runtime.paths import atomic_write

from .faces import FACE_SIZE, Box, Found, as_box, clip_box, crop_region
from .io import to_rgb

PATCH = 12  # patch side, pixels of the 48x48 face
STRIDE = 4  # step between patch positions
CHUNK = 1024  # occluded copies per call of predict_fn (2.4 MB of crops): bounds the memory
MAX_FACES = 4  # faces the web service explains per request (the largest first): bounds its work
ALPHA = 0.6  # the heatmap's opacity where it is hottest

PredictFn = Callable[[np.ndarray], np.ndarray]  # uint8 crops (N, 48, 48) -> probabilities (N, C)


def patch_masks(size: int = FACE_SIZE, patch: int = PATCH, stride: int = STRIDE) -> np.ndarray:
    """(P, size, size) bool: where each patch position covers the face, row by row. The last
    position touches the far edge, so every pixel is covered."""
    if not 1 <= patch <= size or stride < 1:
        raise ValueError(f"patch must be 1..{size} and stride >= 1 (got {patch}, {stride})")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    masks = np.zeros((len(starts) ** 2, size, size), bool)
    for k, (y, x) in enumerate((y, x) for y in starts for x in starts):
        masks[k, y : y + patch, x : x + patch] = True
    return masks


def occlusion_drops(
    crops: np.ndarray,
    predict_fn: PredictFn,
    labels: Sequence[int] | None = None,
    patch: int = PATCH,
    stride: int = STRIDE,
    chunk: int = CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """(drops (N, 48, 48) float32, labels (N,)): for each pixel, the mean drop of the probability of
    each face's class (`labels`, default the class `predict_fn` predicts on the whole face) over the
    patches that cover it; negative where hiding it raises the probability. At most `chunk` occluded
    copies exist at a time; the result does not depend on `chunk` (for a `predict_fn` that treats
    each face alone)."""
    crops = np.ascontiguousarray(crops, np.uint8)
    if crops.ndim != 3 or crops.shape[1:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"expected uint8 crops of shape (N, {FACE_SIZE}, {FACE_SIZE}), got {crops.shape}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 (got {chunk})")
    n = len(crops)
    if n == 0:
        return np.zeros((0, FACE_SIZE, FACE_SIZE), np.float32), np.zeros(0, int)
    masks = patch_masks(FACE_SIZE, patch, stride)
    base = np.asarray(predict_fn(crops), np.float64)
    classes = base.argmax(1) if labels is None else np.asarray(labels, int)
    if classes.shape != (n,) or classes.min() < 0 or classes.max() >= base.shape[1]:
        raise ValueError(f"labels must be {n} class indices below {base.shape[1]} (got {classes.tolist()})")
    fill = np.round(crops.reshape(n, -1).mean(1)).astype(np.uint8)  # each face's own mean grey
    p = len(masks)
    occluded = np.empty(n * p, np.float64)  # the class's probability with each patch hidden, face by face
    for start in range(0, n * p, chunk):
        k = np.arange(start, min(start + chunk, n * p))
        face, where = k // p, k % p
        views = np.where(masks[where], fill[face][:, None, None], crops[face])
        occluded[k] = np.asarray(predict_fn(views), np.float64)[np.arange(len(k)), classes[face]]
    drop = base[np.arange(n), classes][:, None] - occluded.reshape(n, p)
    flat = masks.reshape(p, -1).astype(np.float64)
    drops = (drop @ flat) / flat.sum(0)
    return drops.reshape(n, FACE_SIZE, FACE_SIZE).astype(np.float32), classes


def normalize(drops: np.ndarray) -> np.ndarray:
    """Drop maps -> heatmaps in [0, 1]: negative drops are 0, each face scaled by its largest drop
    (a face whose probability no patch lowers gets an empty map)."""
    pos = np.clip(np.asarray(drops, np.float32), 0, None)
    peak = pos.reshape(len(pos), -1).max(1) if len(pos) else np.zeros(0, np.float32)
    return np.where(peak[:, None, None] > 0, pos / np.maximum(peak, 1e-12)[:, None, None], 0).astype(np.float32)


def occlusion_maps(
    crops: np.ndarray, predict_fn: PredictFn, labels: Sequence[int] | None = None, **settings: int
) -> np.ndarray:
    """Heatmaps (N, 48, 48) float32 in [0, 1] of uint8 faces (N, 48, 48): where hiding the face lowers
    the probability of its class most (`occlusion_drops`, normalised per face; `settings`: its patch,
    stride and chunk)."""
    return normalize(occlusion_drops(crops, predict_fn, labels, **settings)[0])


def explain_faces(
    predictor: Any,
    crops: np.ndarray,
    max_faces: int | None = None,
    labels: Sequence[int] | None = None,
    predict_fn: PredictFn | None = None,
    **settings: int,
) -> np.ndarray:
    """Heatmaps of the first `max_faces` faces (all when None) of `crops`, through the predictor's own
    `predict_crops` (its backend and TTA) or `predict_fn`. Faces come largest first from detection,
    so a cap keeps the largest."""
    if max_faces is not None and max_faces < 0:
        raise ValueError(f"max_faces must be >= 0 (got {max_faces})")
    crops = crops[:max_faces] if max_faces is not None else crops
    labels = None if labels is None else list(labels)[: len(crops)]
    return occlusion_maps(crops, predict_fn or predictor.predict_crops, labels, **settings)


# ---------------------------------------------------------------- pictures


def _colors(heatmap: np.ndarray) -> np.ndarray:
    """RGB uint8 colours of a heatmap in [0, 1] (OpenCV's jet: blue cold, red hot)."""
    level = np.round(np.clip(heatmap, 0, 1) * 255).astype(np.uint8)
    return cv2.applyColorMap(level, cv2.COLORMAP_JET)[..., ::-1]


def _blend(rgb: np.ndarray, heat: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """`rgb` with the heat's colours over it, opaque in proportion to the heat (cold parts unchanged)."""
    weight = alpha * np.clip(heat, 0, 1)[..., None]
    return np.round(rgb * (1 - weight) + _colors(heat) * weight).astype(np.uint8)


def _resized(heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.clip(cv2.resize(np.asarray(heatmap, np.float32), (width, height), interpolation=cv2.INTER_LINEAR), 0, 1)


def overlay(region: np.ndarray, heatmap: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """RGB uint8: `region` (a 48x48 crop, or the image part it was cut from, HxW or HxWx3) with
    `heatmap` (48x48 in [0, 1]) stretched over it."""
    rgb = to_rgb(np.asarray(region, np.uint8))
    return _blend(rgb, _resized(heatmap, rgb.shape[1], rgb.shape[0]), alpha)


def heat_rgba(heatmap: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """RGBA uint8 of a heatmap alone (transparent where cold), to lay over a picture as `overlay` does."""
    a = np.round(255 * alpha * np.clip(heatmap, 0, 1)).astype(np.uint8)
    return np.dstack([_colors(heatmap), a])


def png_data_url(pixels: np.ndarray) -> str:
    """A data: URL of a PNG of uint8 RGB or RGBA pixels (the service's JSON carries heatmaps so)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, np.uint8)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def paint_heatmaps(image: np.ndarray, regions: Sequence[Box | None], heatmaps: Sequence[np.ndarray]) -> np.ndarray:
    """A copy of `image` (RGB) with each heatmap stretched over its face's region (`face_regions`: the
    part of the image its crop was cut from; cut at the image's edges; None: not painted)."""
    out = to_rgb(np.asarray(image, np.uint8)).copy()
    for region, heat in zip(regions, heatmaps):
        if region is None or region[2] <= 0 or region[3] <= 0:
            continue
        x, y, w, h = region
        x0, y0, cw, ch = clip_box(region, out.shape[1], out.shape[0])
        if cw and ch:
            big = _resized(heat, w, h)[y0 - y : y0 - y + ch, x0 - x : x0 - x + cw]
            out[y0 : y0 + ch, x0 : x0 + cw] = _blend(out[y0 : y0 + ch, x0 : x0 + cw], big)
    return out


def face_regions(
    found: Sequence[Found | Box], shape: tuple[int, ...], margin: float, detect: bool = True, align: bool = False
) -> list[Box | None]:
    """The image region each face's 48x48 crop was made from (`Predictor.find_faces`' faces, as `Found`s
    or boxes): the whole image without detection, the square with its margin otherwise; None for a
    face aligned on its landmarks (a rotated crop: no box of the image)."""
    if not detect:
        return [(0, 0, int(shape[1]), int(shape[0]))] * len(found)
    regions: list[Box | None] = []
    for f in found:
        if isinstance(f, Found):
            regions.append(None if align and f.landmarks is not None else crop_region(f.crop_box, margin))
        else:  # a plain box: no landmarks, so never aligned
            regions.append(crop_region(as_box(f), margin))
    return regions


# ---------------------------------------------------------------- for predict and serve


class Explained(NamedTuple):
    """One explained face of an image."""

    crop: np.ndarray  # the model's 48x48 input
    heatmap: np.ndarray  # 48x48 in [0, 1]
    drop: float  # the largest mean drop of the class's probability, 0..1: how much any region matters
    region: Box | None  # the part of the image the crop was cut from (None: aligned)


def explain_image(predictor: Any, image: np.ndarray, max_faces: int | None = None) -> list[Explained]:
    """The faces of one image as `predictor.predict` finds them (same detector, same order), each with
    its heatmap; only the first `max_faces` when given."""
    found, crops = predictor.find_faces(image)
    found, crops = list(found)[:max_faces], crops[:max_faces]
    drops, _ = occlusion_drops(crops, predictor.predict_crops)
    regions = face_regions(found, image.shape, predictor.detector.margin, predictor.detect, predictor.detector.align)
    return [Explained(c, h, float(max(d.max(), 0.0)), r) for c, h, d, r in zip(crops, normalize(drops), drops, regions)]


def paint_explained(image: np.ndarray, explained: Sequence[Explained]) -> np.ndarray:
    """A copy of `image` with the heatmaps of `explain_image` painted over their faces (for --annotate)."""
    return paint_heatmaps(image, [e.region for e in explained], [e.heatmap for e in explained])


def explanation_name(stem: str, face: int) -> str:
    """The file name of face `face`'s heatmap for the input whose annotated name has `stem`."""
    return f"{stem}_face{face}.png"


def existing_explanations(out_dir: str | Path, stems: Sequence[str]) -> list[str]:
    """The heatmap files already in `out_dir` for these inputs (for the output guard: refused
    without --force, as the number of faces is known only once they are found)."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return []
    return sorted(p.name for stem in stems for p in folder.glob(f"{glob_escape(stem)}_face*.png"))


def glob_escape(text: str) -> str:
    """`text` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def save_explanations(
    explained: Sequence[Explained], out_dir: str | Path, stem: str, scale: int = 4, overwrite: bool = True
) -> list[Path]:
    """Write each face's crop, enlarged `scale` times, with its heatmap over it, as
    `out_dir/<stem>_face<i>.png` (whole or not at all, `ferkit.runtime.paths.atomic_write`)."""
    paths = []
    for i, e in enumerate(explained):
        big = cv2.resize(e.crop, (FACE_SIZE * scale, FACE_SIZE * scale), interpolation=cv2.INTER_LINEAR)
        picture = Image.fromarray(overlay(big, e.heatmap))
        paths.append(
            atomic_write(
                Path(out_dir) / explanation_name(stem, i),
                partial(picture.save, format="PNG"),
                overwrite=overwrite,
                durable=False,
            )
        )
    return paths


def add_heatmaps(
    predictor: Any,
    faces: list[dict],
    found: Sequence[Found | Box],
    crops: np.ndarray,
    shape: tuple[int, ...],
    detect: bool = True,
    max_faces: int = MAX_FACES,
    predict_fn: PredictFn | None = None,
) -> list[dict]:
    """The service's answer rows (`faces`, from `found` and `crops` of an image of `shape`) with, for
    the first `max_faces`: "heatmap" (a PNG data URL, RGBA 48x48, transparent where cold),
    "heatmap_box" (the image region to stretch it over, [x, y, w, h], may run past the edges; None
    for an aligned face) and "heatmap_drop" (the largest drop of the class's probability). The class
    explained is each row's top class. The rest get "heatmap": None."""
    n = min(len(faces), max_faces)
    names = list(predictor.class_names)
    labels = [names.index(max(f["probs"], key=f["probs"].get)) for f in faces[:n]]
    drops, _ = occlusion_drops(crops[:n], predict_fn or predictor.predict_crops, labels)
    regions = face_regions(list(found)[:n], shape, predictor.detector.margin, detect, predictor.detector.align)
    out = []
    for i, face in enumerate(faces):
        if i >= n:
            out.append({**face, "heatmap": None})
            continue
        region = regions[i]
        out.append(
            {
                **face,
                "heatmap": png_data_url(heat_rgba(normalize(drops[i : i + 1])[0])),
                "heatmap_box": None if region is None else [int(v) for v in region],
                "heatmap_drop": round(float(max(drops[i].max(), 0.0)), 4),
            }
        )
    return out
