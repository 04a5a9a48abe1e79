"""Knowledge distillation: a temperature-scaled KL to a teacher, added to the hard-label loss.

    loss = (1 - alpha) * base_loss(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al., 2015; T^2 keeps the soft term's gradients on the scale of the hard one's as T
grows.) The base loss is any registered loss with its class weights, and the sampler draws the
batches, so distillation composes with every imbalance strategy as an independent choice.

A teacher is one checkpoint, several (an ensemble, averaged in probability or logit space), or a
stored file of teacher logits per image (`save_teacher_logits`). Checkpoint teachers see the very
batch the student sees, augmentation and mixing included; stored logits were computed once on the
un-augmented images, which is cheaper but gives the student the teacher's view of another image
than the one it trains on (docs/TRAINING.md, "Distillation").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TEACHER_SPACES = ("prob", "logit")
LOGITS_FORMAT = "ferkit-teacher-logits"


class TeacherError(ValueError):
    """A teacher that cannot teach this run (unreadable, other classes, other data): one line, exit 2."""


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    t = temperature
    target = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), target, reduction="batchmean", log_target=True) * t * t


def mixed_targets(logits: torch.Tensor, perm: torch.Tensor, lam: float, temperature: float) -> torch.Tensor:
    """Per-image teacher logits -> the targets of a mixed batch (mixup, cutmix): the mixture
    lam * p_a + (1 - lam) * p_b of the two images' distributions at `temperature`, returned as
    logits at that temperature (T log p), so that `kd_loss` softens them back to that mixture.
    A stored teacher needs it: its logits are of the un-mixed images."""
    p = F.softmax(logits.float() / temperature, dim=1)
    return temperature * torch.log((lam * p + (1 - lam) * p[perm]).clamp_min(1e-12))


def average_teachers(logits: list[torch.Tensor], space: str) -> torch.Tensor:
    """An ensemble's logits: the mean of its members' logits ("logit"), or the log of the mean of
    their probabilities ("prob"; a valid logit vector, since softmax(log p) = p)."""
    if space not in TEACHER_SPACES:
        raise TeacherError(f"unknown teacher space {space!r}: choose one of {', '.join(TEACHER_SPACES)}")
    stacked = torch.stack([x.float() for x in logits])
    if space == "logit":
        return stacked.mean(0)
    return torch.logsumexp(F.log_softmax(stacked, dim=2), dim=0) - np.log(len(logits))


class ModelTeacher:
    """Checkpoints run on the student's own batch (the same augmented, mixed images)."""

    needs_index = False

    def __init__(self, models: list[torch.nn.Module], space: str):
        self.models, self.space = models, space
        for m in models:
            m.eval()
            m.requires_grad_(False)

    @torch.no_grad()
    def logits(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return average_teachers([m(x) for m in self.models], self.space)


class StoredTeacher:
    """Logits stored per training image (computed once on the un-augmented images)."""

    needs_index = True

    def __init__(self, logits: torch.Tensor):
        self.stored = logits

    def logits(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if index is None:
            raise TeacherError("stored teacher logits need the batch's image indices")
        return self.stored[index.to(self.stored.device)]


def teacher_paths(spec: str) -> list[Path]:
    """The files of a `--teacher` value: one path, or several separated by commas."""
    paths = [Path(p.strip()) for p in spec.split(",") if p.strip()]
    if not paths:
        raise TeacherError(
            "--teacher is empty: give a checkpoint, several separated by commas, or a .npz of teacher logits"
        )
    for p in paths:
        if not p.is_file():
            raise TeacherError(f"no teacher file at {p}")
    return paths


def load_teacher(
    spec: str, class_names: list[str], data_key: str, n_train: int, space: str, device: torch.device
) -> ModelTeacher | StoredTeacher:
    """The teacher of a run, checked against its data: the same classes in the same order, and for
    stored logits the same dataset (its content key) and number of training images."""
    paths = teacher_paths(spec)
    if len(paths) == 1 and paths[0].suffix == ".npz":
        stored = read_teacher_logits(paths[0])
        if stored["class_names"] != list(class_names):
            raise TeacherError(
                f"{paths[0]} holds logits for classes {', '.join(stored['class_names'])}, "
                f"but this run's are {', '.join(class_names)}"
            )
        if stored["key"] != data_key or len(stored["train"]) != n_train:
            raise TeacherError(
                f"{paths[0]} was computed on another dataset (key {stored['key']}, "
                f"{len(stored['train'])} training images): recompute it on this one"
            )
        return StoredTeacher(torch.from_numpy(stored["train"]).float().to(device))
    if any(p.suffix == ".npz" for p in paths):
        raise TeacherError("a .npz of teacher logits is a teacher on its own: do not mix it with checkpoints")
    from ferkit.models import CheckpointError, load_model  # the one safe checkpoint reader

    models = []
    for p in paths:
        try:
            model, info = load_model(p)
        except CheckpointError as e:
            raise TeacherError(f"teacher {p}: {e}") from None
        if list(info["class_names"]) != list(class_names):
            raise TeacherError(
                f"teacher {p} predicts {', '.join(info['class_names'])}, "
                f"but this run's classes are {', '.join(class_names)}"
            )
        # nn.Module.to takes memory_format (as Tensor.to does); torch's overloads of it leave it out
        models.append(model.to(device, memory_format=torch.channels_last))  # type: ignore[call-overload]
    return ModelTeacher(models, space)


def read_teacher_logits(path: Path) -> dict:
    """A stored-logits file (no pickles: arrays and a JSON-like header only)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != LOGITS_FORMAT:
                raise TeacherError(f"{path} is not a ferkit teacher-logits file")
            out = {"class_names": [str(c) for c in z["class_names"]], "key": str(z["key"])}
            for split in ("train", "val", "test"):
                arr = z[f"{split}_logits"]
                if arr.ndim != 2 or arr.shape[1] != len(out["class_names"]) or not np.isfinite(arr).all():
                    raise TeacherError(f"{path}: {split}_logits must be finite, N x {len(out['class_names'])}")
                out[split] = arr.astype(np.float32)
            return out
    except TeacherError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise TeacherError(f"{path} cannot be read as teacher logits ({type(e).__name__}: {e})") from None


def save_teacher_logits(
    spec: str,
    data,
    out: Path,
    space: str = "prob",
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    amp: bool = True,
) -> Path:
    """Run a teacher (one checkpoint or an ensemble) once over every split's un-augmented images
    and store its logits, float16, with the data's key and class names. The file is what
    `--teacher FILE.npz` reads; val and test logits are kept for reporting the teacher. `amp`: in
    bfloat16 where it runs natively (the logits are stored in float16 anyway)."""
    from ferkit.data.augment import to_input
    from ferkit.runtime.device import autocast

    device = torch.device(device)
    teacher = load_teacher(spec, data.class_names, data.key, len(data.splits["train"]), space, device)
    if not isinstance(teacher, ModelTeacher):
        raise TeacherError("save_teacher_logits runs checkpoints: give .pt files")
    arrays = {}
    for split in ("train", "val", "test"):
        images = torch.from_numpy(data.splits[split].images)
        with autocast(device, amp), torch.inference_mode():
            chunks = [
                teacher.logits(
                    to_input(images[i : i + batch_size]).to(device).contiguous(memory_format=torch.channels_last)
                ).float()
                for i in range(0, len(images), batch_size)
            ]
        arrays[f"{split}_logits"] = torch.cat(chunks).cpu().numpy().astype(np.float16)
    from ferkit.runtime.paths import atomic_write  # whole or not at all, never over an existing file

    # numpy's stubs match **arrays against savez_compressed's allow_pickle: bool (hence the ignore)
    return atomic_write(
        out,
        lambda f: np.savez_compressed(
            f,
            format=np.array(LOGITS_FORMAT),
            class_names=np.array(data.class_names),
            key=np.array(data.key),
            teachers=np.array([str(p) for p in teacher_paths(spec)]),
            **arrays,  # type: ignore[arg-type]
        ),
        overwrite=False,
    )
