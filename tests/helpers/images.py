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
