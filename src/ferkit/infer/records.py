"""What a model records about how it is to be run, and where: the TTA its checkpoint names
(`config["tta"]`, which `ferkit pack` and `ferkit train --tta` set) and the ferkit entries of an
exported ONNX model's metadata, which carry the same records (`ferkit export` writes them, the ONNX
runner reads them). No torch here: the inference path runs without it.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

from ferkit.calibration import ONNX_KEY
from ferkit.tta import tta_mode

TTA_KEY = "ferkit_tta"  # the ONNX metadata entry that holds the checkpoint's recorded TTA mode
# An int8 model that carries a float32 copy of itself (`ferkit.infer.export.with_float_refine`): the
# faces whose int8 top-two margin is below this entry's value run again in float32, through the
# copy's own input and output.
REFINE_KEY = "ferkit_refine_below"
REFINE_INPUT, REFINE_OUTPUT = "float32/input", "float32/probs"


def recorded_tta(info: dict) -> str:
    """The TTA mode a model records: an ONNX model's `TTA_KEY` (info["tta"]), else its checkpoint's
    config["tta"]; "none" (one view) where it records none."""
    tta = info.get("tta") or (info.get("config") or {}).get("tta")
    return tta_mode(tta)


def onnx_metadata(info: dict) -> dict[str, str]:
    """The ferkit metadata of an exported model, from its checkpoint's `load_model` info."""
    meta = {
        "class_names": json.dumps(list(info["class_names"])),
        "arch": str(info["arch"]),
        "head": str(info["head"]),
        "input": "float32 (N,1,48,48) = uint8 / 127.5 - 1",
        "output": "softmax probabilities (N,C)",
        "producer": "ferkit",
        TTA_KEY: recorded_tta(info),
    }
    if info.get("calibration"):  # the temperature and prior travel with the model (the ONNX runner reads them)
        meta[ONNX_KEY] = json.dumps(info["calibration"])
    return meta


def info_from_metadata(meta: dict[str, str]) -> dict:
    """An ONNX model's info (as `load_model` gives a checkpoint's) from its ferkit metadata; a model
    exported before the TTA was recorded runs as "none"."""
    return {
        "class_names": json.loads(meta["class_names"]),
        "arch": meta.get("arch"),
        "head": meta.get("head"),
        "calibration": json.loads(meta[ONNX_KEY]) if ONNX_KEY in meta else None,
        "tta": tta_mode(meta.get(TTA_KEY, "none")),
    }


class _Opaque:
    """Whatever a checkpoint's pickle builds besides plain data (tensors, storages): not built."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _DataOnly(pickle.Unpickler):
    """Reads a torch checkpoint's plain data without torch: tensors come back as `_Opaque`, and no
    callable from the file is ever run (every global but OrderedDict is `_Opaque`)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            import collections

            return collections.OrderedDict
        return _Opaque

    def persistent_load(self, pid: Any) -> None:
        return None  # a tensor's storage: not read


def checkpoint_tta(path: str | Path) -> str | None:
    """The TTA a .pt checkpoint records, read without torch (its import costs seconds, and the
    auto backend runs a .pt's int8 ONNX sibling so as not to pay it); None where the file is not a
    torch zip archive or records none."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            with z.open(name) as f:
                ckpt = _DataOnly(f).load()
    except (OSError, zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, EOFError):
        return None
    tta = ((ckpt.get("config") if isinstance(ckpt, dict) else None) or {}).get("tta")
    return None if tta is None else tta_mode(tta)


def own_tta(source: Any, loaded: Any, info: dict) -> str:
    """The TTA a model records (`Predictor(tta=None)`): that of the .pt `source` where its ONNX sibling
    `loaded` runs in its place (read without torch), else that of the model loaded (its checkpoint's
    config, or its ONNX metadata)."""
    if loaded is not source and isinstance(source, (str, Path)) and str(source).endswith(".pt"):
        tta = checkpoint_tta(source)
        if tta is not None:
            return tta
    return recorded_tta(info)
