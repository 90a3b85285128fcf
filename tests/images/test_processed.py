"""pcseg.images.processed: meta round trip, images / masks / instances, the cached weak labels
of every kind of spec against brute-force counts, the errors that name the file."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from helpers.images import CLASSES, PALETTE, make_processed, random_mask

from pcseg.images.processed import (
    ImageDataError,
    ImageMeta,
    ensure_weak_labels,
    labelled_images,
    load_image,
    load_instances,
    load_mask,
    load_weak_mask,
    read_fingerprint,
    read_meta,
    write_meta,
)

TRAIN = ["t0", "t1", "t2", "t3", "t4"]


@pytest.fixture
def root(tmp_path):
    rng = np.random.default_rng(0)
    masks = {i: random_mask(rng, 9 + n, 11) for n, i in enumerate([*TRAIN, "v0"])}
    masks["t4"][:] = 255  # an image without a label
    inst = {}
    for i in TRAIN:
        lab = np.zeros(masks[i].shape, np.int64)
        lab[:4, :5], lab[5:, 6:] = 1, 3
        inst[i] = lab
    make_processed(tmp_path / "p", masks, {"train": TRAIN, "val": ["v0"], "test": []}, inst)
    return tmp_path / "p"


def test_meta_round_trip_and_errors(tmp_path):
    meta = ImageMeta("toy", list(CLASSES), list(PALETTE), 255, {"train": ["a"], "val": []})
    write_meta(tmp_path, meta, {"raw": "/x"})
    assert read_meta(tmp_path) == meta and meta.num_classes == 3
    assert read_fingerprint(tmp_path) == {"raw": "/x"}
    d = json.loads((tmp_path / "meta.json").read_text())
    assert d["kind"] == "images" and d["format_version"] == 1 and d["palette"][1] == [128, 0, 0]
    with pytest.raises(ImageDataError, match="does not exist"):
        read_meta(tmp_path / "none")
    for change, msg in [
        ({"kind": "points"}, "not a processed image folder"),
        ({"format_version": 2}, "format_version 2"),
        ({"palette": [[0, 0, 0]]}, "1 palette colours for 3 classes"),
    ]:
        (tmp_path / "meta.json").write_text(json.dumps({**d, **change}))
        with pytest.raises(ImageDataError, match=msg):
            read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({k: v for k, v in d.items() if k != "splits"}))
    with pytest.raises(ImageDataError, match="bad or missing key"):
        read_meta(tmp_path)


def test_images_masks_instances(root):
    img, mask = load_image(root, "t1"), load_mask(root, "t1")
    assert img.shape == (10, 11, 3) and img.dtype == np.uint8
    assert mask.shape == (10, 11) and mask.dtype == np.uint8
    inst = load_instances(root, "t1")
    assert inst is not None and inst[0, 0] == 1 and inst[9, 10] == 3
    assert load_instances(root, "v0") is None
    with pytest.raises(ImageDataError, match="t9.png does not exist"):
        load_image(root, "t9")
    (root / "masks" / "t2.png").write_bytes((root / "masks" / "t2.png").read_bytes()[:40])
    with pytest.raises(ImageDataError, match="t2.png: unreadable PNG"):
        load_mask(root, "t2")
    shutil.copy(root / "images" / "t1.png", root / "masks" / "t3.png")  # RGB as a mask
    with pytest.raises(ImageDataError, match="t3.png: not an 8-bit mask"):
        load_mask(root, "t3")


def test_pixel_spec_cached_and_counted(root):
    ensure_weak_labels(root, "10%", seed=0)
    for i in TRAIN:
        mask, weak = load_mask(root, i), load_weak_mask(root, "10%", i)
        on = weak != 255
        assert np.array_equal(weak[on], mask[on])
        for k in range(3):
            n = int((mask == k).sum())
            assert int((weak == k).sum()) == (max(int(n * 0.1), 1) if n else 0)
    assert labelled_images(root, "10%") == TRAIN[:4]  # t4 has no labelled pixel
    assert labelled_images(root, "10%", "val") == []
    before = (root / "labels" / "10pct" / "t0.png").read_bytes()
    ensure_weak_labels(root, "10pct", seed=0)  # cached: same folder, nothing redrawn
    assert (root / "labels" / "10pct" / "t0.png").read_bytes() == before
    with pytest.raises(ImageDataError, match="drawn with seed 0, not 1"):
        ensure_weak_labels(root, "10%", seed=1)
    with pytest.raises(ImageDataError, match="no weak labels of spec '10%' for image 'v0'"):
        load_weak_mask(root, "10%", "v0")
    with pytest.raises(ImageDataError, match="are not drawn"):
        load_weak_mask(root, "2pt", "t0")


def test_image_split_spec(root):
    ensure_weak_labels(root, "1/2", seed=0)
    idx = json.loads((root / "labels" / "1of2" / "index.json").read_text())
    assert len(idx["labelled"]) == math.ceil(5 / 2)
    assert not list((root / "labels" / "1of2").glob("*.png"))
    chosen = [i for i in TRAIN if i in idx["labelled"]]
    assert labelled_images(root, "1/2") == [i for i in chosen if i != "t4"]
    for i in TRAIN:
        weak = load_weak_mask(root, "1/2", i)
        assert np.array_equal(weak, load_mask(root, i)) if i in chosen else (weak == 255).all()
    assert (load_weak_mask(root, "1/2", "v0") == 255).all()


def test_full_given_click_and_list(root, tmp_path):
    assert labelled_images(root, "full") == TRAIN[:4]  # indexed on first use, no seed needed
    assert labelled_images(root, "given", "val") == ["v0"]
    assert np.array_equal(load_weak_mask(root, "full", "v0"), load_mask(root, "v0"))
    ensure_weak_labels(root, "click", seed=0)
    for i in TRAIN[:4]:
        weak, inst, mask = (
            load_weak_mask(root, "click", i),
            load_instances(root, i),
            load_mask(root, i),
        )
        assert inst is not None
        hit = weak != 255
        want = sorted(k for k in (1, 3) if ((inst == k) & (mask != 255)).any())
        assert sorted(inst[hit].tolist()) == want
    lst = tmp_path / "labeled.txt"
    lst.write_text("t1\nt3\n")
    ensure_weak_labels(root, f"split:{lst}")
    assert labelled_images(root, f"split:{lst}") == ["t1", "t3"]
    lst.write_text("t1\n")
    with pytest.raises(ImageDataError, match="another list file"):
        ensure_weak_labels(root, f"split:{lst}")


def test_click_needs_instances(tmp_path):
    m = {"a": np.zeros((4, 4), np.uint8)}
    make_processed(tmp_path, m, {"train": ["a"]})
    with pytest.raises(ImageDataError, match="no instance masks"):
        ensure_weak_labels(tmp_path, "click")
