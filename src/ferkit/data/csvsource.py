"""The original fer2013.csv: columns emotion, pixels, Usage; one 48x48 face per row."""

from __future__ import annotations

import csv
import io
import warnings
from typing import IO

import numpy as np

from .errors import DataError
from .store import CLASS_NAMES, IMAGE_SIZE, SPLITS, Split

CSV_CODE_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # code -> name
CODE_TO_LABEL = {str(code): CLASS_NAMES.index(name) for code, name in enumerate(CSV_CODE_NAMES)}
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
COLUMNS = ("emotion", "pixels", "Usage")
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE


def parse_pixels(text: str, where: str) -> np.ndarray:
    """ "70 80 82 ..." -> uint8 (48, 48). np.fromstring is ~5x faster than split + int here and,
    with its deprecation turned into an error on old numpy, rejects any non-integer token."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        raise DataError(f"{where}: pixels must be {NUM_PIXELS} integers 0-255 separated by spaces") from None
    if values.size != NUM_PIXELS:
        raise DataError(f"{where}: {values.size} pixel values, expected {NUM_PIXELS} (48x48)")
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: pixel value {values.max() if values.max() > 255 else values.min()} outside 0-255")
    return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def read_fer_csv(f: IO[bytes], name: str) -> dict[str, Split]:
    """Parse a FER-2013 csv stream into train/val/test splits (labels in CLASS_NAMES order).

    Images are named "<name>:line N" (N counts lines of the file from 1; the header is line 1).
    A malformed row is a DataError naming its line and what is wrong."""
    reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig", newline=""))
    try:
        return _read_rows(reader, name)
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(
            f"{name}: unreadable csv near line {reader.line_num + 1} ({e}): expected emotion,pixels,Usage rows"
        ) from None


def _read_rows(reader, name: str) -> dict[str, Split]:
    header = [h.strip() for h in next(reader, [])]
    if not header:
        raise DataError(f"{name} is empty: expected a header line emotion,pixels,Usage")
    for column in COLUMNS:
        if column not in header:
            raise DataError(
                f"{name}:line 1: missing column {column} (header: {','.join(header)}): "
                f"expected columns emotion, pixels, Usage"
            )
    i_emotion, i_pixels, i_usage = (header.index(c) for c in COLUMNS)
    rows: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in SPLITS}
    for row in reader:
        if not row:
            continue  # a blank line holds no data
        where = f"{name}:line {reader.line_num}"
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} fields, expected {len(header)} ({','.join(header)})")
        code = row[i_emotion].strip()
        if code not in CODE_TO_LABEL:
            raise DataError(
                f"{where}: bad emotion code {code!r}: expected 0-6 (0 angry, 1 disgust, "
                f"2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral)"
            )
        usage = row[i_usage].strip()
        if usage not in USAGE_SPLITS:
            raise DataError(f"{where}: unknown Usage {usage!r}: expected Training, PublicTest or PrivateTest")
        images, labels, names = rows[USAGE_SPLITS[usage]]
        images.append(parse_pixels(row[i_pixels], where))
        labels.append(CODE_TO_LABEL[code])
        names.append(f"{name}:line {reader.line_num}")
    return {
        s: Split(
            images=np.stack(images) if images else np.empty((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
            labels=np.array(labels, dtype=np.int64),
            names=names,
        )
        for s, (images, labels, names) in rows.items()
    }
