"""pcseg.images.synthetic: the folder it writes, masks and instances that agree, determinism,
and colour alone not telling the classes apart."""

from __future__ import annotations

import numpy as np
import yaml
from PIL import Image

from pcseg.images.synthetic import CLASSES, synthetic_image, write_synthetic_images


def test_folder_layout_and_determinism(tmp_path):
    out = write_synthetic_images(tmp_path / "a", train=3, val=1, test=0, size=32, seed=2)
    spec = yaml.safe_load((out / "CLASSES.yaml").read_text())
    assert spec["names"] == CLASSES and spec["ignore"] == [255]
    assert spec["splits"] == {"train": "train/*", "val": "val/*"}
    names = sorted(
        p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.png")
    )
    assert names == ["train/0000.png", "train/0001.png", "train/0002.png", "val/0000.png"]
    for sub in ("masks", "instances"):
        assert (
            sorted(p.relative_to(out / sub).as_posix() for p in (out / sub).rglob("*.png")) == names
        )
    with Image.open(out / "images/train/0000.png") as im:
        assert im.mode == "RGB" and im.size == (32, 32)
    with Image.open(out / "instances/train/0000.png") as im:
        assert im.mode.startswith("I")  # 16-bit
    again = write_synthetic_images(tmp_path / "b", train=3, val=1, test=0, size=32, seed=2)
    other = write_synthetic_images(tmp_path / "c", train=1, val=0, test=0, size=32, seed=3)
    for n in names:
        assert (out / "images" / n).read_bytes() == (again / "images" / n).read_bytes()
    assert (out / "images/train/0000.png").read_bytes() != (
        other / "images/train/0000.png"
    ).read_bytes()


def test_instances_agree_with_classes():
    for i in range(6):
        img, mask, inst = synthetic_image(np.random.default_rng([1, i]), 64)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert mask.dtype == np.uint8 and inst.dtype == np.uint16
        assert set(np.unique(mask).tolist()) <= set(range(len(CLASSES)))
        assert np.array_equal(inst > 0, mask > 0)  # objects are instances, background none
        ids = np.unique(inst[inst > 0])
        assert ids.tolist() == list(range(1, len(ids) + 1)) and 1 <= len(ids) <= 6
        for k in ids:  # one class per instance
            assert len(np.unique(mask[inst == k])) == 1


def test_colour_alone_does_not_separate_the_classes():
    xs, ys = [], []
    for i in range(30):
        img, mask, _ = synthetic_image(np.random.default_rng([0, i]), 96)
        xs.append(img.reshape(-1, 3) // 32)
        ys.append(mask.reshape(-1))
    x, y = np.concatenate(xs).astype(np.int64), np.concatenate(ys).astype(np.int64)
    key = x[:, 0] * 64 + x[:, 1] * 8 + x[:, 2]
    hist = np.zeros((512, len(CLASSES)))
    np.add.at(hist, (key, y), 1)
    pred = (hist / hist.sum(0, keepdims=True))[key].argmax(1)  # the best colour-bin rule
    recall = [float((pred[y == k] == k).mean()) for k in range(len(CLASSES))]
    assert all(np.bincount(y, minlength=len(CLASSES)) > 0)
    assert np.mean(recall) < 0.65  # even fitted on these very pixels (chance is 0.2)
