"""pcseg.images.labels: spec parsing, per-image pixel draws against a brute-force count,
U2PL's image splits, split list files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.images import random_mask

from pcseg.data.weak_labels import SpecError
from pcseg.images.labels import (
    IGNORE,
    parse_image_spec,
    read_split_list,
    sample_pixels,
    split_images,
)


@pytest.mark.parametrize(
    ("spec", "kind", "name", "dirname"),
    [
        ("1%", "pixels", "1%", "1pct"),
        ("0.1pct", "pixels", "0.1%", "0.1pct"),
        ("20pt", "pixels", "20pt", "20pt"),
        ("sqn1%", "pixels", "sqn1%", "sqn1pct"),
        ("5pps", "pixels", "5pps", "5pps"),
        ("click", "pixels", "click", "click"),
        ("1/8", "fraction", "1/8", "1of8"),
        (" 1/16 ", "fraction", "1/16", "1of16"),
        (
            "split:splits/pascal/1464/labeled.txt",
            "list",
            "split:splits/pascal/1464/labeled.txt",
            "split_labeled",
        ),
        ("full", "full", "full", "full"),
        ("given", "given", "given", "given"),
    ],
)
def test_parse_image_spec(spec, kind, name, dirname):
    sp = parse_image_spec(spec)
    assert (sp.kind, sp.name, sp.dirname) == (kind, name, dirname)
    assert parse_image_spec(sp.name) == sp
    assert sp.whole_images == (kind in ("fraction", "list"))


@pytest.mark.parametrize("bad", ["1/1", "1/0", "2/8", "import:points20", "half", "", "0%"])
def test_parse_image_spec_rejects(bad):
    with pytest.raises(SpecError, match="image label spec grammar|1/N needs|imports point"):
        parse_image_spec(bad)


def _classes(mask: np.ndarray) -> dict[int, int]:
    return {int(k): int((mask == k).sum()) for k in np.unique(mask) if k != IGNORE}


@pytest.mark.parametrize("ratio", [0.1, 0.01])
def test_ratio_draws_per_class_per_image(ratio):
    rng = np.random.default_rng(3)
    mask = random_mask(rng, 30, 40)
    mask[mask == 2] = 1  # class 2 absent ...
    mask[0, 0] = 2  # ... but for one pixel: it still keeps one label
    weak = sample_pixels(mask, f"{ratio * 100:g}%", seed=0, image_id="a")
    assert weak.shape == mask.shape and weak.dtype == np.uint8
    labelled = weak != IGNORE
    assert np.array_equal(weak[labelled], mask[labelled])  # the true class where labelled
    for k, n in _classes(mask).items():
        assert int((weak == k).sum()) == max(int(n * ratio), 1), k
    assert weak[0, 0] == 2


def test_npt_sqn_pps_counts():
    rng = np.random.default_rng(4)
    mask = random_mask(rng, 12, 10)
    mask[mask == 0] = 1
    mask[5, 5] = 0  # class 0: a single pixel, fewer than N
    n_lab = int((mask != IGNORE).sum())
    weak = sample_pixels(mask, "7pt", 0, "x")
    assert {k: int((weak == k).sum()) for k in _classes(mask)} == {
        k: min(7, n) for k, n in _classes(mask).items()
    }
    assert int((sample_pixels(mask, "sqn10%", 0, "x") != IGNORE).sum()) == int(n_lab * 0.1)
    assert int((sample_pixels(mask, "9pps", 0, "x") != IGNORE).sum()) == 9
    assert int((sample_pixels(mask, "100000pps", 0, "x") != IGNORE).sum()) == n_lab


def test_draws_are_seeded_by_seed_image_and_spec_only():
    mask = random_mask(np.random.default_rng(5), 20, 20)
    a = sample_pixels(mask, "5%", 0, "img1")
    assert np.array_equal(a, sample_pixels(mask, "5pct", 0, "img1"))
    assert not np.array_equal(a, sample_pixels(mask, "5%", 1, "img1"))
    assert not np.array_equal(a, sample_pixels(mask, "5%", 0, "img2"))
    assert (sample_pixels(np.full((4, 4), IGNORE, np.uint8), "1%", 0, "e") == IGNORE).all()


def test_click_one_pixel_per_instance():
    mask = np.zeros((10, 12), np.uint8)
    inst = np.zeros((10, 12), np.int64)
    mask[1:4, 1:4], inst[1:4, 1:4] = 1, 1
    mask[5:9, 2:8], inst[5:9, 2:8] = 2, 2
    mask[1:3, 8:11], inst[1:3, 8:11] = 1, 1000  # another instance of class 1
    inst[0, 11] = 7
    mask[0, 11] = IGNORE  # an instance on unlabelled pixels only: no click
    weak = sample_pixels(mask, "click", 0, "c", inst)
    hits = np.flatnonzero(weak != IGNORE)
    assert sorted(inst.reshape(-1)[hits].tolist()) == [1, 2, 1000]
    assert np.array_equal(weak.reshape(-1)[hits], mask.reshape(-1)[hits])
    assert (sample_pixels(mask, "click", 0, "c", None) == IGNORE).all()
    with pytest.raises(ValueError, match="instance mask"):
        sample_pixels(mask, "click", 0, "c", inst[:, :5])
    with pytest.raises(ValueError, match="does not draw pixels"):
        sample_pixels(mask, "1/8", 0, "c")


def test_split_images_counts_as_u2pl_and_nested():
    ids = [f"{i:05d}" for i in range(10582)]
    got = {n: split_images(ids, n, seed=0) for n in (16, 8, 4, 2)}
    assert {n: len(v) for n, v in got.items()} == {16: 662, 8: 1323, 4: 2646, 2: 5291}
    assert set(got[16]) <= set(got[8]) <= set(got[4]) <= set(got[2])
    assert got[8] == sorted(got[8]) and len(set(got[8])) == 1323
    city = [f"c{i}" for i in range(2975)]  # Cityscapes train: U2PL's 186 / 372 / 744 / 1488
    assert [len(split_images(city, n, 0)) for n in (16, 8, 4, 2)] == [186, 372, 744, 1488]
    assert split_images(list(reversed(ids)), 8, 0) == got[8]  # order of the input: no matter
    assert split_images(ids, 8, 1) != got[8]
    assert len(split_images(ids[:20], 8, 0)) == math.ceil(20 / 8) == 3
    assert len(split_images(ids[:3], 16, 0)) == 1 and split_images([], 8, 0) == []


def test_read_split_list(tmp_path):
    ids = ["2007_000032", "2007_000039", "aachen_000000_000019", "train__0003", "train__0004"]
    f = tmp_path / "labeled.txt"
    f.write_text(
        "# U2PL style\n2007_000032\n\nJPEGImages/2007_000039.jpg SegmentationClassAug/x.png\n"
        "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png\n0003\n"
    )
    assert read_split_list(f, ids) == [
        "2007_000032",
        "2007_000039",
        "aachen_000000_000019",
        "train__0003",
    ]
    f.write_text("2007_000032\n2099_123456\nzz\n")
    with pytest.raises(SpecError, match=r"labeled.txt: 2 of 3 entries name no training image"):
        read_split_list(f, ids)
    f.write_text("\n# nothing\n")
    with pytest.raises(SpecError, match="names no image"):
        read_split_list(f, ids)
    with pytest.raises(SpecError, match="does not exist"):
        read_split_list(tmp_path / "nope.txt", ids)
