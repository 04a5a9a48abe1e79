"""What the benchmarks share: the shared FER-2013 zip's faces, a short name for the CPU, and writing
the report as JSON under bench/results/."""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def fer_zip() -> Path:
    """Where the shared FER-2013 zip is: $FERKIT_DATA_ZIP, else ../shared/data/fer2013.zip (it may not exist)."""
    return Path(os.environ.get("FERKIT_DATA_ZIP") or ROOT.parent / "shared" / "data" / "fer2013.zip")


def fer_split(split: str, n: int, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """n random faces (48x48 uint8) of a split of the shared zip, in file order, with their class
    indices; FileNotFoundError without the zip."""
    from PIL import Image

    path = fer_zip()
    if not path.is_file():
        raise FileNotFoundError(f"no FER-2013 zip at {path}: set FERKIT_DATA_ZIP to the zip of fer2013/{{train,val,test}}/")
    with zipfile.ZipFile(path) as z:
        names = sorted(x for x in z.namelist() if x.startswith(f"fer2013/{split}/") and x.endswith(".jpg"))
        pick = sorted(np.random.default_rng(seed).choice(len(names), min(n, len(names)), replace=False))
        faces = [np.asarray(Image.open(io.BytesIO(z.read(names[i]))).convert("L")) for i in pick]
        labels = [CLASSES.index(names[i].split("/")[2]) for i in pick]
    return faces, labels


def cpu_tag(machine: dict) -> str:
    """A short name for a report's file: xeon|epyc|cpu, then amx|avx512|avx2 (from `cpu_info()`)."""
    model, flags = machine.get("cpu_model", ""), machine.get("cpu_flags", [])
    kind = "xeon" if "Xeon" in model else "epyc" if "EPYC" in model else "cpu"
    return f"{kind}-{'amx' if 'amx_bf16' in flags else 'avx512' if 'avx512f' in flags else 'avx2'}"


def save_report(report: dict, out: str | Path, indent: int = 2) -> Path:
    """Write `report` to `out` (folders made as needed) and print the path; returns it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=indent) + "\n")
    print(f"\nwrote {out}")
    return out
