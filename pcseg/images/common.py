"""What the image readers share: one image with its labels (:class:`ImageSample`), an opened
raw dataset (:class:`ImageSource`), and the checks that name a damaged file.

A reader (``voc``, ``cityscapes``, ``folder``) opens a raw folder into an
:class:`ImageSource`: the class names and colours, the image ids of each split and a
``read(image_id)`` that returns the :class:`ImageSample` or raises
:class:`DamagedImageError` naming the file (a truncated or unreadable file, a mask of
another size than its image, a mask value the dataset does not define).
:func:`pcseg.images.prepare.prepare_images` writes the source into a processed folder,
skipping (and naming) the damaged images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.Image import DecompressionBombError

from pcseg.images.labels import IGNORE

#: suffixes of the image files the readers take
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DamagedImageError(ValueError):
    """An image or label file that cannot be used; the message names the file."""


@dataclass
class ImageSample:
    """One raw image with its labels.

    Attributes:
        image_id: file-name safe id (unique in the dataset).
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) uint8 class index, 255 = no label.
        instances: (H, W) int64 instance id (0 = none), or None when the dataset has none
            for this image.
        source: the image file it came from.
    """

    image_id: str
    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray | None
    source: str


@dataclass
class ImageSource:
    """A raw image dataset opened by a reader.

    Attributes:
        dataset: its name ("voc", "cityscapes", "images").
        classes: class names, index = position.
        palette: one RGB colour per class.
        splits: {split: [image ids]} ("train", "val", "test"; a split may be empty).
        read: image id -> :class:`ImageSample` (DamagedImageError naming the file).
        fingerprint: what the source is (reader, raw folder, options), kept in meta.json.
    """

    dataset: str
    classes: list[str]
    palette: list[tuple[int, int, int]]
    splits: dict[str, list[str]]
    read: Callable[[str], ImageSample]
    fingerprint: dict[str, Any] = field(default_factory=dict)


def open_picture(path: Path) -> Image.Image:
    """The image file at ``path``, fully decoded (a truncated file fails here, not later).

    Raises:
        DamagedImageError: missing, not an image, truncated or otherwise unreadable.
    """
    if not path.is_file():
        raise DamagedImageError(f"{path} does not exist")
    try:
        im = Image.open(path)
        im.load()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, DecompressionBombError) as e:
        raise DamagedImageError(f"{path}: unreadable image ({e})") from e
    return im


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (grey and palette images converted)."""
    with open_picture(path) as im:
        return np.asarray(im.convert("RGB"))


def read_label_values(path: Path) -> np.ndarray:
    """A label PNG as its stored values, (H, W) int64: the palette indices of a 'P' image
    (VOC), the grey values of an 'L' one, the 16/32-bit values of an 'I' / 'I;16' one.

    Raises:
        DamagedImageError: unreadable, or a colour (RGB) image where values are expected.
    """
    with open_picture(path) as im:
        if im.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV"):
            raise DamagedImageError(
                f"{path}: a {im.mode} picture, not a label image (one value per pixel: "
                "an 8-bit grey / palette or 16-bit PNG)"
            )
        if im.mode == "1":
            im = im.convert("L")
        return np.asarray(im).astype(np.int64)


def check_same_size(
    image: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path
) -> None:
    """DamagedImageError naming both files when ``labels`` is not the size of ``image``."""
    if image.shape[:2] != labels.shape[:2]:
        raise DamagedImageError(
            f"{label_path}: {labels.shape[1]}x{labels.shape[0]} pixels, its image {image_path} "
            f"{image.shape[1]}x{image.shape[0]}"
        )


def lookup_table(mapping: dict[int, int], ignore: list[int], size: int) -> np.ndarray:
    """(size,) int64 value -> class table: ``mapping`` values, :data:`IGNORE` for ``ignore``,
    -1 (undefined) for the others."""
    lut = np.full(size, -1, dtype=np.int64)
    for v in ignore:
        if 0 <= v < size:
            lut[v] = IGNORE
    for v, c in mapping.items():
        if 0 <= v < size:
            lut[v] = c
    return lut


def map_values(values: np.ndarray, lut: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Stored label values -> (H, W) uint8 classes through ``lut``.

    Raises:
        DamagedImageError: naming ``path`` and the first undefined values (``what`` says
            what the defined ones are, e.g. "a VOC class 0..20 or 255").
    """
    bad_range = (values < 0) | (values >= len(lut))
    out: np.ndarray = lut[np.clip(values, 0, len(lut) - 1)]
    bad = bad_range | (out < 0)
    if bad.any():
        vals = np.unique(values[bad])
        raise DamagedImageError(
            f"{path}: mask value{'s' if len(vals) > 1 else ''} "
            f"{', '.join(map(str, vals[:5].tolist()))} not in the map ({what}); "
            f"{int(bad.sum())} pixels"
        )
    return out.astype(np.uint8)
