"""The reference project's input pipeline and training step, rebuilt for the benchmark.

What the reference project does (and what ferkit replaces): a torch Dataset over an
image-folder tree that opens and decodes every image file on every access and applies
per-image PIL transforms (torchvision's RandomHorizontalFlip(0.5), RandomRotation(15),
RandomCrop(44, padding=4), Resize(48), ToTensor, Normalize(0.5, 0.5), written here with PIL
and numpy because ferkit does not depend on torchvision), a DataLoader with shuffle and worker
processes, and a float32 training step with Adam. Evaluation: the same Dataset without
augmentation, in order, under `torch.no_grad()`.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SIZE, PAD, CROP, MAX_ANGLE = 48, 4, 44, 15.0


def scan_folder(split_dir: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) of every image under split_dir/<class>/, classes sorted by name (ImageFolder's order)."""
    classes = sorted(d.name for d in os.scandir(split_dir) if d.is_dir())
    samples = []
    for label, name in enumerate(classes):
        for root, _, files in sorted(os.walk(split_dir / name)):
            samples += [(os.path.join(root, f), label) for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
    return samples, classes


def train_transform(im: Image.Image) -> Image.Image:
    """Flip (p 0.5), rotate by U(-15, 15) degrees (nearest, fill 0), pad 4 + random 44x44 crop, resize to 48 (bilinear)."""
    if random.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = im.rotate(random.uniform(-MAX_ANGLE, MAX_ANGLE), resample=Image.NEAREST, fillcolor=0)
    padded = Image.new(im.mode, (im.width + 2 * PAD, im.height + 2 * PAD), 0)
    padded.paste(im, (PAD, PAD))
    left = random.randint(0, padded.width - CROP)
    top = random.randint(0, padded.height - CROP)
    im = padded.crop((left, top, left + CROP, top + CROP))
    return im.resize((SIZE, SIZE), Image.BILINEAR)


def to_normalized_tensor(im: Image.Image) -> torch.Tensor:
    """ToTensor + Normalize(0.5, 0.5): uint8 (H, W) -> float (1, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None]
    return (x - 0.5) / 0.5


class FolderDataset(Dataset):
    """Opens and decodes the image file at every access, like torchvision's ImageFolder."""

    def __init__(self, samples: list[tuple[str, int]], augment: bool):
        self.samples = samples
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        with open(path, "rb") as f:
            im = Image.open(f).convert("L")  # the reference's grayscale loader
        if self.augment:
            im = train_transform(im)
        return to_normalized_tensor(im), label


def make_loader(samples: list[tuple[str, int]], train: bool, batch_size: int, workers: int) -> DataLoader:
    """The reference's DataLoader: shuffled and augmented for training, in order for evaluation."""
    return DataLoader(FolderDataset(samples, augment=train), batch_size=batch_size, shuffle=train,
                      num_workers=workers)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               clip_norm: float = 5.0) -> tuple[float, int]:
    """One float32 step (the same arithmetic as ferkit's: CE, Adam, clipping at 5); returns (loss, correct)."""
    logits = model(x, y)
    loss = torch.nn.functional.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    return loss.item(), int((logits.argmax(1) == y).sum())


def train_images(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                 max_steps: int | None = None) -> tuple[int, float]:
    """Train over the loader (at most max_steps batches, new worker processes as in every epoch); (images, seconds)."""
    model.train()
    seen, t0 = 0, time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        train_step(model, optimizer, x, y)
        seen += len(y)
    return seen, time.perf_counter() - t0


@torch.no_grad()
def eval_images(model: torch.nn.Module, loader: DataLoader) -> tuple[int, float]:
    """Predict every image of the loader in float32; (images, seconds)."""
    model.eval()
    seen, t0 = 0, time.perf_counter()
    for x, _ in loader:
        model(x).softmax(1)
        seen += len(x)
    return seen, time.perf_counter() - t0
