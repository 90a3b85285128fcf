"""Image samples and batches for the trainer and the evaluator (the 2D counterpart of
pcseg.data.dataset).

A sample (:meth:`ImageDataset.get_sample`) of image ``id``::

    image        float32 (3, h, w)   normalised RGB (pcseg.images.transforms.normalise)
    labels       int64 (h, w)        full ground truth, -1 = no label (mask value 255)
    weak_labels  int64 (h, w)        the weak labels of ``label_spec``, -1 elsewhere
    name         str                 the image id

Train mode: random scale, crop to ``crop_size``, flip, colour jitter
(:func:`pcseg.images.transforms.train_transform`); val / test: the whole image, unchanged.

:func:`collate_images` stacks samples into the batch the trainer, the evaluator and the
methods read::

    images       float32 (B, 3, H, W)  H, W = the largest sample (others padded, labels -1)
    labels       int64 (B*H*W,)        row b*H*W + y*W + x (pcseg.models.dense.rows order);
                                       hidden from methods, used for diagnostics / validation
    weak_labels  int64 (B*H*W,)        the only labels a weak method trains on
    sizes        int64 (B, 2)          each sample's (h, w) before padding
    scene_names  list[str]             image ids

so a method sees M = B*H*W pixel rows exactly as it sees voxel rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcseg.images import processed
from pcseg.images.transforms import ImageOptions, normalise, train_transform

#: the value of "no label" in a weak mask (pcseg.images.processed.load_weak_mask)
WEAK_IGNORE = 255


def _as_labels(mask: np.ndarray, ignore_index: int, num_classes: int) -> np.ndarray:
    """uint8 (H, W) mask -> int64 labels, -1 for ``ignore_index`` and values >= K."""
    out: np.ndarray = np.asarray(mask, dtype=np.int64).copy()
    out[(out == ignore_index) | (out >= num_classes)] = -1
    return out


class ImageDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """The images of one split of a processed image folder, as samples.

    Args:
        root: processed image folder (pcseg.images.processed).
        split: split name of meta.json, or several joined with ``+``.
        label_spec: weak-label spec of the ``weak_labels`` (None: all -1; val / test).
        mode: ``train`` (augmented crops) | ``val`` | ``test`` (whole images).
        options: augmentation and crop settings (:class:`ImageOptions`).
        loop: each epoch visits every image this many times (train).
    """

    feat_kind = "rgb"
    in_channels = 3

    def __init__(
        self,
        root: str | Path,
        split: str,
        label_spec: str | None = None,
        mode: str = "train",
        options: ImageOptions | None = None,
        loop: int = 1,
    ) -> None:
        self.root = Path(root)
        self.mode = mode
        self.options = options or ImageOptions()
        self.label_spec = label_spec
        meta = processed.read_meta(self.root)
        self.image_meta = meta
        parts = [split] if split in meta.splits else split.split("+")
        unknown = [p for p in parts if p not in meta.splits]
        if unknown:
            raise processed.ImageDataError(
                f"{self.root}: no split {unknown[0]!r} (splits: {', '.join(sorted(meta.splits))})"
            )
        self.scene_names = list(dict.fromkeys(i for p in parts for i in meta.splits[p]))
        if not self.scene_names:
            raise processed.ImageDataError(f"{self.root}: split {split!r} has no images")
        self.class_names = list(meta.classes)
        self.num_classes = len(self.class_names)
        self.loop = int(loop) if mode == "train" else 1
        #: what the trainer keeps in a checkpoint's ``data_meta`` (predict's colours)
        self.meta: dict[str, Any] = {
            "classes": {"names": self.class_names, "palette": [list(c) for c in meta.palette]}
        }

    def __len__(self) -> int:
        return len(self.scene_names) * self.loop

    def labels(self, name: str) -> np.ndarray:
        """(H, W) int64 ground truth of image ``name`` (-1 = no label)."""
        mask = processed.load_mask(self.root, name)
        return _as_labels(mask, self.image_meta.ignore_index, self.num_classes)

    def weak_labels(self, name: str) -> np.ndarray:
        """(H, W) int64 weak labels of ``name`` under ``label_spec`` (-1 elsewhere)."""
        mask = processed.load_weak_mask(self.root, str(self.label_spec), name)
        return _as_labels(mask, WEAK_IGNORE, self.num_classes)

    def load_weak(self, name: str) -> tuple[None, np.ndarray, np.ndarray]:
        """``(None, flat pixel indices, classes)`` of the weak labels of ``name`` (what
        pcseg.methods.common.labelled_class_counts reads)."""
        weak = self.weak_labels(name).reshape(-1)
        idx = np.flatnonzero(weak >= 0)
        return None, idx, weak[idx]

    def get_sample(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """Sample ``index`` (modulo the image count) drawn with ``rng`` (see the module
        docstring)."""
        name = self.scene_names[index % len(self.scene_names)]
        labels = self.labels(name)
        weak = self.weak_labels(name) if self.label_spec else np.full_like(labels, -1)
        sample: dict[str, Any] = {
            "image": processed.load_image(self.root, name).astype(np.float32),
            "labels": labels,
            "weak_labels": weak,
        }
        if self.mode == "train":
            sample = train_transform(sample, self.options, rng)
        return {
            "image": normalise(sample["image"], self.options),
            "labels": np.ascontiguousarray(sample["labels"]),
            "weak_labels": np.ascontiguousarray(sample["weak_labels"]),
            "name": name,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get_sample(index, np.random.default_rng(index))


def collate_images(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into the batch of the module docstring (padded to the largest)."""
    if not samples:
        raise ValueError("collate_images: empty list of samples")
    h = max(s["image"].shape[1] for s in samples)
    w = max(s["image"].shape[2] for s in samples)
    b = len(samples)
    images = np.zeros((b, 3, h, w), dtype=np.float32)
    labels = np.full((b, h, w), -1, dtype=np.int64)
    weak = np.full((b, h, w), -1, dtype=np.int64)
    sizes = np.zeros((b, 2), dtype=np.int64)
    for i, s in enumerate(samples):
        sh, sw = s["image"].shape[1:]
        images[i, :, :sh, :sw] = s["image"]
        labels[i, :sh, :sw] = s["labels"]
        weak[i, :sh, :sw] = s["weak_labels"]
        sizes[i] = (sh, sw)
    return {
        "images": torch.from_numpy(images),
        "labels": torch.from_numpy(labels.reshape(-1)),
        "weak_labels": torch.from_numpy(weak.reshape(-1)),
        "sizes": torch.from_numpy(sizes),
        "scene_names": [s["name"] for s in samples],
    }


__all__ = ["WEAK_IGNORE", "ImageDataset", "collate_images"]
