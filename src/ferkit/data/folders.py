"""Image-folder trees: find the splits and classes of a tree, then decode every image once.

Two layouts are accepted under the tree root:
  train/, val/, test/   each with one folder per class (the Kaggle "image folders" download)
  train/, test/         test/ files named PublicTest_* go to val, PrivateTest_* to test
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .archives import Source, is_image, join
from .errors import DataError
from .images import ImageError, open_image, to_8bit
from .store import IMAGE_SIZE, SPLITS, Split

EXPECTED = "expected train/, val/, test/ (or train/ + test/ with PublicTest_/PrivateTest_ files)"
SPLIT_ALIASES = {"validation": "val", "valid": "val", "training": "train", "testing": "test"}
SPLIT_FOLDER_NAMES = set(SPLITS) | set(SPLIT_ALIASES)  # a folder holding one of these is a tree
VAL_PREFIX, TEST_PREFIX = "PublicTest_", "PrivateTest_"
BILINEAR = getattr(Image, "Resampling", Image).BILINEAR


@dataclass
class TreePlan:
    """What a tree holds, before decoding: the image files of each split and their classes."""

    prefix: str  # tree root inside the source
    class_names: list[str]  # sorted, lower-case folder names
    files: dict[str, list[tuple[str, int]]]  # split -> [(path in the source, label)], sorted
    notes: list[str] = field(default_factory=list)

    def all_files(self) -> list[str]:
        return [rel for split in self.files.values() for rel, _ in split]


def scan_tree(source: Source, prefix: str, log: Callable[[str], None] = print) -> TreePlan:
    """Check the layout of the tree at `prefix` and list its images; DataError on any problem."""
    where = source.path(prefix)
    dirs, _ = source.children(prefix)
    by_name = {d.lower(): d for d in dirs}

    def no_split(split: str) -> DataError:
        alias = [d for d in dirs if SPLIT_ALIASES.get(d.lower()) == split]
        fix = f"found {alias[0]}/, rename it to {split}/" if alias else EXPECTED
        return DataError(f"no {split}/ folder under {where}: {fix}")

    for split in ("train", "test"):
        if split not in by_name:
            raise no_split(split)
    if "val" not in by_name and any(SPLIT_ALIASES.get(d.lower()) == "val" for d in dirs):
        raise no_split("val")
    for d in dirs:
        if d.lower() not in SPLITS:
            log(f"ignoring {source.path(join(prefix, d))}/: not a split folder")

    split_classes = {s: scan_split(source, join(prefix, by_name[s])) for s in SPLITS if s in by_name}
    notes = []
    if "val" not in split_classes:
        split_classes["val"], split_classes["test"], note = split_by_name(source, split_classes["test"])
        notes.append(note)
        log(note)
    split_classes = {s: split_classes[s] for s in SPLITS}
    check_same_classes(split_classes, where)

    class_names = sorted(split_classes["train"])
    files = {
        s: sorted((rel, class_names.index(c)) for c, rels in classes.items() for rel in rels)
        for s, classes in split_classes.items()
    }
    return TreePlan(prefix=prefix, class_names=class_names, files=files, notes=notes)


def scan_split(source: Source, rel: str) -> dict[str, list[str]]:
    """{class name (lower-case): [image paths]} of one split folder."""
    dirs, files = source.children(rel)
    if files:
        raise DataError(
            f"{source.path(join(rel, files[0]))} is not inside a class folder: "
            f"put each image in {rel.rsplit('/', 1)[-1]}/<class>/"
        )
    if not dirs:
        raise DataError(
            f"no class folders in {source.path(rel)}: expected one folder per class (angry/, disgust/, ...)"
        )
    classes: dict[str, list[str]] = {}
    for d in dirs:
        class_rel = join(rel, d)
        sub, images = source.children(class_rel)
        if sub:
            raise DataError(
                f"unexpected folder {source.path(join(class_rel, sub[0]))}: "
                f"a class folder holds only images; move them up or remove it"
            )
        for f in images:
            if not is_image(f):
                raise DataError(f"{source.path(join(class_rel, f))} is not an image (.jpg/.jpeg/.png/.bmp): remove it")
        if not images:
            raise DataError(
                f"class folder {source.path(class_rel)} is empty: add its images, or remove this class from every split"
            )
        classes.setdefault(d.lower(), []).extend(join(class_rel, f) for f in images)
    return classes


def split_by_name(source: Source, test: dict[str, list[str]]) -> tuple[dict, dict, str]:
    """Split the test/ folder of a train/ + test/ tree into val (PublicTest_*) and test
    (PrivateTest_*), the original FER-2013 Usage split."""
    val_classes: dict[str, list[str]] = {}
    test_classes: dict[str, list[str]] = {}
    for c, rels in test.items():
        for rel in rels:
            base = rel.rsplit("/", 1)[-1]
            if base.startswith(VAL_PREFIX):
                val_classes.setdefault(c, []).append(rel)
            elif base.startswith(TEST_PREFIX):
                test_classes.setdefault(c, []).append(rel)
            else:
                raise DataError(
                    f"{source.path(rel)} is named neither {VAL_PREFIX}* nor {TEST_PREFIX}*: "
                    f"with no val/ folder, test/ is split into val and test by file name; "
                    f"rename it or add a val/ folder"
                )
    n_val = sum(map(len, val_classes.values()))
    n_test = sum(map(len, test_classes.values()))
    note = (
        f"no val/ folder: split test/ by file name into val ({n_val} {VAL_PREFIX}* files) "
        f"and test ({n_test} {TEST_PREFIX}* files)"
    )
    return val_classes, test_classes, note


def check_same_classes(split_classes: dict[str, dict[str, list[str]]], where: str) -> None:
    """Every split must hold the same classes."""
    all_classes = sorted(set().union(*split_classes.values()))
    for c in all_classes:
        present = [s for s in split_classes if c in split_classes[s]]
        missing = [s for s in split_classes if c not in split_classes[s]]
        if missing:
            raise DataError(
                f"class {c} is in {', '.join(present)} but not in {', '.join(missing)} "
                f"under {where}: every split needs the same class folders"
            )


# ----------------------------------------------------------------------------- decoding


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded image bytes -> uint8 (48, 48) grayscale (converted, 16-bit scaled, and resized bilinearly
    if needed); `ImageError` for an empty, unreadable, truncated or oversized file."""
    im = to_8bit(open_image(data, name))
    if im.mode != "L":
        im = im.convert("L")
    if im.size != (IMAGE_SIZE, IMAGE_SIZE):
        im = im.resize((IMAGE_SIZE, IMAGE_SIZE), BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def decode_tree(
    source: Source, plan: TreePlan, skip_bad: bool, log: Callable[[str], None]
) -> tuple[dict[str, Split], list[str]]:
    """Decode every image of `plan` once. Returns the splits and notes (skipped files, if any).

    One process is enough: the full 35,887-image zip decodes in ~5 s on an idle core (8-10 s
    on a busy 2-core machine), inside the 15 s target, so a process pool is not worth its cost."""
    cut = len(plan.prefix) + 1 if plan.prefix else 0
    splits, skipped = {}, []
    for name, files in plan.files.items():
        images = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        keep = np.ones(len(files), dtype=bool)
        for i, (rel, _) in enumerate(files):
            try:
                images[i] = decode_image(source.read(rel), source.path(rel))
                continue
            except ImageError as e:  # says which file and why
                problem = str(e).splitlines()[0]
            except OSError as e:  # unreadable: permissions, a dangling link, a FIFO
                problem = f"{source.path(rel)}: {e.strerror or str(e).splitlines()[0]}"
            except ValueError as e:  # an oversized or damaged zip entry
                problem = f"{source.path(rel)}: {str(e).splitlines()[0]}"
            if not skip_bad:
                raise DataError(
                    f"cannot read image {problem}; fix or delete it, or use --skip-bad to skip unreadable images"
                ) from None
            keep[i] = False
            skipped.append(f"skipped unreadable image {problem}")
            log(skipped[-1])
        labels = np.array([label for _, label in files], dtype=np.int64)
        names = [rel[cut:] for (rel, _), k in zip(files, keep) if k]
        if not keep.all():
            images, labels = images[keep], labels[keep]
        splits[name] = Split(images=images, labels=labels, names=names)
    notes = [f"skipped {len(skipped)} unreadable image(s) (skip_bad)"] + skipped if skipped else []
    if skipped:
        log(notes[0])
    return splits, notes
