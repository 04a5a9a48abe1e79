"""Post-hoc adjustment of a trained classifier, tuned on **val** only and saved with the model.

- `la`: logit adjustment (Menon et al. 2021): predict argmax f(x) - tau * log prior.
- `taunorm`: tau-normalisation (Kang et al. 2020): class weight vectors w_c / ||w_c||^tau.
- `crt`: classifier re-training (Kang et al. 2020): freeze the backbone, re-initialise the head and
  train it with class-balanced sampling. ferkit trains it on features computed once without
  augmentation (seconds on a CPU), which is the cheap variant of the recipe.
Each returns a ferkit checkpoint dict with a `posthoc` entry that records what was done and the
val search, so that `load_model` rebuilds the adjusted model.

- `temperature`: temperature scaling (Guo et al. 2017), one scalar fitted by NLL on val in float32
  for each TTA mode (single view is the default; averaged views are softer and need less), stored as the checkpoint's `calibration` entry with the prior the model learned
  (`ferkit.calibration.effective_prior`) and the train prior; the weights are kept as they are
  (byte for byte), and it combines with the other methods (fitted after them). Predictor, `predict`
  and `serve` apply it (docs/INFERENCE.md, "Calibration").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ferkit.calibration import TINY, calibration_metrics, effective_prior, fit_temperature, softmax
from ferkit.evaluate import predict_proba
from ferkit.metrics import compute_metrics
from ferkit.models.heads import CosineHead, SoftmaxHead
from ferkit.models.registry import Classifier

TAUS = [round(t, 2) for t in np.arange(0.0, 2.01, 0.1)]


def log_prior(counts: np.ndarray) -> torch.Tensor:
    n = np.asarray(counts, dtype=np.float64)
    return torch.tensor(np.log(n / n.sum()), dtype=torch.float32)


def _val_f1(scores: np.ndarray, labels: np.ndarray, class_names: list[str]) -> float:
    return compute_metrics(labels, scores.argmax(1), class_names)["macro_f1"]


def search_logit_adjustment(
    model: nn.Module, val, counts: np.ndarray, class_names: list[str], amp: bool = False, taus: list[float] = TAUS
) -> dict:
    """Choose tau on val: one forward pass, then argmax(log p - tau log prior) for each tau."""
    logp = np.log(predict_proba(model, val.images, amp=amp) + 1e-12)
    lp = log_prior(counts).numpy()
    table = {t: _val_f1(logp - t * lp, val.labels, class_names) for t in taus}
    best = max(table, key=lambda t: (table[t], -abs(t)))  # ties: the smaller adjustment
    return {"method": "la", "tau": best, "val_macro_f1": table[best], "search": table, "offset": (best * lp).tolist()}


def _class_vectors(model: Classifier) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the head's class weight vectors, its bias or None): a softmax head's `fc`, a cosine head's `weight`."""
    head = model.head
    if isinstance(head, SoftmaxHead):
        return head.fc.weight, head.fc.bias
    if isinstance(head, CosineHead):
        return head.weight, None
    raise TypeError(f"tau-normalisation needs a softmax or cosine head, not {type(head).__name__}")


def apply_tau_norm(model: Classifier, tau: float) -> Classifier:
    """A copy whose class weight vectors are divided by their norm ** tau (bias kept at 0 for tau > 0)."""
    m = copy.deepcopy(model)
    w, bias = _class_vectors(m)
    with torch.no_grad():
        w.div_(w.norm(dim=1, keepdim=True).pow(tau))
        if tau > 0 and bias is not None:
            bias.zero_()  # Kang et al. use a bias-free classifier
    return m


def search_tau_norm(
    model: Classifier, val, class_names: list[str], amp: bool = False, taus: list[float] = TAUS
) -> tuple[Classifier, dict]:
    """Choose the tau-normalisation exponent on val."""
    table = {}
    for t in taus:
        table[t] = _val_f1(predict_proba(apply_tau_norm(model, t), val.images, amp=amp), val.labels, class_names)
    best = max(table, key=lambda t: (table[t], -abs(t)))
    return apply_tau_norm(model, best), {"method": "taunorm", "tau": best, "val_macro_f1": table[best], "search": table}


@torch.inference_mode()
def _features(model: Classifier, images: np.ndarray, batch: int = 1024) -> torch.Tensor:
    from ferkit.models import to_input

    model.eval()
    return torch.cat(
        [model.backbone(to_input(torch.as_tensor(images[i : i + batch]))) for i in range(0, len(images), batch)]
    )


def classifier_retrain(
    model: Classifier, data, epochs: int = 10, lr: float = 1e-3, batch_size: int = 256, seed: int = 0
) -> tuple[Classifier, dict]:
    """cRT: new head on frozen features, class-balanced sampling; keep the epoch with the best val macro-F1."""
    if epochs < 1:
        raise ValueError(f"classifier re-training needs at least 1 epoch (got {epochs})")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, val, names = data.splits["train"], data.splits["val"], data.class_names
    f_train, f_val = _features(model, train.images), _features(model, val.images)
    y = torch.as_tensor(train.labels)
    counts = np.bincount(train.labels, minlength=len(names))
    weights = torch.as_tensor(1.0 / counts[train.labels], dtype=torch.float64)  # q = 0: class-balanced
    m = copy.deepcopy(model)
    head = m.head
    for p in head.parameters():  # re-initialise, as cRT prescribes
        nn.init.normal_(p, std=0.01) if p.dim() > 1 else nn.init.zeros_(p)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    best_f1, best_state, history = -1.0, copy.deepcopy(head.state_dict()), []
    for _ in range(epochs):
        head.train()
        order = torch.multinomial(weights, len(y), replacement=True, generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(head(f_train[idx], y[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.inference_mode():
            f1 = _val_f1(head(f_val).numpy(), val.labels, names)
        history.append(round(f1, 6))
        if f1 > best_f1:
            best_f1, best_state = f1, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    m.eval()
    return m, {"method": "crt", "epochs": epochs, "lr": lr, "val_macro_f1": best_f1, "val_history": history}


def fit_calibration(model: nn.Module, data, ckpt: dict) -> dict:
    """The `calibration` record of a checkpoint: a temperature fitted by NLL on val for each TTA mode
    (float32; test is never read), `temperature` the single view's, the prior the model learned and
    the train prior, and val's measures before and after."""
    from ferkit.tta import TTA_MODES

    val = data.splits["val"]
    temperatures, measures = {}, {}
    for mode in TTA_MODES:
        probs = predict_proba(model, val.images, "cpu", amp=False, tta=mode)
        logp = np.log(np.maximum(probs, TINY))
        temperatures[mode] = t = round(fit_temperature(logp, val.labels), 6)
        measures[mode] = {
            "before": calibration_metrics(probs, val.labels),
            "after": calibration_metrics(softmax(logp, t), val.labels),
        }
        if mode == "none":
            f1 = _val_f1(probs, val.labels, data.class_names)
    counts = np.bincount(data.splits["train"].labels, minlength=len(data.class_names))
    prior = ckpt.get("model_prior") if not ckpt.get("posthoc") else None  # recorded at training time
    if prior is None:
        prior = effective_prior(ckpt.get("config") or {}, counts, ckpt.get("posthoc"), ckpt.get("epoch")).tolist()
    return {
        "method": "temperature",
        "temperature": temperatures["none"],
        "fitted_on": "val",
        "tta": "none",
        "temperatures": temperatures,
        "precision": "float32",
        "model_prior": [float(v) for v in prior],
        "train_prior": (counts / counts.sum()).tolist(),
        "val_macro_f1": f1,
        "val": measures,
    }


METHODS: dict[str, Callable[..., tuple[nn.Module, dict]]] = {
    "la": lambda model, data, counts, amp, **_: (
        model,
        search_logit_adjustment(model, data.splits["val"], counts, data.class_names, amp),
    ),
    "taunorm": lambda model, data, counts, amp, **_: search_tau_norm(model, data.splits["val"], data.class_names, amp),
    "crt": lambda model, data, counts, amp, crt_epochs=10, **_: classifier_retrain(model, data, epochs=crt_epochs),
    "temperature": lambda model, data, counts, amp, ckpt=None, **_: (model, fit_calibration(model, data, ckpt or {})),
}
"""The post-hoc methods by name: `ferkit posthoc --method NAME` looks a name up here.

Each entry tunes itself on val (never test) and is called as `method(model, data, counts, amp, **settings)`.

Parameters
----------
model : Classifier
    The trained model (`load_model`), in eval mode.
data : FerData
    The dataset; only its train counts and its val split are read.
counts : np.ndarray
    The training set's images per class.
amp : bool
    Whether to predict under bfloat16 autocast.
**settings
    `crt_epochs` (crt), `ckpt` (temperature: the checkpoint dict); an entry ignores the others.

Returns
-------
tuple of (nn.Module, dict)
    The adjusted model and what was chosen (`method`, `val_macro_f1`, the val search, ...), saved
    as the checkpoint's `posthoc` entry (`calibration` for temperature).

Examples
--------
A new method is a function and one line::

    METHODS["mine"] = lambda model, data, counts, amp, **_: tune_mine(model, data)
"""


def describe(result: dict) -> str:
    """One line for `ferkit posthoc`: what was fitted on val."""
    if result["method"] == "temperature":
        before, after = result["val"]["none"]["before"], result["val"]["none"]["after"]
        return (
            f"temperature {result['temperature']:.3f} (val, single view; TTA "
            + ", ".join(f"{m} {t:.3f}" for m, t in result["temperatures"].items() if m != "none")
            + f"): val ECE "
            f"{before['ece']:.4f} -> {after['ece']:.4f}, NLL {before['nll']:.4f} -> {after['nll']:.4f}; "
            f"predictions unchanged (val macro-F1 {result['val_macro_f1']:.4f})"
        )
    return f"{result['method']}: val macro-F1 {result['val_macro_f1']:.4f}" + (
        f" at tau {result['tau']}" if "tau" in result else ""
    )


def adjust_checkpoint(ckpt: dict, data, method: str, amp: bool = False, crt_epochs: int = 10) -> dict:
    """Tune `method` (a key of METHODS) on val for a ferkit checkpoint dict; return the adjusted checkpoint dict."""
    from ferkit.models import load_model

    if method == "temperature":  # calibrates whatever the checkpoint predicts, post-hoc adjusted or not
        model, _ = load_model(ckpt)
        return ckpt | {"calibration": METHODS[method](model, data, None, False, ckpt=ckpt)[1]}
    if ckpt.get("posthoc"):
        raise ValueError(
            f"this checkpoint already has a post-hoc adjustment ({ckpt['posthoc']['method']}): start from the trained one"
        )
    if method not in METHODS:
        raise ValueError(f"unknown post-hoc method {method!r}: choose one of {', '.join(METHODS)}")
    model, info = load_model(ckpt)
    counts = np.bincount(data.splits["train"].labels, minlength=len(data.class_names))
    model, result = METHODS[method](model, data, counts, amp, crt_epochs=crt_epochs)
    result["search"] = {str(k): round(v, 6) for k, v in result.get("search", {}).items()}
    return ckpt | {"model": model.state_dict(), "posthoc": result}


def adjust_file(
    ckpt_path: str | Path,
    method: str,
    out: str | Path,
    data_root: str | None = None,
    crt_epochs: int = 10,
    force: bool = False,
) -> dict:
    """`ferkit posthoc`: tune `method` on val for the checkpoint file `ckpt_path` and save the adjusted
    checkpoint at `out`; returns its `posthoc` entry. `out` is checked before the data loads
    (`check_output`: never the checkpoint itself or the data; an existing file only with `force`)."""
    from ferkit.config import ConfigError
    from ferkit.data import load_data
    from ferkit.evaluate import data_root_of, match_classes
    from ferkit.models import read_checkpoint, save_checkpoint
    from ferkit.runtime.paths import check_output

    if method not in METHODS:
        raise ConfigError(f"unknown post-hoc method {method!r}: choose one of {', '.join(METHODS)}")
    ckpt = read_checkpoint(ckpt_path)
    root = data_root_of(data_root, ckpt.get("config", {}))
    out = check_output(out, inputs=[ckpt_path, root], force=force)
    data = match_classes(load_data(root), ckpt["class_names"])
    try:
        new = adjust_checkpoint(ckpt, data, method, ckpt.get("config", {}).get("amp", False), crt_epochs)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for key in ("optimizer", "scheduler", "rng", "history"):  # a last.pt's training state does not apply any more
        new.pop(key, None)
    if method == "temperature":
        new["calibration"]["source"] = str(ckpt_path)
    save_checkpoint(new, out)
    return new["calibration"] if method == "temperature" else new["posthoc"]
