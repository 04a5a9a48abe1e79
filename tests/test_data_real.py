"""Integration test on the real FER-2013 zip: official counts, cold decode and warm cache times."""
from __future__ import annotations

import time

import numpy as np

from ferkit.data import CLASS_NAMES, load_data

OFFICIAL = {  # angry, disgust, fear, happy, neutral, sad, surprise
    "train": [3995, 436, 4097, 7215, 4965, 4830, 3171],
    "val": [467, 56, 496, 895, 607, 653, 415],
    "test": [491, 55, 528, 879, 626, 594, 416],
}


def test_real_zip_counts_and_load_times(real_zip, tmp_path):
    lines = []
    start = time.perf_counter()
    data = load_data(real_zip, cache_dir=tmp_path / "cache", log=lines.append)  # fresh cache: cold path
    cold = time.perf_counter() - start
    assert any("decoding 35887 images" in line for line in lines)

    assert data.class_names == CLASS_NAMES
    assert {s: data.counts(s).tolist() for s in data.splits} == OFFICIAL
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [28709, 3589, 3589]
    assert data.notes == []
    train = data.splits["train"]
    assert len(set(train.names)) == len(train.names) == 28709  # keyed by path: no name collisions
    assert all(n.startswith("train/") for n in train.names)
    assert all(n.split("/")[2].startswith("PublicTest_") for n in data.splits["val"].names)
    assert all(n.split("/")[2].startswith("PrivateTest_") for n in data.splits["test"].names)
    assert train.images.shape == (28709, 48, 48) and train.images.dtype == np.uint8
    assert 50 < train.images.mean() < 200 and train.images.std() > 20  # real faces, not zeros

    lines.clear()
    start = time.perf_counter()
    warm_data = load_data(real_zip, cache_dir=tmp_path / "cache", log=lines.append)
    warm = time.perf_counter() - start
    assert any("cached store" in line for line in lines)
    for s in data.splits:
        np.testing.assert_array_equal(warm_data.splits[s].images, data.splits[s].images)
        np.testing.assert_array_equal(warm_data.splits[s].labels, data.splits[s].labels)
        assert warm_data.splits[s].names == data.splits[s].names

    # Load times are printed, not asserted (tests do not depend on the machine's speed):
    # bench/throughput.py measures them against their targets.
    print(f"\nreal zip: cold load {cold:.1f} s, warm load {warm:.2f} s")
