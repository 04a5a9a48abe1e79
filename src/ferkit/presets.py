"""Presets: named recipes as plain data (RunConfig fields and values). `--preset NAME` fills these
fields; a config file and explicit flags win over it (ferkit.config.make_config)."""

from __future__ import annotations

from typing import Any

# The reference project's recipes. A preset fills these fields; flags given explicitly win.
PRESETS: dict[str, dict[str, Any]] = {
    "E0": {"head": "softmax", "loss": "ce", "sampler": "default"},
    "E1": {"head": "arcface", "loss": "ce", "sampler": "default"},
    "E2": {"head": "softmax", "loss": "wce", "weight_mode": "inv_sqrt", "sampler": "default"},
    "E4": {"head": "softmax", "loss": "focal", "sampler": "default"},
    "E5": {"head": "softmax", "loss": "ce", "sampler": "balanced"},
    "E6": {"head": "arcface", "loss": "focal", "sampler": "default"},
}
# Whole recipes (architecture, schedule, precision), presets too: `--preset shipped` trains the
# recommended model's recipe, `--preset fast` the fast recipe for this CPU (`resolve_recipe`).
_ADAMW = {
    "batch_size": 128,
    "optimizer": "adamw",
    "weight_decay": 0.05,
    "warmup_epochs": 1,
    "amp": True,
    "tta": "crops",
}
RECIPES: dict[str, dict[str, Any]] = {
    "shipped": PRESETS["E5"] | _ADAMW | {"arch": "fer-resnet", "epochs": 30},
    # test macro-F1 >= 0.576 in at most 12 minutes on a 2-core CPU with native bfloat16 (docs/RESULTS.md)
    "fast-bf16": PRESETS["E5"]
    | _ADAMW
    | {"arch": "fer-resnet-slim", "epochs": 12, "small_epochs": 6, "small_size": 40},
}
PRESETS |= RECIPES | {"fast": {}}


def resolve_recipe(name: str) -> str:
    """A preset's name, with "fast" resolved by this CPU: fast-bf16 where bfloat16 runs natively,
    else fast-fp32 when there is one (docs/PERFORMANCE.md "Time to quality")."""
    if name != "fast":
        return name
    from ferkit.runtime.device import bf16_available  # torch: only a run that asks for "fast" pays for it

    return "fast-bf16" if bf16_available("cpu") or "fast-fp32" not in RECIPES else "fast-fp32"
