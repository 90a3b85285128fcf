"""The processed image folder (output of ``pcseg prepare voc|cityscapes|images``)::

    ROOT/meta.json          {"kind": "images", "format_version": 1, "dataset", "classes",
                             "palette", "ignore_index": 255, "splits": {split: [ids]},
                             "fingerprint": {...}}
    ROOT/images/<id>.png    RGB uint8 (H, W, 3)
    ROOT/masks/<id>.png     uint8 (H, W) class index, 255 = no label (the full ground truth)
    ROOT/instances/<id>.png optional uint16 (H, W) instance id, 0 = none (for ``click``)
    ROOT/labels/<dir>/      the weak labels of one spec (:mod:`pcseg.images.labels`;
                            ``<dir>`` = ``ImageSpec.dirname``: 1pct, 20pt, click, 1of8, given):
        index.json          {"spec", "seed", "kind", "train": [train ids drawn from],
                             "labelled": {id: labelled pixels}, "source": {...}}
        <id>.png            pixel specs only: the weak mask (uint8, 255 = unlabelled)

``index.json`` is written last, so a folder with one is complete. Whole-image specs
(``1/8``, ``split:PATH``) keep no PNGs: a labelled image's weak mask is its full mask.
``full`` and ``given`` are the masks themselves over every split. The sampled and
whole-image specs are drawn once, for the train split, with the seed of the first
:func:`ensure_weak_labels` call; every run then trains on the same labels (a call with
another seed is an error, not a silent redraw). Every write is atomic (:mod:`pcseg.io.atomic`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pcseg.images.labels import (
    IGNORE,
    parse_image_spec,
    read_split_list,
    sample_pixels,
    split_images,
)
from pcseg.io.atomic import atomic_write_bytes, atomic_write_json

KIND = "images"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


class ImageDataError(ValueError):
    """A processed image folder that cannot be used (the message names the file): a missing
    or foreign meta.json, a missing image, labels not drawn or drawn with another seed."""


@dataclass(frozen=True)
class ImageMeta:
    """What meta.json says: the dataset name, class names (index = position), one RGB
    colour per class, the ignore index (255) and the image ids of each split."""

    dataset: str
    classes: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int
    splits: dict[str, list[str]]

    @property
    def num_classes(self) -> int:
        """K, the number of classes."""
        return len(self.classes)


def read_meta(root: Path) -> ImageMeta:
    """Read ``root/meta.json`` (ImageDataError when missing or not an image folder)."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise ImageDataError(
            f"{path} does not exist: not a processed image folder "
            "(pcseg prepare voc|cityscapes|images writes one)"
        )
    try:
        d = json.loads(path.read_text())
    except ValueError as e:
        raise ImageDataError(f"{path}: not JSON ({e})") from e
    if not isinstance(d, dict) or d.get("kind") != KIND:
        raise ImageDataError(
            f"{path}: not a processed image folder (kind "
            f"{d.get('kind') if isinstance(d, dict) else None!r}, not {KIND!r})"
        )
    if d.get("format_version") != FORMAT_VERSION:
        raise ImageDataError(
            f"{path}: format_version {d.get('format_version')!r}, this pcseg "
            f"reads {FORMAT_VERSION}: prepare the folder again"
        )
    try:
        meta = ImageMeta(
            dataset=str(d["dataset"]),
            classes=[str(c) for c in d["classes"]],
            palette=[(int(c[0]), int(c[1]), int(c[2])) for c in d["palette"]],
            ignore_index=int(d["ignore_index"]),
            splits={str(k): [str(i) for i in v] for k, v in d["splits"].items()},
        )
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
        raise ImageDataError(f"{path}: bad or missing key ({type(e).__name__}: {e})") from e
    if len(meta.palette) != len(meta.classes):
        raise ImageDataError(
            f"{path}: {len(meta.palette)} palette colours for {len(meta.classes)} classes"
        )
    return meta


def write_meta(root: Path, meta: ImageMeta, fingerprint: dict[str, Any]) -> None:
    """Write ``root/meta.json`` atomically; ``fingerprint``: what the folder was made from
    (reader, raw folder, options), so a later prepare can tell whether it is up to date."""
    atomic_write_json(
        Path(root) / "meta.json",
        {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "dataset": meta.dataset,
            "classes": list(meta.classes),
            "palette": [list(map(int, c)) for c in meta.palette],
            "ignore_index": int(meta.ignore_index),
            "splits": {k: list(v) for k, v in meta.splits.items()},
            "fingerprint": fingerprint,
        },
    )


def read_fingerprint(root: Path) -> dict[str, Any] | None:
    """The fingerprint of ``root/meta.json``, None when there is no readable one."""
    try:
        d = json.loads((Path(root) / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    fp = d.get("fingerprint") if isinstance(d, dict) else None
    return fp if isinstance(fp, dict) else None


def png_bytes(array: np.ndarray) -> bytes:
    """``array`` encoded as PNG (uint8 (H, W) grey, (H, W, 3) RGB, uint16 (H, W) 16-bit)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_image(root: Path, image_id: str, image: np.ndarray) -> None:
    """Write ``images/<id>.png`` (RGB uint8 (H, W, 3)) atomically."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image {image_id!r}: expected (H, W, 3) uint8, got {a.shape} {a.dtype}")
    atomic_write_bytes(Path(root) / "images" / f"{image_id}.png", png_bytes(a))


def write_mask(root: Path, image_id: str, mask: np.ndarray, folder: str = "masks") -> None:
    """Write ``<folder>/<id>.png`` (uint8 (H, W), 255 = no label) atomically."""
    a = np.asarray(mask)
    if a.dtype != np.uint8 or a.ndim != 2:
        raise ValueError(f"mask {image_id!r}: expected (H, W) uint8, got {a.shape} {a.dtype}")
    atomic_write_bytes(Path(root) / folder / f"{image_id}.png", png_bytes(a))


def write_instances(root: Path, image_id: str, instances: np.ndarray) -> None:
    """Write ``instances/<id>.png`` (16-bit, instance id per pixel, 0 = none) atomically."""
    a = np.asarray(instances)
    if a.ndim != 2 or a.size and (a.min() < 0 or a.max() > 65535):
        raise ValueError(f"instances {image_id!r}: expected (H, W) ids in 0..65535")
    atomic_write_bytes(Path(root) / "instances" / f"{image_id}.png", png_bytes(a.astype(np.uint16)))


def _read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ImageDataError(f"{path} does not exist")
    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDataError(f"{path}: unreadable PNG ({e})") from e


def load_image(root: Path, image_id: str) -> np.ndarray:
    """``images/<id>.png`` as (H, W, 3) uint8."""
    a = _read_png(Path(root) / "images" / f"{image_id}.png")
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ImageDataError(
            f"{root}/images/{image_id}.png: not an RGB image ({a.shape} {a.dtype})"
        )
    return a


def load_mask(root: Path, image_id: str) -> np.ndarray:
    """``masks/<id>.png`` as (H, W) uint8, 255 = no label."""
    a = _read_png(Path(root) / "masks" / f"{image_id}.png")
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ImageDataError(
            f"{root}/masks/{image_id}.png: not an 8-bit mask ({a.shape} {a.dtype})"
        )
    return a


def has_instances(root: Path) -> bool:
    """Whether the folder has instance masks (an ``instances/`` folder with a PNG)."""
    folder = Path(root) / "instances"
    return folder.is_dir() and any(folder.glob("*.png"))


def load_instances(root: Path, image_id: str) -> np.ndarray | None:
    """``instances/<id>.png`` as (H, W) int64 (0 = none), None when the image has none."""
    path = Path(root) / "instances" / f"{image_id}.png"
    if not path.is_file():
        return None
    return _read_png(path).astype(np.int64)


def _labels_dir(root: Path, spec: str) -> Path:
    return Path(root) / "labels" / parse_image_spec(spec).dirname


def _read_index(root: Path, spec: str) -> dict[str, Any] | None:
    """The spec's index.json, None when not drawn (read once per file version: a data
    loader asks for it at every sample)."""
    path = _labels_dir(root, spec) / "index.json"
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _read_index_file(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _read_index_file(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        d = json.loads(Path(path).read_text())
    except ValueError as e:
        raise ImageDataError(f"{path}: not JSON ({e})") from e
    if not isinstance(d, dict) or not isinstance(d.get("labelled"), dict):
        raise ImageDataError(f"{path}: not a label index")
    d["train_set"] = frozenset(d.get("train", []))
    return d


def _index_or_fail(root: Path, spec: str) -> dict[str, Any]:
    sp = parse_image_spec(spec)
    if sp.kind in ("full", "given"):
        ensure_weak_labels(root, sp.name)
    d = _read_index(root, spec)
    if d is None:
        raise ImageDataError(
            f"labels of spec {sp.name!r} are not drawn in {root} (no "
            f"labels/{sp.dirname}/index.json): ensure_weak_labels, or pcseg prepare --labels"
        )
    return d


def load_weak_mask(root: Path, spec: str, image_id: str) -> np.ndarray:
    """The weak labels of one image under ``spec``: (H, W) uint8, 255 = unlabelled.

    ``full`` / ``given``: the mask. Whole-image specs (``1/8``, ``split:PATH``): the mask for
    a labelled image, all 255 for the others. Pixel specs: the drawn pixels (an image the draw
    did not cover, e.g. a validation image, is an error)."""
    sp = parse_image_spec(spec)
    if sp.kind in ("full", "given"):
        return load_mask(root, image_id)
    d = _index_or_fail(root, spec)
    if sp.whole_images:
        mask = load_mask(root, image_id)
        return mask if image_id in d["labelled"] else np.full_like(mask, IGNORE)
    path = _labels_dir(root, spec) / f"{image_id}.png"
    if image_id not in d["train_set"] or not path.is_file():
        raise ImageDataError(
            f"no weak labels of spec {sp.name!r} for image {image_id!r} "
            f"({path} missing: they are drawn for the train split)"
        )
    return load_mask_file(path)


def load_mask_file(path: Path) -> np.ndarray:
    """A uint8 (H, W) mask PNG at ``path`` (ImageDataError when missing or not 8-bit)."""
    a = _read_png(Path(path))
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ImageDataError(f"{path}: not an 8-bit mask ({a.shape} {a.dtype})")
    return a


def labelled_images(root: Path, spec: str, split: str = "train") -> list[str]:
    """The ids of ``split`` (in meta order) with at least one weak label under ``spec``
    (``full`` / ``given``: images whose mask has a labelled pixel)."""
    meta = read_meta(root)
    if split not in meta.splits:
        raise ImageDataError(f"{root}: no split {split!r} (splits: {sorted(meta.splits)})")
    labelled = _index_or_fail(root, spec)["labelled"]
    return [i for i in meta.splits[split] if labelled.get(i, 0) > 0]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _check_cached(
    root: Path,
    d: dict[str, Any],
    name: str,
    seed: int | None,
    train: list[str],
    source: dict[str, Any],
) -> None:
    """ImageDataError when the cached draw ``d`` is not the one asked for."""
    where = _labels_dir(root, name)
    if seed is not None and d.get("seed") != seed:
        raise ImageDataError(
            f"labels of spec {name!r} in {where} were drawn with seed {d.get('seed')}, not "
            f"{seed}: every run trains on the same draw; remove {where} to draw them again"
        )
    if d.get("source", {}) != source or (seed is not None and d.get("train") != train):
        raise ImageDataError(
            f"labels of spec {name!r} in {where} were drawn for other "
            f"images or another list file; remove {where} to draw them again"
        )


def ensure_weak_labels(root: Path, spec: str, seed: int = 0) -> None:
    """Draw the weak labels of ``spec`` for the train split once and keep them under
    ``labels/<dir>/``; a later call finds them (an error when they were drawn with another
    seed, for other training images or from another list file). ``full`` / ``given`` index
    every split and ignore ``seed``."""
    root = Path(root)
    sp = parse_image_spec(spec)
    meta = read_meta(root)
    train = list(meta.splits.get("train", []))
    draw_seed = None if sp.kind in ("full", "given") else int(seed)
    cached = _read_index(root, sp.name)
    source: dict[str, Any] = {}
    if sp.kind == "list":
        if cached is not None and not Path(sp.path).is_file():
            source = cached.get("source", {})  # the list file is gone: keep what it gave
        else:
            source = {
                "list": sp.path,
                "sha256": _file_digest(Path(sp.path)) if Path(sp.path).is_file() else None,
            }
    if cached is not None:
        _check_cached(root, cached, sp.name, draw_seed, train, source)
        return
    if sp.kind in ("full", "given"):
        ids = [i for s in meta.splits.values() for i in s]
        labelled = {
            i: int(np.count_nonzero(load_mask(root, i) != IGNORE)) for i in dict.fromkeys(ids)
        }
    elif sp.whole_images:
        chosen = (
            split_images(train, sp.denominator, int(seed))
            if sp.kind == "fraction"
            else read_split_list(Path(sp.path), train)
        )
        labelled = {i: int(np.count_nonzero(load_mask(root, i) != IGNORE)) for i in chosen}
    else:
        labelled = _draw_pixels(root, sp.name, int(seed), train)
    atomic_write_json(
        _labels_dir(root, sp.name) / "index.json",
        {
            "spec": sp.name,
            "seed": draw_seed,
            "kind": sp.kind,
            "train": train,
            "labelled": labelled,
            "source": source,
        },
    )


def _draw_pixels(root: Path, spec: str, seed: int, train: list[str]) -> dict[str, int]:
    """Draw and write ``labels/<dir>/<id>.png`` for every training image; {id: pixels}."""
    sp = parse_image_spec(spec)
    click = sp.pixels is not None and sp.pixels.kind == "click"
    if click and not has_instances(root):
        raise ImageDataError(
            f"{root} has no instance masks (instances/): 'click' needs them (VOC "
            "SegmentationObject, Cityscapes *_instanceIds.png, a folder's instances/)"
        )
    folder = _labels_dir(root, spec)
    labelled: dict[str, int] = {}
    for image_id in train:
        mask = load_mask(root, image_id)
        inst = load_instances(root, image_id) if click else None
        weak = sample_pixels(mask, sp, seed, image_id, inst)
        write_mask(folder.parent, image_id, weak, folder=folder.name)
        labelled[image_id] = int(np.count_nonzero(weak != IGNORE))
    return labelled
