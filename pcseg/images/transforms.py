"""Image augmentation and the fixed-size training crop, on numpy arrays, driven by a
``np.random.Generator`` (a sample is a pure function of its seed, as for point clouds).

A sample is ``{"image": (H, W, 3) float32 in [0, 255], "labels": (H, W) int64,
"weak_labels": (H, W) int64, ...}`` with -1 = no label. What changes against the point-cloud
pipeline: images are dense, so every training image is brought to one crop size (random scale,
then a random crop padded with "no label" where the image is smaller) and a batch is a
(B, 3, h, w) tensor; the geometric transforms move every label map with the image (nearest
neighbour for labels, bilinear for colours); colour jitter touches the image only.

:class:`ImageOptions` (``data.images`` of a config) holds the settings; :func:`train_transform`
applies them; :func:`normalise` is the last step of every mode; :func:`sliding_windows` tiles a
full-resolution test image.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

#: ImageNet channel statistics on [0, 255] (torchvision's pretrained ResNets)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

_Pos = Annotated[float, Field(gt=0)]
_LABEL_KEYS = ("labels", "weak_labels")


class ImageOptions(BaseModel):
    """How image samples are made (``data.images`` of a config).

    ``crop_size`` is the training crop (square, pixels); ``scale`` the random rescale range
    applied first (U2PL: [0.5, 2.0]); ``flip`` a random horizontal flip; ``jitter`` the
    strength s of colour jitter (brightness, contrast and saturation factors drawn from
    [1 - s, 1 + s]; 0: none); ``mean`` / ``std`` the per-channel normalisation on [0, 255].
    Test: ``test_mode`` ``whole`` (one pass over the full image) or ``sliding`` (windows of
    ``window`` pixels, default ``crop_size``, every ``stride`` pixels, default 2/3 of the
    window, softmax averaged where they overlap).
    """

    model_config = ConfigDict(extra="forbid")

    crop_size: Annotated[int, Field(gt=0)] = 96
    scale: Annotated[list[_Pos], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [0.5, 2.0]
    )
    flip: bool = True
    jitter: Annotated[float, Field(ge=0, lt=1)] = 0.2
    mean: Annotated[list[float], Field(min_length=3, max_length=3)] = Field(
        default_factory=lambda: list(IMAGENET_MEAN)
    )
    std: Annotated[list[_Pos], Field(min_length=3, max_length=3)] = Field(
        default_factory=lambda: list(IMAGENET_STD)
    )
    test_mode: Literal["whole", "sliding"] = "whole"
    window: Annotated[int, Field(gt=0)] | None = None
    stride: Annotated[int, Field(gt=0)] | None = None


def _resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) int64 labels (-1 allowed) resized to ``size`` = (h, w) by nearest neighbour."""
    h, w = size
    ys = np.minimum((np.arange(h) + 0.5) * labels.shape[0] / h, labels.shape[0] - 1).astype(int)
    xs = np.minimum((np.arange(w) + 0.5) * labels.shape[1] / w, labels.shape[1] - 1).astype(int)
    out: np.ndarray = labels[ys[:, None], xs[None, :]]
    return out


def rescale(sample: dict[str, Any], factor: float) -> dict[str, Any]:
    """The sample scaled by ``factor`` (image bilinear, label maps nearest neighbour)."""
    h, w = sample["image"].shape[:2]
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    if size == (h, w):
        return dict(sample)
    out = dict(sample)
    image = np.asarray(sample["image"], dtype=np.float32)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c])).resize(
                size[::-1], Image.Resampling.BILINEAR
            )
        )
        for c in range(3)
    ]
    out["image"] = np.stack(channels, axis=-1).astype(np.float32)
    for k in _LABEL_KEYS:
        if k in sample:
            out[k] = _resize_labels(sample[k], size)
    return out


def random_crop(sample: dict[str, Any], size: int, rng: np.random.Generator) -> dict[str, Any]:
    """A ``size`` x ``size`` crop at a random place; a smaller image is padded first (image
    0 before normalisation, labels -1)."""
    h, w = sample["image"].shape[:2]
    ph, pw = max(size - h, 0), max(size - w, 0)
    out = dict(sample)
    if ph or pw:
        out["image"] = np.pad(sample["image"], ((0, ph), (0, pw), (0, 0)))
        for k in _LABEL_KEYS:
            if k in sample:
                out[k] = np.pad(sample[k], ((0, ph), (0, pw)), constant_values=-1)
        h, w = h + ph, w + pw
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    out["image"] = out["image"][y : y + size, x : x + size]
    for k in _LABEL_KEYS:
        if k in out:
            out[k] = out[k][y : y + size, x : x + size]
    return out


def colour_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation factors from [1 - s, 1 + s], on [0, 255] floats."""
    f = rng.uniform(1.0 - strength, 1.0 + strength, size=3)
    x = image * f[0]
    x = (x - x.mean()) * f[1] + x.mean()
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - grey[..., None]) * f[2] + grey[..., None]
    out: np.ndarray = np.clip(x, 0.0, 255.0).astype(np.float32)
    return out


def train_transform(
    sample: dict[str, Any], options: ImageOptions, rng: np.random.Generator
) -> dict[str, Any]:
    """Random scale, random crop to ``crop_size``, horizontal flip, colour jitter (in that
    order, each from ``rng``)."""
    lo, hi = options.scale
    out = rescale(sample, float(rng.uniform(lo, hi)) if hi > lo else float(lo))
    out = random_crop(out, options.crop_size, rng)
    if options.flip and rng.random() < 0.5:
        out["image"] = out["image"][:, ::-1]
        for k in _LABEL_KEYS:
            if k in out:
                out[k] = out[k][:, ::-1]
    if options.jitter > 0:
        out["image"] = colour_jitter(out["image"], options.jitter, rng)
    return out


def normalise(image: np.ndarray, options: ImageOptions) -> np.ndarray:
    """(H, W, 3) [0, 255] -> (3, H, W) float32 ``(x - mean) / std``."""
    mean = np.asarray(options.mean, dtype=np.float32)
    std = np.asarray(options.std, dtype=np.float32)
    x = (np.asarray(image, dtype=np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def sliding_windows(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of ``window`` x ``window`` tiles every ``stride`` pixels
    that cover an image (the last tile of a row / column flush with its edge; one tile on an
    axis no longer than the window, which the caller pads)."""
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be > 0, got {window}, {stride}")

    def starts(n: int) -> list[int]:
        if n <= window:
            return [0]
        s = list(range(0, n - window, stride))
        return [*s, n - window]

    return [(y, x) for y in starts(height) for x in starts(width)]


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageOptions",
    "colour_jitter",
    "normalise",
    "random_crop",
    "rescale",
    "sliding_windows",
    "train_transform",
]
