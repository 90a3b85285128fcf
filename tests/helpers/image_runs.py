"""Tiny synthetic processed image folders and image configs for the tests of the 2D training
path (written through pcseg.images.processed, the layout ``pcseg prepare images`` writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pcseg.config import Config, config_from_dict
from pcseg.images.processed import ImageMeta, write_image, write_mask, write_meta
from pcseg.images.synthetic import CLASSES, COLORS, synthetic_image


def make_synthetic_processed(
    root: Path, train: int = 6, val: int = 2, test: int = 2, size: int = 32, seed: int = 0
) -> ImageMeta:
    """A processed folder of synthetic images (pcseg.images.synthetic) of ``size`` pixels,
    with ``train`` / ``val`` / ``test`` images; returns its meta."""
    splits: dict[str, list[str]] = {}
    for s, (name, n) in enumerate((("train", train), ("val", val), ("test", test))):
        splits[name] = []
        for i in range(n):
            image, mask, _ = synthetic_image(np.random.default_rng([seed, s, i]), size)
            image_id = f"{name}_{i:03d}"
            write_image(root, image_id, image)
            write_mask(root, image_id, mask)
            splits[name].append(image_id)
    meta = ImageMeta(
        dataset="synthetic",
        classes=list(CLASSES),
        palette=[tuple(COLORS[c]) for c in CLASSES],
        ignore_index=255,
        splits=splits,
    )
    write_meta(root, meta, {"made_by": "tests"})
    return meta


def image_config(
    root: Path, run_dir: Path, method: str | dict[str, Any] = "supervised", **sections: Any
) -> Config:
    """A few-iteration UNet2D config on the processed folder ``root``: ``method`` a name or
    a whole method section; ``sections``: extra keys merged per section, e.g.
    ``train={"iterations": 4}``."""
    d: dict[str, Any] = {
        "data": {
            "dataset": "images",
            "root": str(root),
            "label_spec": "full",
            "batch_size": 2,
            "images": {"crop_size": 24, "jitter": 0.1},
            "train_split": "train",
            "val_split": "val",
            "test_split": "test",
        },
        "model": {"name": "UNet2D", "init_dim": 8},
        "method": {"name": method} if isinstance(method, str) else dict(method),
        "train": {
            "device": "cpu",
            "threads": 1,
            "iterations": 3,
            "optimizer": "adamw",
            "lr": 0.01,
            "progress": False,
            "log_every": 1,
        },
        "run_dir": str(run_dir),
    }
    for key, values in sections.items():
        d[key] = {**d.get(key, {}), **values}
    return config_from_dict(d, "test image config")
