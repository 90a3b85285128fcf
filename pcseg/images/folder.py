"""Your own images: an ``images/`` + ``masks/`` folder with a ``CLASSES.yaml``
(``pcseg prepare images --raw DIR [--classes CLASSES.yaml]``).

Layout::

    RAW/CLASSES.yaml              (or --classes elsewhere)
    RAW/images/<path>.<png|jpg|jpeg|bmp|tif|tiff|webp>
    RAW/masks/<path>.png          same relative path, one value per pixel (8-bit grey or
                                  palette, or 16-bit); no file = an unlabelled image (kept:
                                  semi-supervised methods train on it)
    RAW/instances/<path>.png      optional, instance id per pixel (0 = none), for ``click``

``CLASSES.yaml`` (:class:`ImageClasses`; the keys of ``pcseg prepare custom`` that apply to
images, unknown keys are errors)::

    names: [background, cat, dog]       # class index = position
    map: {0: background, 38: cat, 75: dog}   # mask value -> class (name or index); omit when
                                        # the mask values are the class indices
    ignore: [255]                       # mask values meaning "no label" (default [255])
    colors: {cat: [200, 60, 60]}        # optional, RGB 0..255 (default: VOC's colour map)
    splits: {train: "train/*", val: "val/*"}  # globs over <path> (no suffix); default: all
                                        # images in train

Image id: ``<path>`` with ``/`` written ``__`` (``train/0001.png`` -> ``train__0001``). A
mask value neither mapped nor ignored makes the image damaged (named and skipped by
``pcseg prepare``); so does a mask of another size than its image. A user's partial masks
(unlabelled pixels = an ``ignore`` value) are the labels of the spec ``given``.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pcseg.images.common import (
    IMAGE_SUFFIXES,
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
from pcseg.images.voc import voc_palette

DATASET = "images"
#: the largest mask value a 16-bit mask holds
MAX_VALUE = 65535


class ImageClassesError(ValueError):
    """A CLASSES.yaml or images folder that cannot be used (names the file and the key)."""


class ImageClasses(BaseModel):
    """The CLASSES.yaml of an images folder (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    names: list[str] = Field(min_length=1, max_length=255)
    map: dict[int, str | int] | None = None
    ignore: list[int] = Field(default_factory=lambda: [IGNORE])
    colors: dict[str, list[int]] | None = None
    splits: dict[str, str | list[str]] | None = None

    @model_validator(mode="after")
    def _check(self) -> ImageClasses:
        dup = sorted({n for n in self.names if self.names.count(n) > 1})
        if dup:
            raise ValueError(f"class names must be unique; repeated: {dup}")
        for value, cls in (self.map or {}).items():
            if not 0 <= value <= MAX_VALUE:
                raise ValueError(f"map: mask value {value} outside 0..{MAX_VALUE}")
            if isinstance(cls, int) and not 0 <= cls < len(self.names):
                raise ValueError(
                    f"map: {value} -> class index {cls} outside 0..{len(self.names) - 1}"
                )
            if isinstance(cls, str) and cls not in self.names:
                raise ValueError(f"map: {value} -> {cls!r} is not in names")
        both = sorted(set(self.ignore) & set(self.map or {}))
        if both:
            raise ValueError(f"mask values both mapped and ignored: {both}")
        unknown = sorted(set(self.colors or {}) - set(self.names))
        if unknown:
            raise ValueError(f"colors: {unknown} are not in names")
        for name, rgb in (self.colors or {}).items():
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError(f"colors: {name}: expected [r, g, b] in 0..255, got {rgb}")
        for split in self.splits or {}:
            if split not in ("train", "val", "test"):
                raise ValueError(f"splits: {split!r} is not train, val or test")
        return self

    def value_map(self) -> dict[int, int]:
        """mask value -> class index (the identity on 0..K-1 without ``map``)."""
        if self.map is None:
            return {k: k for k in range(len(self.names)) if k not in self.ignore}
        return {v: (c if isinstance(c, int) else self.names.index(c)) for v, c in self.map.items()}

    def palette(self) -> list[tuple[int, int, int]]:
        """One colour per class: ``colors``, else VOC's colour map."""
        default = voc_palette(len(self.names))
        given = self.colors or {}
        out: list[tuple[int, int, int]] = []
        for i, n in enumerate(self.names):
            out.append((given[n][0], given[n][1], given[n][2]) if n in given else default[i])
        return out


def read_classes(path: Path) -> ImageClasses:
    """Read and check a CLASSES.yaml (ImageClassesError naming the file and key)."""
    if not path.is_file():
        raise ImageClassesError(f"{path} does not exist (an images folder needs a CLASSES.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ImageClassesError(f"{path}: not YAML ({e})") from e
    try:
        return ImageClasses.model_validate(raw if raw is not None else {})
    except ValidationError as e:
        msgs = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'file'}: {err['msg']}" for err in e.errors()
        )
        raise ImageClassesError(f"{path}: {msgs}") from e


def list_images(raw: Path) -> dict[str, Path]:
    """{image id: image file} of ``raw/images`` (ImageClassesError on two files of one id)."""
    folder = raw / "images"
    if not folder.is_dir():
        raise ImageClassesError(f"{folder} does not exist (an images folder has images/ + masks/)")
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        image_id = p.relative_to(folder).with_suffix("").as_posix().replace("/", "__")
        if image_id in out:
            raise ImageClassesError(f"{out[image_id]} and {p}: two images of one id {image_id!r}")
        out[image_id] = p
    if not out:
        raise ImageClassesError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return out


def folder_splits(files: dict[str, Path], raw: Path, classes: ImageClasses) -> dict[str, list[str]]:
    """{split: ids} by the ``splits`` globs (over the path under images/, no suffix)."""
    if not classes.splits:
        return {"train": sorted(files), "val": [], "test": []}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for split, globs in classes.splits.items():
        pats = [globs] if isinstance(globs, str) else list(globs)
        for image_id, p in files.items():
            rel = p.relative_to(raw / "images").with_suffix("").as_posix()
            if any(fnmatch.fnmatchcase(rel, g) for g in pats):
                splits[split].append(image_id)
        if not splits[split]:
            raise ImageClassesError(
                f"splits: {split}: {pats} match no image under {raw / 'images'}"
            )
    return splits


def read_folder_image(raw: Path, image_path: Path, lut: np.ndarray, what: str) -> ImageSample:
    """One image of the folder with its mask (all 255 without one) and instances."""
    rel = image_path.relative_to(raw / "images").with_suffix(".png")
    image_id = rel.with_suffix("").as_posix().replace("/", "__")
    image = read_rgb(image_path)
    mpath = raw / "masks" / rel
    if mpath.is_file():
        values = read_label_values(mpath)
        check_same_size(image, values, image_path, mpath)
        mask = map_values(values, lut, mpath, what)
    else:
        mask = np.full(image.shape[:2], IGNORE, dtype=np.uint8)
    instances = None
    ipath = raw / "instances" / rel
    if ipath.is_file():
        instances = read_label_values(ipath)
        check_same_size(image, instances, image_path, ipath)
        if instances.min(initial=0) < 0:
            raise DamagedImageError(f"{ipath}: negative instance ids")
    return ImageSample(image_id, image, mask, instances, str(image_path))


def open_folder(raw: Path, classes_path: Path | None = None) -> ImageSource:
    """The images/ + masks/ folder ``raw`` as an :class:`ImageSource` (CLASSES.yaml:
    ``classes_path``, default ``raw/CLASSES.yaml``)."""
    raw = Path(raw)
    cpath = Path(classes_path) if classes_path is not None else raw / "CLASSES.yaml"
    classes = read_classes(cpath)
    files = list_images(raw)
    if not (raw / "masks").is_dir():
        raise ImageClassesError(
            f"{raw / 'masks'} does not exist (an images folder has "
            "images/ + masks/; an image without a mask file is unlabelled)"
        )
    splits = folder_splits(files, raw, classes)
    vmap = classes.value_map()
    lut = lookup_table(vmap, classes.ignore, MAX_VALUE + 1)
    what = f"mapped {sorted(vmap)[:8]}{'...' if len(vmap) > 8 else ''} or ignored {classes.ignore}"
    fingerprint: dict[str, Any] = {
        "reader": DATASET,
        "raw": str(raw.resolve()),
        "classes": classes.model_dump(),
        "images": {k: len(v) for k, v in splits.items()},
    }
    return ImageSource(
        dataset=DATASET,
        classes=list(classes.names),
        palette=classes.palette(),
        splits=splits,
        read=lambda image_id: read_folder_image(raw, files[image_id], lut, what),
        fingerprint=fingerprint,
    )
