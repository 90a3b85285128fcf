"""Tiny processed image folders for the tests of pcseg.images (written through
pcseg.images.processed, so they are what ``pcseg prepare`` would write)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.images.processed import ImageMeta, write_image, write_instances, write_mask, write_meta

CLASSES = ["bg", "cat", "dog"]
PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]


def random_mask(
    rng: np.random.Generator, h: int, w: int, k: int = 3, ignore_share: float = 0.1
) -> np.ndarray:
    """(h, w) uint8 classes in [0, k) with about ``ignore_share`` of the pixels 255."""
    m = rng.integers(0, k, size=(h, w)).astype(np.uint8)
    m[rng.random((h, w)) < ignore_share] = 255
    return m


def make_processed(
    root: Path,
    masks: dict[str, np.ndarray],
    splits: dict[str, list[str]],
    instances: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> ImageMeta:
    """Write a processed folder: a random image per mask, the masks, optional instances."""
    rng = np.random.default_rng(seed)
    for i, m in masks.items():
        write_image(root, i, rng.integers(0, 256, size=(*m.shape, 3), dtype=np.uint8))
        write_mask(root, i, m)
    for i, inst in (instances or {}).items():
        write_instances(root, i, inst)
    meta = ImageMeta(
        dataset="toy", classes=list(CLASSES), palette=list(PALETTE), ignore_index=255, splits=splits
    )
    write_meta(root, meta, {"made_by": "tests"})
    return meta


# raw datasets written with PIL in each format's own conventions ---------------------------


def voc_palette_bytes() -> list[int]:
    """VOC's 256-colour palette, flat [r, g, b, ...], computed here from its definition (the
    bits of index i spread over r, g, b, most significant first), not from pcseg."""
    flat = []
    for i in range(256):
        r = g = b = 0
        for j in range(8):
            r |= ((i >> (3 * j)) & 1) << (7 - j)
            g |= ((i >> (3 * j + 1)) & 1) << (7 - j)
            b |= ((i >> (3 * j + 2)) & 1) << (7 - j)
        flat += [r, g, b]
    return flat


def save_palette_png(path: Path, indices: np.ndarray) -> None:
    """A 'P' PNG with VOC's palette whose pixel indices are ``indices`` (uint8)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(indices.astype(np.uint8))
    im.putpalette(voc_palette_bytes())
    im.save(path)


def save_rgb(path: Path, rgb: np.ndarray) -> None:
    """An RGB image file (JPEG or PNG by the suffix)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8)).save(path)


def voc_masks(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A VOC-like (class mask, object mask): background, two objects with a 1-pixel 255
    border around each (as VOC draws its borders)."""
    cls = np.zeros((h, w), np.uint8)
    obj = np.zeros((h, w), np.uint8)
    for k, (c, y, x) in enumerate([(int(rng.integers(1, 21)), 1, 1), (15, h // 2, w // 2)], 1):
        cls[y - 1 : y + 4, x - 1 : x + 5] = 255
        obj[y - 1 : y + 4, x - 1 : x + 5] = 255
        cls[y : y + 3, x : x + 4] = c
        obj[y : y + 3, x : x + 4] = k
    return cls, obj


def write_voc(
    root: Path, train: list[str], val: list[str], size: tuple[int, int] = (12, 16), seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A VOC2012 tree (JPEGImages, SegmentationClass, SegmentationObject, ImageSets);
    returns {id: (class mask, object mask)} as written."""
    rng = np.random.default_rng(seed)
    h, w = size
    written = {}
    for i in [*train, *val]:
        save_rgb(root / "JPEGImages" / f"{i}.jpg", rng.integers(0, 256, (h, w, 3)))
        cls, obj = voc_masks(rng, h, w)
        save_palette_png(root / "SegmentationClass" / f"{i}.png", cls)
        save_palette_png(root / "SegmentationObject" / f"{i}.png", obj)
        written[i] = (cls, obj)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val))
    return written


#: Cityscapes label id -> train id, from cityscapesScripts' labels.py (written out here)
CITYSCAPES_TRAIN_ID = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


def write_cityscapes_image(
    root: Path,
    split: str,
    city: str,
    name: str,
    label_ids: np.ndarray,
    instance_ids: np.ndarray | None,
    seed: int = 0,
) -> None:
    """One Cityscapes image: leftImg8bit PNG, gtFine labelIds (8-bit grey), instanceIds
    (a 16-bit grey PNG, what the released files are)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = label_ids.shape
    save_rgb(
        root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png",
        rng.integers(0, 256, (h, w, 3)),
    )
    gt = root / "gtFine" / split / city
    gt.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label_ids.astype(np.uint8)).save(gt / f"{name}_gtFine_labelIds.png")
    if instance_ids is not None:
        Image.fromarray(instance_ids.astype(np.uint16)).save(gt / f"{name}_gtFine_instanceIds.png")
