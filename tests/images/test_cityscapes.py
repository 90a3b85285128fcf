"""pcseg.images.cityscapes against a tree written with PIL as cityscapesScripts lays it out:
labelIds -> the 19 train ids (7 road -> 0, 26 car -> 13, 0 -> 255), instanceIds id*1000+k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.images import CITYSCAPES_TRAIN_ID, write_cityscapes_image
from PIL import Image

from pcseg.images.cityscapes import (
    CLASSES,
    LABEL_TO_TRAIN,
    CityscapesLayoutError,
    open_cityscapes,
    train_ids,
)
from pcseg.images.common import DamagedImageError


def _street(h: int = 8, w: int = 10) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((h, w), 7, np.int64)  # road
    ids[:2] = 23  # sky
    ids[0, 0] = 0  # unlabeled
    ids[2, :3] = 1  # ego vehicle: ignored
    ids[5:7, 1:4] = 26  # car 0
    ids[5:7, 6:9] = 26  # car 1
    ids[3, 8] = 24  # a person
    inst = ids.copy()
    inst[5:7, 1:4] = 26000
    inst[5:7, 6:9] = 26001
    inst[3, 8] = 24000
    return ids, inst


def test_train_id_table_is_cityscapes_scripts():
    assert LABEL_TO_TRAIN == CITYSCAPES_TRAIN_ID
    assert len(CLASSES) == 19 and CLASSES[0] == "road" and CLASSES[13] == "car"
    ids = np.arange(34).reshape(2, 17)
    got = train_ids(ids, Path("x.png")).reshape(-1)
    assert got.tolist() == [CITYSCAPES_TRAIN_ID.get(i, 255) for i in range(34)]


def test_reads_images_masks_instances(tmp_path):
    ids, inst = _street()
    write_cityscapes_image(tmp_path, "train", "aachen", "aachen_000000_000019", ids, inst)
    write_cityscapes_image(tmp_path, "train", "bochum", "bochum_000000_000313", ids, None)
    write_cityscapes_image(tmp_path, "val", "frankfurt", "frankfurt_000000_000294", ids, inst)
    with Image.open(
        tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_instanceIds.png"
    ) as im:
        assert im.mode.startswith("I")  # 16-bit
    src = open_cityscapes(tmp_path)
    assert src.splits == {
        "train": ["aachen_000000_000019", "bochum_000000_000313"],
        "val": ["frankfurt_000000_000294"],
        "test": [],
    }
    s = src.read("aachen_000000_000019")
    assert s.image.shape == (8, 10, 3)
    assert s.mask[4, 4] == 0 and s.mask[1, 5] == 10 and s.mask[5, 2] == 13 and s.mask[3, 8] == 11
    assert s.mask[0, 0] == 255 and (s.mask[2, :3] == 255).all()
    want = np.vectorize(lambda v: CITYSCAPES_TRAIN_ID.get(int(v), 255))(ids)
    assert np.array_equal(s.mask, want)
    assert s.instances is not None
    assert sorted(np.unique(s.instances).tolist()) == [0, 24000, 26000, 26001]
    assert (s.instances[ids < 24] == 0).all()  # stuff pixels carry their bare id: no instance
    assert src.read("bochum_000000_000313").instances is None


def test_damaged_cityscapes_files(tmp_path):
    ids, inst = _street()
    bad = ids.copy()
    bad[4, 4] = 40
    write_cityscapes_image(tmp_path, "train", "a", "a_0_1", bad, None)
    write_cityscapes_image(tmp_path, "train", "a", "a_0_2", ids, None)
    Image.fromarray(ids[:, :9].astype(np.uint8)).save(
        tmp_path / "gtFine/train/a/a_0_2_gtFine_labelIds.png"
    )  # a mask of another size
    wrong = inst.copy()
    wrong[5, 1] = 24005  # a person instance on a car pixel
    write_cityscapes_image(tmp_path, "train", "a", "a_0_3", ids, wrong)
    write_cityscapes_image(tmp_path, "train", "a", "a_0_4", ids, None)
    (tmp_path / "gtFine/train/a/a_0_4_gtFine_labelIds.png").unlink()
    src = open_cityscapes(tmp_path)
    with pytest.raises(DamagedImageError, match=r"a_0_1_gtFine_labelIds.png: mask value 40 not"):
        src.read("a_0_1")
    with pytest.raises(
        DamagedImageError, match=r"a_0_2_gtFine_labelIds.png: 9x8 pixels, its image .* 10x8"
    ):
        src.read("a_0_2")
    with pytest.raises(DamagedImageError, match=r"1 pixels whose instance id's class"):
        src.read("a_0_3")
    with pytest.raises(DamagedImageError, match=r"a_0_4_gtFine_labelIds.png does not exist"):
        src.read("a_0_4")
    with pytest.raises(CityscapesLayoutError, match="no leftImg8bit"):
        open_cityscapes(tmp_path / "gtFine")
