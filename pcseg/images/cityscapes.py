"""Cityscapes fine annotations (``pcseg prepare cityscapes --raw CITYSCAPES``).

Layout (cityscapesScripts' names)::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     8-bit label ids 0..33
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png  optional, 16/32-bit:
        id * 1000 + k for the pixels of instance k of a class with instances, the bare label
        id (< 1000) elsewhere

Image id: ``<city>_<seq>_<frame>``. Splits: the ``train`` / ``val`` / ``test`` folders
of leftImg8bit that exist (test's public masks carry no labels: test on ``val``). Label ids
become the 19 train ids of the benchmark (:data:`LABEL_TO_TRAIN`, cityscapesScripts'
``labels.py``: 7 road -> 0, 8 sidewalk -> 1, ..., 26 car -> 13, ..., 33 bicycle -> 18; every
other id, 0 unlabeled included, -> 255). An id over 33 is a damaged mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.images.common import (
    DamagedImageError,
    ImageSample,
    ImageSource,
    check_same_size,
    lookup_table,
    map_values,
    read_label_values,
    read_rgb,
)
from pcseg.images.labels import IGNORE

DATASET = "cityscapes"
CLASSES: list[str] = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]  # fmt: skip
PALETTE: list[tuple[int, int, int]] = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip
#: label id -> train id of the 19 evaluated classes (the other ids 0..33 -> 255)
LABEL_TO_TRAIN: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
NUM_LABEL_IDS = 34
_LUT = lookup_table(
    LABEL_TO_TRAIN, [i for i in range(NUM_LABEL_IDS) if i not in LABEL_TO_TRAIN], NUM_LABEL_IDS
)
SPLITS = ("train", "val", "test")
_IMAGE_SUFFIX = "_leftImg8bit.png"


class CityscapesLayoutError(ValueError):
    """A folder that is not a Cityscapes tree (no leftImg8bit/<split>/): named."""


def cityscapes_splits(raw: Path) -> tuple[dict[str, list[str]], dict[str, Path]]:
    """({split: ids}, {id: image path}) of the leftImg8bit folders under ``raw``."""
    splits: dict[str, list[str]] = {}
    paths: dict[str, Path] = {}
    for split in SPLITS:
        folder = raw / "leftImg8bit" / split
        ids = []
        for p in sorted(folder.glob(f"*/*{_IMAGE_SUFFIX}")) if folder.is_dir() else []:
            image_id = p.name[: -len(_IMAGE_SUFFIX)]
            ids.append(image_id)
            paths[image_id] = p
        splits[split] = ids
    if not paths:
        raise CityscapesLayoutError(
            f"{raw}: no leftImg8bit/<train|val|test>/<city>/*{_IMAGE_SUFFIX} images"
        )
    return splits, paths


def train_ids(label_ids: np.ndarray, path: Path) -> np.ndarray:
    """Label ids (H, W) -> uint8 train ids, 255 = ignore (DamagedImageError over 33)."""
    return map_values(label_ids, _LUT, path, "a Cityscapes label id 0..33")


def read_cityscapes_image(raw: Path, image_path: Path) -> ImageSample:
    """One Cityscapes image, its train-id mask and instances (when instanceIds exists)."""
    image_id = image_path.name[: -len(_IMAGE_SUFFIX)]
    split, city = image_path.parent.parent.name, image_path.parent.name
    gt = raw / "gtFine" / split / city
    image = read_rgb(image_path)
    lpath = gt / f"{image_id}_gtFine_labelIds.png"
    if not lpath.is_file():
        raise DamagedImageError(f"{lpath} does not exist")
    label_ids = read_label_values(lpath)
    check_same_size(image, label_ids, image_path, lpath)
    mask = train_ids(label_ids, lpath)
    instances = None
    ipath = gt / f"{image_id}_gtFine_instanceIds.png"
    if ipath.is_file():
        values = read_label_values(ipath)
        check_same_size(image, values, image_path, ipath)
        instances = np.where(values >= 1000, values, 0)
        if instances.max(initial=0) > 65535:
            raise DamagedImageError(f"{ipath}: instance value {int(instances.max())} over 65535")
        wrong = (instances > 0) & (instances // 1000 != label_ids)
        if wrong.any():
            raise DamagedImageError(
                f"{ipath}: {int(wrong.sum())} pixels whose instance id's class (id // 1000) "
                f"is not their label id in {lpath.name}"
            )
        instances = np.where(mask == IGNORE, 0, instances)
    return ImageSample(image_id, image, mask, instances, str(image_path))


def open_cityscapes(raw: Path) -> ImageSource:
    """The Cityscapes dataset under ``raw`` as an :class:`ImageSource`."""
    raw = Path(raw)
    splits, paths = cityscapes_splits(raw)
    return ImageSource(
        dataset=DATASET,
        classes=list(CLASSES),
        palette=list(PALETTE),
        splits=splits,
        read=lambda image_id: read_cityscapes_image(raw, paths[image_id]),
        fingerprint={
            "reader": DATASET,
            "raw": str(raw.resolve()),
            "images": {k: len(v) for k, v in splits.items()},
        },
    )
