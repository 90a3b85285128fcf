"""pcseg.images.voc against VOC trees written with PIL: palette PNGs with VOC's palette and
255 borders, SegmentationObject instances, the list files, SBD's augmented set."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.images import save_palette_png, save_rgb, voc_palette_bytes, write_voc
from PIL import Image

from pcseg.images.common import DamagedImageError
from pcseg.images.voc import (
    CLASSES,
    VocLayoutError,
    find_root,
    open_voc,
    read_voc_image,
    voc_palette,
)


def test_palette_is_vocs():
    pal = voc_palette()
    assert pal[0] == (0, 0, 0) and pal[1] == (128, 0, 0) and pal[15] == (192, 128, 128)
    assert pal[255] == (224, 224, 192)  # the border colour
    assert [c for rgb in pal for c in rgb] == voc_palette_bytes()
    assert len(CLASSES) == 21 and CLASSES[15] == "person"


def test_reads_palette_masks_borders_and_objects(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    written = write_voc(root, ["2007_000032", "2007_000039"], ["2007_000033"])
    assert find_root(tmp_path) == root and find_root(root.parent) == root
    with Image.open(root / "SegmentationClass/2007_000032.png") as im:
        assert im.mode == "P"  # the file is what VOC ships: indices + a palette
    src = open_voc(tmp_path)
    assert src.splits == {
        "train": ["2007_000032", "2007_000039"],
        "val": ["2007_000033"],
        "test": [],
    }
    assert src.classes == CLASSES and src.palette[1] == (128, 0, 0)
    for i, (cls, obj) in written.items():
        s = src.read(i)
        assert s.image.shape == (12, 16, 3) and s.image.dtype == np.uint8
        assert np.array_equal(s.mask, cls)  # palette indices, 255 border kept as ignore
        assert (s.mask == 255).sum() == (cls == 255).sum() > 0
        assert s.instances is not None
        assert np.array_equal(s.instances, np.where(obj == 255, 0, obj))
        assert sorted(np.unique(s.instances).tolist()) == [0, 1, 2]


def test_sbd_augmented_train_list(tmp_path):
    written = write_voc(tmp_path, ["a1"], ["v1"])
    rng = np.random.default_rng(1)
    for i in ["a2", "a3"]:  # SBD-only images: grey SegmentationClassAug masks, no objects
        save_rgb(tmp_path / "JPEGImages" / f"{i}.jpg", rng.integers(0, 256, (12, 16, 3)))
        m = np.zeros((12, 16), np.uint8)
        m[2:6, 3:9] = 7
        (tmp_path / "SegmentationClassAug").mkdir(exist_ok=True)
        Image.fromarray(m).save(tmp_path / "SegmentationClassAug" / f"{i}.png")
    (tmp_path / "ImageSets/Segmentation/train_aug.txt").write_text(
        "".join(
            f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ["a1", "a2", "a3", "v1"]
        )  # v1 is a val image: held out
    )
    src = open_voc(tmp_path)
    assert src.splits["train"] == ["a1", "a2", "a3"] and src.splits["val"] == ["v1"]
    s = src.read("a2")
    assert (
        s.instances is None and int((s.mask == 7).sum()) == 24 and (s.mask[s.mask != 7] == 0).all()
    )
    assert np.array_equal(src.read("a1").mask, written["a1"][0])  # SegmentationClass first
    assert open_voc(tmp_path, aug=False).splits["train"] == ["a1"]
    bare = tmp_path / "bare"
    write_voc(bare, ["b"], ["c"])
    with pytest.raises(VocLayoutError, match="SBD augmentation asked for"):
        open_voc(bare, aug=True)


def test_colour_copy_of_a_mask_reads_through_the_palette(tmp_path):
    written = write_voc(tmp_path, ["x"], ["y"])
    cls = written["x"][0]
    pal = np.array(voc_palette_bytes(), np.uint8).reshape(256, 3)
    save_rgb(tmp_path / "SegmentationClass/x.png", pal[cls])
    assert np.array_equal(read_voc_image(tmp_path, "x").mask, cls)
    rgb = pal[cls]
    rgb[0, 0] = (1, 2, 3)
    save_rgb(tmp_path / "SegmentationClass/x.png", rgb)
    with pytest.raises(DamagedImageError, match=r"x.png: colours \[\(1, 2, 3\)\] are not VOC"):
        read_voc_image(tmp_path, "x")


def test_damaged_voc_files_are_named(tmp_path):
    written = write_voc(tmp_path, ["t", "u", "w"], ["v"])
    cls = written["t"][0].copy()
    cls[0, 0] = 37
    save_palette_png(tmp_path / "SegmentationClass/t.png", cls)
    with pytest.raises(DamagedImageError, match=r"t.png: mask value 37 not in the map"):
        read_voc_image(tmp_path, "t")
    save_palette_png(tmp_path / "SegmentationClass/u.png", written["u"][0][:10])
    with pytest.raises(DamagedImageError, match=r"u.png: 16x10 pixels, its image .*u.jpg 16x12"):
        read_voc_image(tmp_path, "u")
    data = (tmp_path / "JPEGImages/w.jpg").read_bytes()
    (tmp_path / "JPEGImages/w.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedImageError, match=r"w.jpg: unreadable image"):
        read_voc_image(tmp_path, "w")
    (tmp_path / "SegmentationClass/v.png").unlink()
    with pytest.raises(DamagedImageError, match=r"SegmentationClass/v.png does not exist"):
        read_voc_image(tmp_path, "v")
    with pytest.raises(VocLayoutError, match="no JPEGImages"):
        find_root(tmp_path / "ImageSets")
    (tmp_path / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(VocLayoutError, match="val.txt does not exist"):
        open_voc(tmp_path)
