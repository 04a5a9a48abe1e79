"""The run configuration: one dataclass, named presets, and config-file loading.

Everything a run does is decided by a `RunConfig`; it is written to `config.json` next to the
checkpoints, so that any run can be repeated from that file alone.
"""
from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ferkit.tta import TTA_MODES  # the TTA code owns its modes; a config names one


@dataclass
class RunConfig:
    # data and output
    data_root: str | None = None
    exp: str | None = None            # run name; default: derived from preset/strategy and seed
    runs_dir: str = "runs"
    # model
    arch: str = "seed-cnn"
    head: str = "softmax"             # softmax (a linear layer), cosine, arcface
    arc_s: float = 30.0
    arc_m: float = 0.5
    # strategy: loss, class weights, sampling (independent choices)
    loss: str = "ce"                  # ce, wce, focal, ldam, la, bsoftmax
    weight_mode: str | None = None    # inv, inv_sqrt, effective: class weights for wce (and any loss)
    beta: float = 0.999               # for weight_mode=effective
    gamma: float = 2.0                # focal
    tau: float = 1.0                  # logit adjustment
    label_smoothing: float = 0.0
    sampler: str = "default"          # default (shuffle), balanced (q=0.5), class_balanced (q=0)
    sample_q: float | None = None     # re-sampling with P(class) prop. to n_c ** q; overrides sampler
    reweight_from: int = 1            # epoch from which class weights apply (> 1: deferred, DRW)
    resample_from: int = 1            # epoch from which re-sampling applies (> 1: deferred, DRS)
    mixup: float = 0.0                # mixup alpha (0 = off)
    cutmix: float = 0.0               # cutmix alpha (0 = off)
    # training augmentation beyond the reference's flip/rotate/crop (all off by default)
    scale_jitter: float = 0.0         # zoom by a factor uniform in [1 - s, 1 + s]
    translate: float = 0.0            # extra shift uniform in +-t of the image side
    erase_p: float = 0.0              # random erasing probability
    # progressive resizing: the first small_epochs epochs train on small_size-pixel images (cheaper
    # steps), the rest at 48; the network is fully convolutional, so it takes either size
    small_epochs: int = 0
    small_size: int = 40
    # optimisation
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"           # adam, adamw, sgd (Nesterov)
    schedule: str = "cosine"          # cosine (per epoch), constant
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    seed: int = 42
    amp: bool = False
    device: str = "auto"
    tta: bool | str = False           # test-time augmentation: False/"none", True/"flip", "crops" (5 crops x flip)
    resume: str | None = None
    preset: str | None = None

    def default_exp(self) -> str:
        base = self.preset or f"{self.head}_{self.loss}_{self.sampler}"
        return f"{base}_seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The reference project's recipes. A preset fills these fields; flags given explicitly win.
PRESETS: dict[str, dict[str, Any]] = {
    "E0": {"head": "softmax", "loss": "ce", "sampler": "default"},
    "E1": {"head": "arcface", "loss": "ce", "sampler": "default"},
    "E2": {"head": "softmax", "loss": "wce", "weight_mode": "inv_sqrt", "sampler": "default"},
    "E4": {"head": "softmax", "loss": "focal", "sampler": "default"},
    "E5": {"head": "softmax", "loss": "ce", "sampler": "balanced"},
    "E6": {"head": "arcface", "loss": "focal", "sampler": "default"},
}




class ConfigError(ValueError):
    """A configuration that cannot be run."""


def field_names() -> set[str]:
    return {f.name for f in fields(RunConfig)}


def read_table(path: str | Path, kind: str = "config", suffixes: tuple[str, ...] = (".toml", ".yaml", ".yml", ".json")) -> dict:
    """Parse a TOML, YAML or JSON file that must hold a table; one-line `ConfigError`s for a missing,
    unreadable or malformed file. `kind` names the file in messages (config, sweep)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no {kind} file at {path}")
    if path.suffix not in suffixes:
        raise ConfigError(f"{kind} file {path} must end in {', '.join(suffixes)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {kind} file {path}: {e}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as e:  # tomllib, yaml and json each raise their own error type
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a table (name = value), not a {type(data).__name__}")
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file of RunConfig fields (types checked)."""
    path = Path(path)
    data = read_table(path)
    # A run's config.json also records what the run found on its machine ("run": precision, CPU):
    # information, not a setting, so a config.json can be given back to --config as it is.
    data = {k: v for k, v in data.items() if not (k == "run" and path.suffix == ".json")}
    unknown = set(data) - field_names()
    if unknown:
        raise ConfigError(f"unknown field(s) in {path}: {', '.join(sorted(unknown))}")
    check_types(data, str(path))
    return data


_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "None": (type(None),)}


def check_types(values: dict[str, Any], source: str) -> None:
    """Each value has its RunConfig field's type (a config file may hold anything): `epochs = "three"`,
    `epochs = 1.5` or `amp = "no"` is an error, not a traceback or a silently true flag."""
    annotations = {f.name: f.type for f in fields(RunConfig)}
    for key, value in values.items():
        allowed = annotations[key].replace(" ", "").split("|")
        types = tuple(t for name in allowed for t in _TYPES[name])
        ok = isinstance(value, types) and not (isinstance(value, bool) and "bool" not in allowed)
        if not ok:
            raise ConfigError(f"{source}: {key} must be {' or '.join(allowed)}, got {value!r} ({type(value).__name__})")


def make_config(explicit: dict[str, Any], file_values: dict[str, Any] | None = None) -> RunConfig:
    """Resolve a config: defaults < preset < config file < explicit flags."""
    values: dict[str, Any] = {}
    preset = explicit.get("preset") or (file_values or {}).get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
        values |= PRESETS[preset]
    values |= file_values or {}
    values |= {k: v for k, v in explicit.items() if v is not None}
    cfg = RunConfig(**values)
    validate(cfg)
    if cfg.exp is None:
        cfg.exp = cfg.default_exp()
    return cfg


def validate(cfg: RunConfig) -> None:
    from ferkit.models import ARCHS, FIXED_SIZE_ARCHS, HEADS
    from ferkit.optim import OPTIMIZERS, SCHEDULES
    from ferkit.strategies import LOSSES, WEIGHT_MODES
    from ferkit.strategies.sampling import SAMPLER_Q

    checks = [("arch", ARCHS), ("head", HEADS), ("loss", LOSSES), ("sampler", SAMPLER_Q),
              ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)]
    for name, allowed in checks:
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"unknown {name} {getattr(cfg, name)!r}: choose one of {', '.join(allowed)}")
    if cfg.weight_mode is not None and cfg.weight_mode not in WEIGHT_MODES:
        raise ConfigError(f"unknown weight_mode {cfg.weight_mode!r}: choose one of {', '.join(WEIGHT_MODES)}")
    if cfg.loss == "wce" and cfg.weight_mode is None:
        raise ConfigError("loss wce needs class weights: add --weight_mode inv|inv_sqrt|effective")
    if cfg.reweight_from < 1 or cfg.resample_from < 1 or cfg.warmup_epochs < 0:
        raise ConfigError("reweight_from and resample_from are 1-based epochs (1 = from the start); warmup_epochs >= 0")
    if not (0 <= cfg.scale_jitter < 1 and 0 <= cfg.translate < 0.5 and 0 <= cfg.erase_p <= 1):
        raise ConfigError("scale_jitter must be in [0, 1), translate in [0, 0.5) and erase_p in [0, 1]")
    if cfg.small_epochs < 0 or not 16 <= cfg.small_size <= 48:
        raise ConfigError(f"small_epochs must be >= 0 and small_size in [16, 48] pixels (got {cfg.small_epochs}, {cfg.small_size})")
    if cfg.small_epochs and cfg.arch in FIXED_SIZE_ARCHS:
        raise ConfigError(f"{cfg.arch} takes only 48x48 images (a fully connected layer): progressive resizing "
                          f"(small_epochs) needs a fully convolutional arch such as fer-resnet")
    if cfg.tta not in (True, False, *TTA_MODES):
        raise ConfigError(f"unknown tta {cfg.tta!r}: choose none, flip or crops")
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")
    if cfg.epochs < 0 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise ConfigError("epochs must be >= 0, batch_size >= 1 and lr > 0")
    if cfg.exp is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cfg.exp):
        raise ConfigError(f"--exp {cfg.exp!r} must be a plain folder name (letters, digits, . _ -): runs are "
                          f"created under --runs_dir, never elsewhere")
