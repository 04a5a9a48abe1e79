"""FER-2013 ingestion on tiny synthetic datasets: every accepted form, the cache, every bad input."""
from __future__ import annotations

import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth import (
    CLASSES,
    CSV_CODES,
    Log,
    assert_same_data,
    csv_rows,
    default_counts,
    make_fer_csv,
    make_image_folders,
    pixels,
    write_image,
    zip_folder,
)

import ferkit.data.folders as folders
from ferkit.data import CLASS_NAMES, DataError, FerData, format_counts, load_data, prepare


def load(root, tmp_path, **kw) -> FerData:
    kw.setdefault("log", Log())
    return load_data(root, cache_dir=tmp_path / "cache", **kw)


def error(root, tmp_path, **kw) -> str:
    """The DataError message of loading `root`; it must be one line."""
    with pytest.raises(DataError) as info:
        load(root, tmp_path, **kw)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# ----------------------------------------------------------------------------- accepted forms

def test_class_names_are_alphabetical():
    assert CLASS_NAMES == sorted(CLASS_NAMES) == CLASSES


def test_image_folders(tmp_path):
    root = make_image_folders(tmp_path / "fer2013", default_counts(2))
    data = load(root, tmp_path)
    assert data.class_names == CLASS_NAMES
    assert list(data.splits) == ["train", "val", "test"]
    for split_name, split in data.splits.items():
        assert split.images.dtype == np.uint8 and split.images.shape == (14, 48, 48)
        assert split.labels.dtype == np.int64
        assert data.counts(split_name).tolist() == [2] * 7
        for image, label, name in zip(split.images, split.labels, split.names):
            split_dir, cls, file = name.split("/")
            assert split_dir == split_name and cls == CLASS_NAMES[label]
            np.testing.assert_array_equal(image, pixels(name))  # PNG: lossless, exact pixels
    assert data.notes == [] and data.source == str(root) and len(data.key) == 32


@pytest.mark.parametrize("tree_name", ["fer2013", "FER2013_ImageFolders"])
def test_parent_folder_with_one_tree(tmp_path, tree_name):
    make_image_folders(tmp_path / "data" / tree_name)
    log = Log()
    data = load(tmp_path / "data", tmp_path, log=log)
    assert data.counts("train").tolist() == [1] * 7
    assert data.splits["val"].names[0] == "val/angry/PublicTest_angry_0.png"  # relative to the tree
    assert log.has(tree_name)


@pytest.mark.parametrize("arc_prefix", ["fer2013", "", "data/FER2013_ImageFolders"])
def test_zip_of_folders_equals_folders(tmp_path, arc_prefix):
    root = make_image_folders(tmp_path / "fer2013")
    zip_path = zip_folder(root, tmp_path / "fer.zip", arc_prefix=arc_prefix, junk=True)
    from_zip = load(zip_path, tmp_path)
    assert_same_data(from_zip, load(root, tmp_path))
    assert from_zip.source == str(zip_path)


def test_zip_with_folder_entries(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    zip_path = zip_folder(root, tmp_path / "fer.zip", arc_prefix="fer2013", dir_entries=True)
    assert "fer2013/train/angry/" in zipfile.ZipFile(zip_path).namelist()
    assert_same_data(load(zip_path, tmp_path), load(root, tmp_path))


def test_two_split_tree_is_split_by_file_name(tmp_path):
    root = tmp_path / "fer2013"
    make_image_folders(root, {"train": {c: 1 for c in CLASSES}, "test": {c: 2 for c in CLASSES}},
                       prefix={"test": "PrivateTest_"})
    make_image_folders(root, {"test": {c: 1 for c in CLASSES}}, prefix={"test": "PublicTest_"})
    log = Log()
    data = load(root, tmp_path, log=log)
    assert data.counts("val").tolist() == [1] * 7 and data.counts("test").tolist() == [2] * 7
    assert all(n.startswith("test/") and "/PublicTest_" in n for n in data.splits["val"].names)
    assert all("/PrivateTest_" in n for n in data.splits["test"].names)
    assert len(data.notes) == 1 and "PublicTest_" in data.notes[0] and "7" in data.notes[0]
    assert log.has(data.notes[0])


def test_csv(tmp_path):
    path = make_fer_csv(tmp_path / "fer2013.csv", n_per_class=2)
    data = load(path, tmp_path)
    assert data.class_names == CLASS_NAMES
    rows = csv_rows(2)
    seen = 0
    for split_name, usage in [("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")]:
        split = data.splits[split_name]
        assert data.counts(split_name).tolist() == [2] * 7
        for image, label, name in zip(split.images, split.labels, split.names):
            line = int(name.removeprefix("fer2013.csv:line "))
            code, row_usage, px = rows[line - 2]  # line 1 is the header
            assert row_usage == usage and CLASS_NAMES[label] == CSV_CODES[code]
            np.testing.assert_array_equal(image, px)
            seen += 1
    assert seen == len(rows) == 42
    # the code order differs from the class order: code 4 is sad (index 5), 6 neutral (index 4)
    assert CLASS_NAMES[data.splits["train"].labels[data.splits["train"].names.index("fer2013.csv:line 10")]] == "sad"


def test_zip_of_csv(tmp_path):
    path = make_fer_csv(tmp_path / "src" / "fer2013.csv")
    zip_path = tmp_path / "fer2013.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(path, "fer2013/fer2013.csv")
    assert_same_data(load(zip_path, tmp_path), load(path, tmp_path))


def test_prepare_then_load_prepared_dir(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    out = tmp_path / "out" / "nested"
    prepared = prepare(root, out, log=Log(), cache_dir=tmp_path / "cache")
    assert (out / "ferkit_store.npz").is_file() and (out / "ferkit_store.json").is_file()
    assert not list(out.glob("*.tmp"))
    log = Log()
    again = load(out, tmp_path, log=log)
    assert_same_data(again, prepared)
    assert again.key == prepared.key and log.has("prepared store")


def test_colour_and_large_images_become_48x48_gray(tmp_path):
    root = tmp_path / "fer2013"
    make_image_folders(root, default_counts(1), size=64, color=True, ext="jpg")
    write_image(root / "train" / "angry" / "extra.BMP", pixels("x", 30, color=True))
    data = load(root, tmp_path)
    split = data.splits["train"]
    assert split.images.shape == (8, 48, 48)
    i = split.names.index("train/angry/extra.BMP")
    expected = Image.fromarray(pixels("x", 30, color=True)).convert("L").resize((48, 48), Image.BILINEAR)
    np.testing.assert_array_equal(split.images[i], np.asarray(expected))


def test_class_names_come_from_folders_lower_cased(tmp_path):
    root = make_image_folders(tmp_path / "fer2013", {s: {"Happy": 1, "calm": 1} for s in ("train", "val", "test")})
    data = load(root, tmp_path)
    assert data.class_names == ["calm", "happy"]
    assert data.splits["train"].names == ["train/Happy/Training_Happy_0.png", "train/calm/Training_calm_0.png"]
    assert data.splits["train"].labels.tolist() == [1, 0]


def test_same_file_name_in_two_classes_is_kept_twice(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    write_image(root / "train" / "angry" / "same.png", pixels("a"))
    write_image(root / "train" / "happy" / "same.png", pixels("b"))
    split = load(root, tmp_path).splits["train"]
    a, b = split.names.index("train/angry/same.png"), split.names.index("train/happy/same.png")
    assert CLASS_NAMES[split.labels[a]] == "angry" and CLASS_NAMES[split.labels[b]] == "happy"
    assert not np.array_equal(split.images[a], split.images[b])


def test_cache_hit_is_fast_and_identical(tmp_path, monkeypatch):
    root = make_image_folders(tmp_path / "fer2013")
    first = load(root, tmp_path)
    assert len(list((tmp_path / "cache").glob("store-*.npz"))) == 1

    def no_decoding(data):
        raise AssertionError("a cache hit must not decode images")

    monkeypatch.setattr(folders, "decode_image", no_decoding)
    log = Log()
    start = time.perf_counter()
    second = load(root, tmp_path, log=log)
    assert time.perf_counter() - start < 1.0
    assert_same_data(first, second)
    assert second.key == first.key and log.has("cached store")


def test_default_cache_dir_is_ferkit_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FERKIT_CACHE", str(tmp_path / "env-cache"))
    load_data(make_image_folders(tmp_path / "fer2013"), log=Log())
    assert len(list((tmp_path / "env-cache").glob("store-*.json"))) == 1


def test_cache_miss_after_content_changes(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    first = load(root, tmp_path)
    changed = root / "train" / "angry" / "Training_angry_0.png"
    write_image(changed, pixels("new content"))
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # coarse mtime clocks
    log = Log()
    second = load(root, tmp_path, log=log)
    assert second.key != first.key and log.has("decoding")
    i = second.splits["train"].names.index("train/angry/Training_angry_0.png")
    np.testing.assert_array_equal(second.splits["train"].images[i], pixels("new content"))
    assert len(list((tmp_path / "cache").glob("store-*.npz"))) == 2


def test_csv_cache_miss_after_content_changes(tmp_path):
    path = make_fer_csv(tmp_path / "fer2013.csv")
    first = load(path, tmp_path)
    make_fer_csv(path, n_per_class=2)
    assert load(path, tmp_path).key != first.key


def test_format_counts(tmp_path):
    data = load(make_image_folders(tmp_path / "fer2013", default_counts(2)), tmp_path)
    table = format_counts(data).splitlines()
    assert table[0].split() == ["split", *CLASS_NAMES, "total"]
    assert table[1].split() == ["train"] + ["2"] * 7 + ["14"]
    assert table[-1].split() == ["all"] + ["6"] * 7 + ["42"]


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("old, new, expected", [
    ("val", "validation", "no val/ folder under {root}: found validation/, rename it to val/"),
    ("val", "valid", "no val/ folder under {root}: found valid/, rename it to val/"),
    ("test", "testing", "no test/ folder under {root}: found testing/, rename it to test/"),
    ("train", "Trainingset", "no train/ folder under {root}: expected train/, val/, test/"),
    ("test", None, "no test/ folder under {root}: expected train/, val/, test/"),
])
def test_missing_or_misnamed_split_folder(tmp_path, old, new, expected):
    root = make_image_folders(tmp_path / "fer2013")
    if new:
        (root / old).rename(root / new)
    else:
        shutil.rmtree(root / old)
    assert expected.format(root=root) in error(root, tmp_path)


def test_two_split_tree_with_unsplittable_test_file(tmp_path):
    root = make_image_folders(tmp_path / "fer2013", default_counts(1, ("train", "test")))
    write_image(root / "test" / "fear" / "img_7.png", pixels("x"))
    message = error(root, tmp_path)
    assert "img_7.png" in message and "PublicTest_" in message and "PrivateTest_" in message


def test_class_missing_from_a_split(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    shutil.rmtree(root / "val" / "disgust")
    message = error(root, tmp_path)
    assert "class disgust" in message and "train, test" in message and "not in val" in message


def test_empty_class_folder(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    for f in (root / "test" / "sad").iterdir():
        f.unlink()
    (root / "test" / "sad" / ".DS_Store").write_bytes(b"junk")
    message = error(root, tmp_path)
    assert "is empty" in message and str(Path("test") / "sad") in message


def test_empty_class_folder_in_zip(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    for f in (root / "test" / "sad").iterdir():
        f.unlink()
    zip_path = zip_folder(root, tmp_path / "fer.zip", arc_prefix="fer2013", dir_entries=True)
    assert "fer2013/test/sad is empty" in error(zip_path, tmp_path)


def test_non_image_file_in_class_folder(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    (root / "train" / "happy" / "Thumbs.db").write_bytes(b"junk")  # known junk: ignored
    (root / "train" / ".DS_Store").write_bytes(b"junk")
    assert load(root, tmp_path).counts("train").tolist() == [1] * 7
    (root / "train" / "happy" / "notes.txt").write_text("hello")
    message = error(root, tmp_path)
    assert "notes.txt" in message and "not an image" in message


@pytest.mark.parametrize("where", ["split", "nested"])
def test_image_outside_a_class_folder(tmp_path, where):
    root = make_image_folders(tmp_path / "fer2013")
    path = root / "train" / "loose.png" if where == "split" else root / "train" / "fear" / "sub" / "x.png"
    write_image(path, pixels("x"))
    message = error(root, tmp_path)
    assert ("loose.png" in message) if where == "split" else ("sub" in message)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_image(tmp_path, ext):
    root = make_image_folders(tmp_path / "fer2013", ext=ext)
    truncate(root / "val" / "fear" / f"PublicTest_fear_0.{ext}")
    message = error(root, tmp_path)
    assert f"PublicTest_fear_0.{ext}" in message and "skip" in message


def test_truncated_image_even_if_pil_is_told_to_load_truncated(tmp_path, monkeypatch):
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    root = make_image_folders(tmp_path / "fer2013", ext="jpg")
    truncate(root / "train" / "fear" / "Training_fear_0.jpg")
    assert "Training_fear_0.jpg" in error(root, tmp_path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_skip_bad_skips_and_reports(tmp_path):
    root = make_image_folders(tmp_path / "fer2013", default_counts(2))
    truncate(root / "train" / "fear" / "Training_fear_1.png")
    (root / "train" / "sad" / "Training_sad_0.png").write_bytes(b"not an image at all")
    log = Log()
    data = load(root, tmp_path, skip_bad=True, log=log)
    assert len(data.splits["train"]) == 12
    assert "train/fear/Training_fear_1.png" not in data.splits["train"].names
    assert any("skipped 2" in n for n in data.notes)
    for name in ["train/fear/Training_fear_1.png", "train/sad/Training_sad_0.png"]:
        assert log.has(name) and any(name in n for n in data.notes)
    # a strict load of the same content must still fail, not reuse the skip_bad cache
    assert "Training_fear_1.png" in error(root, tmp_path)
    # a cached skip_bad load repeats what was skipped
    log = Log()
    load(root, tmp_path, skip_bad=True, log=log)
    assert log.has("train/sad/Training_sad_0.png")


@pytest.mark.parametrize("line, expected", [
    ("0,1 2 3,Training", "3 pixel values, expected 2304"),
    ("9," + " ".join(["1"] * 2304) + ",Training", "bad emotion code '9'"),
    ("x," + " ".join(["1"] * 2304) + ",Training", "bad emotion code 'x'"),
    ("0," + " ".join(["1"] * 2304) + ",Validation", "unknown Usage 'Validation'"),
    ("0," + " ".join(["1"] * 2303) + " 256,Training", "outside 0-255"),
    ("0," + " ".join(["1"] * 2303) + " a,Training", "integers 0-255"),
    ("0," + " ".join(["1"] * 2304), "2 fields, expected 3"),
])
def test_malformed_csv_row(tmp_path, line, expected):
    path = make_fer_csv(tmp_path / "fer2013.csv", extra_lines=[line])
    message = error(path, tmp_path)
    assert "fer2013.csv:line 23" in message and expected in message  # header + 21 rows + 1


def test_csv_missing_column(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels\n0,1 2 3\n")
    message = error(path, tmp_path)
    assert "missing column Usage" in message and "line 1" in message


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_no_layout_found(tmp_path, kind):
    junk = tmp_path / "stuff"
    write_image(junk / "a" / "b.png", pixels("x"))
    (junk / "readme.txt").write_text("hi")
    root = zip_folder(junk, tmp_path / "stuff.zip") if kind == "zip" else junk
    message = error(root, tmp_path)
    assert "no FER-2013 data found" in message and "train/ val/ test/" in message and "fer2013.csv" in message


def test_split_folder_given_as_root_gets_a_hint(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    assert "point data_root at its parent" in error(root / "train", tmp_path)


def test_missing_data_root(tmp_path):
    message = error(tmp_path / "nope", tmp_path)
    assert "nope does not exist" in message


def test_parent_with_two_trees(tmp_path):
    make_image_folders(tmp_path / "data" / "fer2013")
    make_image_folders(tmp_path / "data" / "copy")
    message = error(tmp_path / "data", tmp_path)
    assert "more than one dataset" in message and "copy/" in message and "fer2013/" in message


def test_not_a_zip(tmp_path):
    path = tmp_path / "fer.zip"
    path.write_bytes(b"not a zip")
    assert "cannot open" in error(path, tmp_path)


def test_corrupt_prepared_store(tmp_path):
    out = tmp_path / "out"
    prepare(make_image_folders(tmp_path / "fer2013"), out, log=Log(), cache_dir=tmp_path / "cache")
    (out / "ferkit_store.npz").write_bytes(b"garbage")
    assert "ferkit prepare" in error(out, tmp_path)


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    root = make_image_folders(tmp_path / "fer2013")
    first = load(root, tmp_path)
    for npz in (tmp_path / "cache").glob("*.npz"):
        npz.write_bytes(b"garbage")
    log = Log()
    assert_same_data(load(root, tmp_path, log=log), first)
    assert log.has("ignoring a bad cache entry") and log.has("decoding")

