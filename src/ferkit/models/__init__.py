"""Model registry: one place lists the architectures and heads.

`build_model(arch, head, num_classes)` makes a `Classifier` = backbone -> head.
`load_model(checkpoint)` rebuilds one from a ferkit or reference-project checkpoint.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any, Callable

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ferkit.data.augment import to_input  # noqa: F401  (re-exported: the model input contract, defined with the augmentation)

from .heads import ArcFaceHead, CosineHead, SoftmaxHead
from .resnet import FerResNet, fer_resnet_fast, fer_resnet_fast16, fer_resnet_slim
from .seedcnn import SeedCNN, seed_cnn_half
from ferkit.data.store import IMAGE_SIZE

ARCHS: dict[str, Callable[[], nn.Module]] = {
    "seed-cnn": SeedCNN,      # the reference project's CNN
    "seed-cnn-half": seed_cnn_half,  # seed-cnn at half width: the strategy study's cheaper protocol
    "fer-resnet": FerResNet,  # residual, global-average-pooled, same budget
    "fer-resnet-fast": fer_resnet_fast,  # fer-resnet without its 48-pixel stage: 1.6x faster to train
    "fer-resnet-fast16": fer_resnet_fast16,  # fer-resnet-fast with a 16-channel stem: 1.1x faster again
    "fer-resnet-slim": fer_resnet_slim,  # fer-resnet-fast16 with a 48-channel 24x24 block: 1.1x faster again
}
FIXED_SIZE_ARCHS = {"seed-cnn", "seed-cnn-half"}  # a fully connected layer fixes their input at 48x48; the others pool globally
HEADS: dict[str, type[nn.Module]] = {
    "softmax": SoftmaxHead,
    "cosine": CosineHead,
    "arcface": ArcFaceHead,
}


def _shipped_dir() -> Path:
    """The shipped models: `ferkit/shipped/` in an installed package (a wheel, `pip install .`), else
    the repository's `pretrained/` (an editable install or a checkout); pyproject.toml maps one to the other."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "shipped"
    return installed if installed.is_dir() else package.parents[1] / "pretrained"


SHIPPED_DIR = _shipped_dir()  # `ferkit pack` writes there, `Predictor()` and `ferkit quickstart` read it


class CheckpointError(ValueError):
    """A checkpoint that ferkit cannot read."""


class LogitOffset(nn.Module):
    """Wraps a classifier (a logit-adjustment checkpoint loads as one): logits - offset (the logit-adjustment rule at inference)."""

    def __init__(self, model: nn.Module, offset: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("offset", offset.float())

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, target) - self.offset


class Classifier(nn.Module):
    """backbone (image -> feature) followed by a head (feature -> logits)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(x), target)


def head_settings(head: str, config: Any) -> dict[str, Any]:
    """The constructor arguments of head `head` from a run's configuration (any object with the
    fields its `config_fields` names): {} for softmax, {"s": arc_s} for cosine, {"s", "m"} for arcface."""
    return {arg: getattr(config, name) for arg, name in HEADS[head].config_fields.items()}


def build_model(arch: str, head: str, num_classes: int, **head_kwargs: Any) -> Classifier:
    """Build an untrained model; `head_kwargs` go to the head (e.g. s=30, m=0.5 for arcface)."""
    if arch not in ARCHS:
        raise CheckpointError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")
    if head not in HEADS:
        raise CheckpointError(f"unknown head {head!r}: choose one of {', '.join(HEADS)}")
    backbone = ARCHS[arch]()
    return Classifier(backbone, HEADS[head](backbone.feature_dim, num_classes, **head_kwargs))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _from_reference(ckpt: dict) -> dict:
    """Turn a reference-project checkpoint ({"backbone", "head"}) into a ferkit one."""
    bb, hd = ckpt["backbone"], ckpt["head"]
    expected = {f"features.{b}.net.{i}.weight" for b in range(3) for i in (0, 1, 3, 4)}
    expected |= {"head.1.weight", "head.4.weight"}
    missing = sorted(expected - set(bb))
    if missing:
        raise CheckpointError(f"reference checkpoint backbone lacks {missing[0]} (and {len(missing) - 1} more): not a seed-cnn")
    if "fc.weight" in hd:
        head, kwargs, num_classes = "softmax", {}, hd["fc.weight"].shape[0]
    elif "weight" in hd:
        head, num_classes = "arcface", hd["weight"].shape[0]
        kwargs = {"s": float(ckpt.get("arc_s", 30.0)), "m": float(ckpt.get("arc_m", 0.5))}
    else:
        raise CheckpointError("reference checkpoint head has neither fc.* (softmax) nor weight (arcface)")
    state = {f"backbone.{k}": v for k, v in bb.items()} | {f"head.{k}": v for k, v in hd.items()}
    names = ckpt.get("class_names") or ckpt.get("classes")
    if names is None:
        from ferkit.data import CLASS_NAMES  # the reference project's alphabetical folder order
        names = list(CLASS_NAMES)
    return {"format": "ferkit", "version": 1, "arch": "seed-cnn", "head": head, "head_kwargs": kwargs,
            "class_names": list(names), "config": {"source": "reference checkpoint"}, "model": state}


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
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
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
            raise CheckpointError(f"refusing to load {path}: it holds a Python object that could run code "
                                  f"({found.group(1)}), and a checkpoint must be data only; re-save its "
                                  f"state_dict from code you trust") from None
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line(e)}") from None
    except Exception as e:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {first_line(e)}") from None


def save_checkpoint(obj: dict, path: Path) -> None:
    """Write a checkpoint so that an interruption never leaves a half-written file (`write_atomic`)."""
    from ferkit.data.store import write_atomic
    write_atomic(Path(path), lambda f: torch.save(obj, f))


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
            raise CheckpointError(f"ferkit checkpoint lacks {', '.join(missing)}: it is incomplete or not made by ferkit")
        if not isinstance(ckpt["model"], dict) or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
            raise CheckpointError("ferkit checkpoint's model is not a state dict of tensors")
        return ckpt
    if "backbone" in ckpt and "head" in ckpt:
        return _from_reference(ckpt)
    keys = ", ".join(sorted(map(str, ckpt))[:6])
    raise CheckpointError(f"unrecognised checkpoint (keys: {keys}): expected a ferkit checkpoint or a reference one with 'backbone' and 'head'")


def load_model(source: str | Path | dict, map_location: str = "cpu") -> tuple[Classifier, dict]:
    """Rebuild a model in eval mode (float32) from a checkpoint; returns (model, info).

    `info` holds `class_names`, `arch`, `head`, `head_kwargs`, `config` and `epoch`.
    """
    ckpt = read_checkpoint(source, map_location)
    model = build_model(ckpt["arch"], ckpt["head"], len(ckpt["class_names"]), **ckpt.get("head_kwargs", {}))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint weights do not fit {ckpt['arch']}/{ckpt['head']}: {first_line(e, line=1)}") from None
    if ckpt.get("posthoc", {}).get("offset") is not None:  # logit adjustment tuned on val
        model = LogitOffset(model, torch.tensor(ckpt["posthoc"]["offset"]))
    model.eval()
    info = {k: ckpt.get(k) for k in ("class_names", "arch", "head", "head_kwargs", "config", "epoch", "val_metrics", "posthoc")}
    return model, info


def count_macs(model: nn.Module, size: int = IMAGE_SIZE) -> int:
    """Multiply-adds of one forward pass on one 1 x size x size image (conv and linear layers)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total


def describe_models(num_classes: int = 7) -> str:
    """A table of the registered architectures: parameters and multiply-adds per 48x48 image."""
    width = max(map(len, ARCHS)) + 2
    lines = [f"{'arch':<{width}}{'params':>12}{'MMACs/img':>12}"]
    for name in ARCHS:
        m = build_model(name, "softmax", num_classes)
        lines.append(f"{name:<{width}}{count_parameters(m):>12,}{count_macs(m) / 1e6:>12.1f}")
    return "\n".join(lines)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of an eval-mode `model` in which each Conv2d -> BatchNorm2d pair of an
    nn.Sequential is one Conv2d (the BatchNorm's affine map folded into the weights and bias).

    The same function (identical up to float rounding), one pass over the activations fewer:
    BatchNorm was a quarter of the evaluation time on the CPU. `model` itself is not changed.
    """
    folded = copy.deepcopy(model)
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None:
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return folded
