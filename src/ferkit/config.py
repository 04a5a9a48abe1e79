"""The run configuration: one dataclass, named presets, and config-file loading.

Everything a run does is decided by a `RunConfig`; it is written to `config.json` next to the
checkpoints, so that any run can be repeated from that file alone.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ferkit.data.store import IMAGE_SIZE
from ferkit.presets import PRESETS, resolve_recipe
from ferkit.tta import TTA_MODES, tta_mode  # the TTA code owns its modes; a config names one


def option(default: Any, help: str, **flag: Any) -> Any:
    """A RunConfig field that is also a `ferkit train` flag: `help` is its help text (the CLI adds the
    default and, for a field named in `choices()`, the allowed values); `flag` holds extra argparse
    settings. The CLI builds every flag from these fields, so each option is written once."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass
class RunConfig:
    # data and output
    data_root: str | None = option(None, "FER-2013 folder, zip, fer2013.csv, or a `ferkit prepare` output")
    exp: str | None = option(
        None, "run name, a plain folder name under --runs_dir (default: <preset or strategy>_seed<seed>)"
    )
    runs_dir: str = option("runs", "where run folders go")
    # model
    arch: str = option("seed-cnn", "architecture (`ferkit models` lists them)")
    head: str = option("softmax", "classifier head (softmax: a linear layer)")
    arc_s: float = option(30.0, "ArcFace scale")
    arc_m: float = option(0.5, "ArcFace additive angular margin (training only)")
    # strategy: loss, class weights, sampling (independent choices)
    loss: str = option("ce", "loss")
    weight_mode: str | None = option(
        None,
        "class weights (default: none), normalised to mean 1: inv 1/n_c, "
        "inv_sqrt 1/sqrt(n_c), effective (1-beta)/(1-beta^n_c)",
    )
    beta: float = option(0.999, "beta of weight_mode=effective")
    gamma: float = option(2.0, "focal loss gamma")
    tau: float = option(1.0, "logit-adjustment tau of the la loss")
    ldam_margin: float = option(0.5, "ldam loss: the largest class margin (the rarest class's), in cosine units")
    label_smoothing: float = option(0.0, "label smoothing of the loss")
    sampler: str = option(
        "default",
        "re-sampling (--sample_q overrides it): default shuffles, balanced draws "
        "class c prop. to sqrt(n_c) (q = 0.5), class_balanced uniformly (q = 0)",
    )
    sample_q: float | None = option(
        None, "re-sample classes prop. to n_c ** q (1 natural, 0.5 balanced, 0 class-balanced)"
    )
    reweight_from: int = option(1, "epoch from which class weights apply (> 1: deferred re-weighting, DRW)")
    resample_from: int = option(1, "epoch from which re-sampling applies (> 1: deferred re-sampling, DRS)")
    defer: str = option(
        "from_epoch", "when deferred re-balancing applies: from_epoch = from reweight_from / resample_from on"
    )
    mixup: float = option(0.0, "mixup alpha, 0 = off")
    cutmix: float = option(0.0, "cutmix alpha, 0 = off")
    # knowledge distillation (ferkit.strategies.distill), an independent choice: off without a teacher
    teacher: str | None = option(
        None,
        "distil from a teacher: a checkpoint, several separated by commas (an ensemble), or stored logits (`ferkit teacher-logits`)",
    )
    kd_alpha: float = option(0.5, "weight of the distillation term (0 = the hard-label loss only)")
    kd_temperature: float = option(4.0, "softmax temperature of the distillation term")
    teacher_space: str = option("prob", "how an ensemble's teachers are averaged")
    # training augmentation beyond the reference's flip/rotate/crop (all off by default)
    scale_jitter: float = option(0.0, "training zoom by a factor in [1 - s, 1 + s], 0 = off")
    translate: float = option(0.0, "training shift of up to +-t of the image side on top of the crop, 0 = off")
    erase_p: float = option(0.0, "random erasing probability, 0 = off")
    # progressive resizing: the first small_epochs epochs train on small_size-pixel images (cheaper
    # steps), the rest at 48; the network is fully convolutional, so it takes either size
    small_epochs: int = option(0, "progressive resizing: train the first N epochs on smaller images")
    small_size: int = option(40, "side in pixels of those smaller images")
    # optimisation
    epochs: int = option(30, "epochs; 0 with --resume evaluates a checkpoint only")
    # a quick try: `--epochs 1 --max_steps 20` trains in seconds (docs/TRAINING.md)
    max_steps: int | None = option(None, "at most N steps per epoch; val and test are still evaluated in full")
    batch_size: int = option(256, "batch size")
    lr: float = option(1e-3, "peak learning rate of the optimiser")
    optimizer: str = option("adam", "optimiser (sgd: Nesterov momentum 0.9)")
    schedule: str = option("cosine", "learning-rate schedule, stepped per epoch")
    warmup_epochs: int = option(0, "linear warm-up epochs before the schedule")
    weight_decay: float = option(0.0, "weight decay (decoupled with adamw)")
    clip_norm: float = option(5.0, "gradient clipping: largest gradient norm")
    seed: int = option(42, "random seed")
    amp: bool = option(
        False,
        "mixed precision: bfloat16 autocast on a CPU with native bf16 (AVX-512 BF16, AMX), "
        "bf16/fp16 on CUDA; float32 elsewhere, and it says so",
    )
    device: str = option("auto", "auto, cpu or cuda")
    tta: str = option("none", "test-time augmentation at evaluation (its flag: ferkit.commands.options.add_tta)")
    resume: str | None = option(None, "a last.pt to continue, or any checkpoint with --epochs 0 to evaluate")
    preset: str | None = option(
        None,
        "a recipe (explicit flags win over it): the reference's E0-E6 (strategy only), "
        "shipped (the recommended model's whole recipe), fast (the fast recipe for this CPU)",
    )

    def default_exp(self) -> str:
        base = self.preset or f"{self.head}_{self.loss}_{self.sampler}"
        return f"{base}_seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConfigError(ValueError):
    """A configuration that cannot be run."""


def field_names() -> set[str]:
    return {f.name for f in fields(RunConfig)}


def read_table(
    path: str | Path, kind: str = "config", suffixes: tuple[str, ...] = (".toml", ".yaml", ".yml", ".json")
) -> dict:
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
    if isinstance(data.get("tta"), bool):  # configs written before tta was a mode name: False/True
        data["tta"] = tta_mode(data["tta"])
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
        values |= PRESETS[resolve_recipe(preset)]
    values |= file_values or {}
    values |= {k: v for k, v in explicit.items() if v is not None}
    if isinstance(values.get("tta"), bool):  # configs written before tta was a mode name: False/True
        values["tta"] = tta_mode(values["tta"])
    cfg = RunConfig(**values)
    validate(cfg)
    if cfg.exp is None:
        cfg.exp = cfg.default_exp()
    return cfg


def choices(name: str) -> tuple[str, ...] | None:
    """The allowed values of a RunConfig field that names a registry entry, or None for a free field.
    The one list that validation checks and the CLI's help shows."""
    from ferkit.models import ARCHS, HEADS
    from ferkit.optim import OPTIMIZERS, SCHEDULES
    from ferkit.strategies import DEFERRALS, LOSSES, SAMPLERS, WEIGHT_MODES
    from ferkit.strategies.distill import TEACHER_SPACES

    registries: dict[str, Any] = {
        "arch": ARCHS,
        "head": HEADS,
        "loss": LOSSES,
        "sampler": SAMPLERS,
        "weight_mode": WEIGHT_MODES,
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "tta": TTA_MODES,
        "preset": PRESETS,
        "teacher_space": TEACHER_SPACES,
        "defer": DEFERRALS,
    }
    return tuple(registries[name]) if name in registries else None


def check_strategy(cfg: RunConfig) -> None:
    """The strategy's own checks (a loss that needs class weights, ...), declared with it in
    `ferkit.strategies`: its last epoch is built once on made-up counts, before any data is read."""
    from ferkit.strategies import for_epoch

    try:
        for_epoch(cfg, np.ones(2), cfg.epochs)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def validate(cfg: RunConfig) -> None:
    from ferkit.models import FIXED_SIZE_ARCHS

    for name in (
        "arch",
        "head",
        "loss",
        "sampler",
        "optimizer",
        "schedule",
        "tta",
        "weight_mode",
        "teacher_space",
        "defer",
    ):
        value, allowed = getattr(cfg, name), choices(name) or ()
        if value not in allowed and not (name == "weight_mode" and value is None):
            raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
    if cfg.small_epochs and cfg.arch in FIXED_SIZE_ARCHS:
        raise ConfigError(
            f"{cfg.arch} takes only 48x48 images (a fully connected layer): progressive resizing "
            f"(small_epochs) needs a fully convolutional arch such as fer-resnet"
        )
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")
    for name, bound in RANGES.items():  # each field's range, declared once below
        bound.check(name, getattr(cfg, name, None))
    if not (0 <= cfg.kd_alpha <= 1 and cfg.kd_temperature > 0):
        raise ConfigError(
            f"kd_alpha must be in [0, 1] and kd_temperature > 0 (got {cfg.kd_alpha}, {cfg.kd_temperature})"
        )
    if cfg.exp is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cfg.exp):
        raise ConfigError(
            f"--exp {cfg.exp!r} must be a plain folder name (letters, digits, . _ -): runs are "
            f"created under --runs_dir, never elsewhere"
        )
    check_strategy(cfg)


@dataclass(frozen=True)
class Bound:
    """The range of a numeric option, declared once where the option is: `check` raises the one-line
    ConfigError; `arg(kind)` is the argparse type that parses a flag and checks it (one line, exit 2),
    before any work starts. `open_low`/`open_high` exclude the bound itself."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low}"
        return f"{'<' if self.open_high else '<='} {self.high}"

    def ok(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.open_high and value == self.high))

    def check(self, name: str, value: float | None) -> None:
        if value is not None and not self.ok(value):
            raise ConfigError(f"{name} must be {self.describe()} (got {value})")

    def arg(self, kind: type = int) -> Any:
        import argparse

        def parse(text: str) -> Any:
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{text!r} is not {'an integer' if kind is int else 'a number'}"
                ) from None
            if not self.ok(value):
                raise argparse.ArgumentTypeError(f"must be {self.describe()} (got {text})")
            return value

        parse.__name__ = kind.__name__
        return parse


# The ranges of RunConfig's numeric fields (a field not named here takes any finite number).
RANGES: dict[str, Bound] = {
    "epochs": Bound(0),
    "max_steps": Bound(1),
    "batch_size": Bound(1),
    "lr": Bound(0, open_low=True),
    "weight_decay": Bound(0),
    "warmup_epochs": Bound(0),
    "clip_norm": Bound(0, open_low=True),
    "reweight_from": Bound(1),
    "resample_from": Bound(1),
    "label_smoothing": Bound(0, 1, open_high=True),
    "beta": Bound(0, 1, open_high=True),
    "gamma": Bound(0),
    "ldam_margin": Bound(0),
    "mixup": Bound(0),
    "cutmix": Bound(0),
    "arc_s": Bound(0, open_low=True),
    "arc_m": Bound(0),
    "scale_jitter": Bound(0, 1, open_high=True),
    "translate": Bound(0, 0.5, open_high=True),
    "erase_p": Bound(0, 1),
    "small_epochs": Bound(0),
    "small_size": Bound(16, IMAGE_SIZE),
}
# What a resumed run may take from the command line: where the data and the device are now.
RESUME_FREE = {"data_root", "resume", "device"}


def check_resume(given: dict[str, Any], saved: dict[str, Any], resume: str) -> None:
    """Refuse the settings given for a resumed run (its flags and config file) that differ from
    `saved`, the checkpoint's configuration, which a resumed run keeps: one line naming each flag,
    rather than a run that silently ignores it."""
    defaults = RunConfig().to_dict()  # a field an older checkpoint lacks was at its default

    def norm(key: str, value: Any) -> Any:
        return tta_mode(value) if key == "tta" and value is not None else value

    conflicts = sorted(
        k
        for k, v in given.items()
        if k not in RESUME_FREE and k in defaults and norm(k, v) != norm(k, saved.get(k, defaults[k]))
    )
    if conflicts:
        flags = ", ".join(f"--{k} {given[k]}" for k in conflicts)
        kept = ", ".join(f"{k} {saved.get(k, defaults[k])!r}" for k in conflicts)
        raise ConfigError(
            f"{flags}: --resume {resume} continues a run trained with {kept} and keeps it; drop the "
            f"flag, or start a new run (another --exp)"
        )
