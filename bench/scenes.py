"""Scenes for the detection benchmark: FER-2013 faces composited onto 640x480 backgrounds.

    scenes = make_scenes(faces, labels, n=300, seed=0)   # list of Scene, reproducible from the seed

Each scene has 1-4 faces, not overlapping, at several sizes (40-240 px), half of them rotated
by up to +-30 degrees, some partly occluded, on one of four procedural backgrounds (gradient,
smooth noise, shapes, stripes), under one of four lightings (normal, dark, bright, low contrast).
A FER face is a tight face crop, so its square is the true box; a face is pasted through a
feathered mask, so that the square's corners fade into the background instead of leaving an edge
that a detector could key on. Everything is drawn from one numpy Generator, so a seed gives the
same scenes on every machine. Nothing here is written to disk: the scenes are made from the
shared data at each run (derived images are not committed).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
SIDES = (40, 64, 96, 150, 240)  # face sizes in pixels: small (far) to large (a portrait)
LIGHTINGS = ("normal", "dark", "bright", "low contrast")
BACKGROUNDS = ("gradient", "noise", "shapes", "stripes")


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h of the (unrotated) face square
    label: int                      # the FER class of the pasted face
    angle: float                    # degrees, counter-clockwise
    occluded: bool


@dataclass
class Scene:
    image: np.ndarray               # HEIGHT x WIDTH uint8 gray
    background: str
    lighting: str
    faces: list[Face] = field(default_factory=list)


def background(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A HEIGHT x WIDTH float32 image in [0, 255] of the given kind."""
    if kind == "gradient":
        a, b = rng.uniform(30, 225, 2)
        t = np.linspace(0, 1, WIDTH if rng.random() < 0.5 else HEIGHT, dtype=np.float32)
        img = a + (b - a) * t
        return np.broadcast_to(img[None, :] if img.size == WIDTH else img[:, None], (HEIGHT, WIDTH)).copy()
    if kind == "noise":  # smooth noise at three octaves: walls, foliage, fabric
        img = np.zeros((HEIGHT, WIDTH), np.float32)
        for cells, weight in ((6, 1.0), (24, 0.5), (96, 0.25)):
            small = rng.uniform(-1, 1, (cells * HEIGHT // WIDTH + 1, cells)).astype(np.float32)
            img += weight * cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
        return np.clip(128 + 60 * img, 0, 255)
    if kind == "shapes":  # rectangles, ellipses and lines: furniture, windows, posters
        img = np.full((HEIGHT, WIDTH), rng.uniform(60, 200), np.float32)
        for _ in range(int(rng.integers(8, 20))):
            color = float(rng.uniform(0, 255))
            x, y = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
            w, h = int(rng.integers(20, 250)), int(rng.integers(20, 250))
            shape = rng.integers(3)
            if shape == 0:
                cv2.rectangle(img, (x, y), (x + w, y + h), color, -1)
            elif shape == 1:
                cv2.ellipse(img, (x, y), (w // 2, h // 2), float(rng.uniform(0, 180)), 0, 360, color, -1)
            else:
                cv2.line(img, (x, y), (x + w, y + h), color, int(rng.integers(2, 12)))
        return img
    if kind == "stripes":
        period, angle = rng.uniform(8, 60), rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
        return 128 + rng.uniform(30, 90) * np.sin(phase)
    raise ValueError(f"unknown background {kind!r}: one of {', '.join(BACKGROUNDS)}")


def light(img: np.ndarray, kind: str) -> np.ndarray:
    """Apply a lighting to a float image in [0, 255]."""
    x = np.clip(img, 0, 255) / 255.0  # cubic resizes and stripes overshoot a little
    if kind == "dark":
        x = 0.35 * x ** 1.6
    elif kind == "bright":
        x = 1 - 0.4 * (1 - x) ** 1.3
    elif kind == "low contrast":
        x = 0.4 + 0.3 * x
    elif kind != "normal":
        raise ValueError(f"unknown lighting {kind!r}: one of {', '.join(LIGHTINGS)}")
    return x * 255.0


def feather_mask(side: int) -> np.ndarray:
    """side x side float32 mask: 1 in the middle, fading to 0 over the outer eighth (rounded corners)."""
    edge = max(2, side // 8)
    m = np.zeros((side, side), np.float32)
    cv2.rectangle(m, (edge, edge), (side - 1 - edge, side - 1 - edge), 1.0, -1)
    k = 2 * edge + 1
    return cv2.GaussianBlur(m, (k, k), 0)


def paste(canvas: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int], angle: float) -> None:
    """Blend `face` (48x48 uint8) into `canvas` at `box`, rotated by `angle` about the box centre."""
    x, y, side, _ = box
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    mask = feather_mask(side)
    if angle:
        rot = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
        big = cv2.warpAffine(big, rot, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = cv2.warpAffine(mask, rot, (side, side), flags=cv2.INTER_LINEAR, borderValue=0)
    region = canvas[y:y + side, x:x + side]
    region[:] = mask * big + (1 - mask) * region


def occlude(canvas: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """Cover a band of the face: the lower third (a hand, a scarf) or one side (another head)."""
    x, y, side, _ = box
    color = float(rng.uniform(0, 255))
    if rng.random() < 0.5:
        top = y + int(side * rng.uniform(0.62, 0.72))
        canvas[top:y + side, x:x + side] = color
    else:
        w = int(side * rng.uniform(0.25, 0.35))
        left = x if rng.random() < 0.5 else x + side - w
        canvas[y:y + side, left:left + w] = color


def place(sides: list[int], rng: np.random.Generator, tries: int = 200) -> list[tuple[int, int, int, int]]:
    """Non-overlapping squares (with a gap of a tenth of their size) for the given sides, largest first."""
    boxes: list[tuple[int, int, int, int]] = []
    for side in sorted(sides, reverse=True):
        for _ in range(tries):
            x, y = int(rng.integers(0, WIDTH - side + 1)), int(rng.integers(0, HEIGHT - side + 1))
            gap = side // 10
            if all(x + side + gap <= bx or bx + bs + gap <= x or y + side + gap <= by or by + bs + gap <= y
                   for bx, by, bs, _ in boxes):
                boxes.append((x, y, side, side))
                break
    return boxes


def make_scene(faces: list[np.ndarray], labels: list[int], rng: np.random.Generator) -> Scene:
    """One scene from a pool of faces (each 48x48 uint8) and their labels."""
    kind, lighting = BACKGROUNDS[rng.integers(len(BACKGROUNDS))], LIGHTINGS[rng.integers(len(LIGHTINGS))]
    canvas = background(kind, rng)
    n = int(rng.choice([1, 1, 2, 3, 4]))
    scene = Scene(np.empty(0), kind, lighting)
    for box in place([int(rng.choice(SIDES)) for _ in range(n)], rng):
        i = int(rng.integers(len(faces)))
        angle = float(rng.uniform(-30, 30)) if rng.random() < 0.5 else 0.0
        paste(canvas, faces[i], box, angle)
        occluded = bool(rng.random() < 0.2)
        if occluded:
            occlude(canvas, box, rng)
        scene.faces.append(Face(box, int(labels[i]), angle, occluded))
    scene.image = np.clip(light(canvas, lighting) + rng.normal(0, 3, canvas.shape), 0, 255).astype(np.uint8)
    return scene


def make_scenes(faces: list[np.ndarray], labels: list[int], n: int, seed: int = 0) -> list[Scene]:
    """`n` scenes drawn reproducibly from `seed`."""
    if not faces or len(faces) != len(labels):
        raise ValueError(f"need faces and one label per face (got {len(faces)} faces, {len(labels)} labels)")
    rng = np.random.default_rng(seed)
    return [make_scene(faces, labels, rng) for _ in range(n)]


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def match(truth: list[tuple[int, int, int, int]], found: list[tuple[int, int, int, int]],
          threshold: float = 0.4) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, highest IoU first: (truth index, found index) pairs with IoU >= threshold."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    used_t, used_f, out = set(), set(), []
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            out.append((i, j))
    return out
