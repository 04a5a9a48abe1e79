"""Checkpoints: reading (as data only), loading into a model, atomic saving, and the logit-offset
wrapper that a logit-adjusted checkpoint loads as.

A ferkit checkpoint is a dict (docs/DESIGN.md): format, version, arch, head, head_kwargs,
class_names, config, model (a state dict) and, after `ferkit posthoc`, posthoc (`--method temperature`:
calibration, the temperature and priors that inference applies to the probabilities). A reference-project
checkpoint ({"backbone", "head"}) is turned into one on reading.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .registry import CheckpointError, build_model


class LogitOffset(nn.Module):
    """Wraps a classifier (a logit-adjustment checkpoint loads as one): logits - offset (the logit-adjustment rule at inference)."""

    def __init__(self, model: nn.Module, offset: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("offset", offset.float())

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, target) - self.offset


def _from_reference(ckpt: dict) -> dict:
    """Turn a reference-project checkpoint ({"backbone", "head"}) into a ferkit one."""
    bb, hd = ckpt["backbone"], ckpt["head"]
    expected = {f"features.{b}.net.{i}.weight" for b in range(3) for i in (0, 1, 3, 4)}
    expected |= {"head.1.weight", "head.4.weight"}
    missing = sorted(expected - set(bb))
    if missing:
        raise CheckpointError(
            f"reference checkpoint backbone lacks {missing[0]} (and {len(missing) - 1} more): not a seed-cnn"
        )
    if "fc.weight" in hd:
        head, kwargs = "softmax", {}
    elif "weight" in hd:
        head = "arcface"
        kwargs = {"s": float(ckpt.get("arc_s", 30.0)), "m": float(ckpt.get("arc_m", 0.5))}
    else:
        raise CheckpointError("reference checkpoint head has neither fc.* (softmax) nor weight (arcface)")
    state = {f"backbone.{k}": v for k, v in bb.items()} | {f"head.{k}": v for k, v in hd.items()}
    names = ckpt.get("class_names") or ckpt.get("classes")
    if names is None:
        from ferkit.data import CLASS_NAMES  # the reference project's alphabetical folder order

        names = list(CLASS_NAMES)
    return {
        "format": "ferkit",
        "version": 1,
        "arch": "seed-cnn",
        "head": head,
        "head_kwargs": kwargs,
        "class_names": list(names),
        "config": {"source": "reference checkpoint"},
        "model": state,
    }


def _safe_globals() -> list:
    """The only Python objects, besides tensors and plain containers and numbers, that a checkpoint may
    hold: what reference-project checkpoints are known to carry (argparse arguments, numpy scalars and
    arrays). None of them runs code when it is rebuilt."""
    import argparse

    import numpy as np

    allowed: list = [argparse.Namespace, np.dtype, np.ndarray]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "uint8", "bool")]
    for name in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x spell it differently
        try:
            module = __import__(name, fromlist=["scalar", "_reconstruct"])
            allowed += [module.scalar, module._reconstruct]
        except (ImportError, AttributeError):
            pass
    return allowed


def first_line(error: Exception, line: int = 0, width: int = 160) -> str:
    """One line of an exception's message for a one-line error, shortened at a word, not mid-word."""
    lines = [s.strip() for s in str(error).splitlines() if s.strip()]
    text = lines[min(line, len(lines) - 1)] if lines else type(error).__name__
    return textwrap.shorten(text, width, placeholder=" ...")


def _load_data_only(path: Path, map_location: str) -> Any:
    """torch.load restricted to data (`weights_only=True` plus `_safe_globals`): a pickle that names any
    other callable, such as os.system, is refused before anything in it runs."""
    import pickle

    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))  # torch names the callable it refused
        if found:
            raise CheckpointError(
                f"refusing to load {path}: it holds a Python object that could run code "
                f"({found.group(1)}), and a checkpoint must be data only; re-save its "
                f"state_dict from code you trust"
            ) from None
        # Any other refusal: torch's text would suggest weights_only=False, the unsafe way; say what it is.
        raise CheckpointError(f"cannot read checkpoint {path}: {_not_a_checkpoint(e)}") from None
    except Exception as e:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path}: {_not_a_checkpoint(e)}") from None


def _not_a_checkpoint(error: Exception) -> str:
    """Why a file is not a readable checkpoint, in words a user can act on: torch's own messages run to
    several lines and point at its loader's settings, not at the file."""
    text = str(error)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
    detail = (
        found.group(1)
        if found
        else "not a ZIP archive"
        if "not a ZIP archive" in text
        else "the file ends early"
        if isinstance(error, EOFError)
        else first_line(error, width=80)
    )
    return (
        f"not a PyTorch checkpoint, or a damaged one ({detail}); give a best.pt, last.pt or "
        f"pretrained/*.pt written by ferkit"
    )


def save_checkpoint(obj: dict, path: Path) -> None:
    """Write a checkpoint so that an interruption or a full disk never leaves a half-written file
    (`ferkit.runtime.paths.atomic_write`: the earlier checkpoint stays until the new one is complete)."""
    from ferkit.runtime.paths import atomic_write

    atomic_write(Path(path), lambda f: torch.save(obj, f))


def read_checkpoint(source: str | Path | dict, map_location: str = "cpu") -> dict:
    """Load a checkpoint file (or take a dict) and return it in ferkit's format."""
    if isinstance(source, dict):
        ckpt = source
    else:
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}: give the path of a best.pt, last.pt or pretrained/*.pt")
        ckpt = _load_data_only(path, map_location)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint holds a {type(ckpt).__name__}, expected a dict (ferkit or reference format)")
    if ckpt.get("format") == "ferkit":
        missing = [k for k in ("arch", "head", "class_names", "model") if k not in ckpt]
        if missing:
            raise CheckpointError(
                f"ferkit checkpoint lacks {', '.join(missing)}: it is incomplete or not made by ferkit"
            )
        if not isinstance(ckpt["model"], dict) or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
            raise CheckpointError("ferkit checkpoint's model is not a state dict of tensors")
        return ckpt
    if "backbone" in ckpt and "head" in ckpt:
        return _from_reference(ckpt)
    keys = ", ".join(sorted(map(str, ckpt))[:6])
    raise CheckpointError(
        f"unrecognised checkpoint (keys: {keys}): expected a ferkit checkpoint or a reference one with 'backbone' and 'head'"
    )


def load_model(source: str | Path | dict, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model in eval mode (float32) from a checkpoint; returns (model, info).

    The model is a `Classifier`, or a `LogitOffset` around one for a logit-adjusted checkpoint
    (`ferkit posthoc --method la`).

    `info` holds `class_names`, `arch`, `head`, `head_kwargs`, `config`, `epoch`, `val_metrics`,
    `posthoc` and `calibration` (None where the checkpoint has none).
    """
    ckpt = read_checkpoint(source, map_location)
    classifier = build_model(ckpt["arch"], ckpt["head"], len(ckpt["class_names"]), **ckpt.get("head_kwargs", {}))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    try:
        classifier.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint weights do not fit {ckpt['arch']}/{ckpt['head']}: {first_line(e, line=1)}"
        ) from None
    model: nn.Module = classifier
    if ckpt.get("posthoc", {}).get("offset") is not None:  # logit adjustment tuned on val
        model = LogitOffset(classifier, torch.tensor(ckpt["posthoc"]["offset"]))
    model.eval()
    info = {
        k: ckpt.get(k)
        for k in (
            "class_names",
            "arch",
            "head",
            "head_kwargs",
            "config",
            "epoch",
            "val_metrics",
            "posthoc",
            "calibration",
        )
    }
    return model, info
