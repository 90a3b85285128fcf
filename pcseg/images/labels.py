"""Label regimes of images: which pixels (or which images) keep their label.

Spec grammar (:func:`parse_image_spec`; the pixel specs are those of
:mod:`pcseg.data.weak_labels` with an image in place of a scene):

    ``R%``        for every class k present in an image, ``max(int(n_k * R/100), 1)`` random
                  pixels of class k (ERDA's stratified draw; ``1%``, ``0.1%``).
    ``sqnR%``     ``max(int(n * R/100), 1)`` random pixels among the n labelled pixels of an image.
    ``Npt``       N random pixels per class present per image (all of them if fewer).
    ``Npps``      N random labelled pixels per image (all if fewer).
    ``click``     one random pixel per instance (instance id > 0 and a class); needs instance
                  masks (VOC SegmentationObject, Cityscapes instanceIds, a folder's instances/).
    ``1/N``       U2PL's semi-supervised split: ``ceil(n / N)`` of the n training images keep
                  their full mask, the others none (``1/16``, ``1/8``, ``1/4``, ``1/2``; the
                  counts of U2PL's ``data/splits`` files: VOC 10582 -> 662 / 1323 / 2646 /
                  5291, Cityscapes 2975 -> 186 / 372 / 744 / 1488). The images
                  are the first ones of ONE seeded permutation, so ``1/16`` is inside ``1/8``.
    ``split:PATH``  the labelled images are those a list file names (U2PL's
                  ``data/splits/<dataset>/<n>/labeled.txt``): one per line, an id
                  (``2007_000032``), a file name or a path (``JPEGImages/x.jpg``,
                  ``leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png``); every
                  entry must name a training image.
    ``full``      every labelled pixel of every image.
    ``given``     the labels the masks carry, as they are (a user's partial masks).

Reproducibility: a pixel draw uses ``np.random.default_rng([seed, crc32(image id),
crc32(spec name)])`` (:func:`pcseg.data.weak_labels.scene_rng`), the image split
``default_rng([seed, crc32("image-split")])``, so a draw depends only on (seed, image, spec).
A weak mask is (H, W) uint8: the class of a labelled pixel, :data:`IGNORE` elsewhere.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.data.weak_labels import LabelSpec, SpecError, parse_spec, scene_rng

#: the mask value of "no label"
IGNORE = 255

IMAGE_GRAMMAR = (
    "image label spec grammar: 'R%' (R% of the pixels of each class per image, e.g. 1%, 0.1%), "
    "'sqnR%' (R% of an image's labelled pixels), 'Npt' (N pixels per class per image), "
    "'Npps' (N pixels per image), 'click' (one pixel per instance), '1/N' (ceil(n/N) of the "
    "training images fully labelled, e.g. 1/8), 'split:PATH' (the images a list file names), "
    "'full' (every labelled pixel), 'given' (the masks as they are); '%' may be written 'pct'"
)

_FRACTION_RE = re.compile(r"^1/(\d+)$")
_SPLIT_RE = re.compile(r"^split:(.+)$")
#: suffixes of Cityscapes file stems, dropped when matching a list entry to an image id
_STEM_SUFFIXES = ("_leftImg8bit", "_gtFine_labelIds", "_gtFine_instanceIds", "_gtFine_color")


@dataclass(frozen=True)
class ImageSpec:
    """A parsed image label spec.

    Attributes:
        kind: 'pixels' (a per-image pixel draw, ``pixels`` holds it), 'fraction' (1/N of the
            images), 'list' (the images of a list file), 'full' or 'given'.
        pixels: the pixel spec for kind 'pixels' (ratio / sqn / npt / pps / click), else None.
        denominator: N of ``1/N``, else 0.
        path: the list file of ``split:PATH``, else ''.
    """

    kind: str
    pixels: LabelSpec | None = None
    denominator: int = 0
    path: str = ""

    @property
    def name(self) -> str:
        """Canonical spec string: ``'1%'``, ``'20pt'``, ``'click'``, ``'1/8'``, ``'split:PATH'``."""
        if self.kind == "pixels":
            assert self.pixels is not None
            return self.pixels.name
        if self.kind == "fraction":
            return f"1/{self.denominator}"
        if self.kind == "list":
            return f"split:{self.path}"
        return self.kind

    @property
    def dirname(self) -> str:
        """File-safe folder name under ``labels/``: ``1pct``, ``20pt``, ``click``, ``1of8``,
        ``split_<list file stem>``, ``full``, ``given``."""
        if self.kind == "pixels":
            assert self.pixels is not None
            return self.pixels.dirname
        if self.kind == "fraction":
            return f"1of{self.denominator}"
        if self.kind == "list":
            return "split_" + re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(self.path).stem)
        return self.kind

    @property
    def whole_images(self) -> bool:
        """Whether the spec picks whole images (``1/N``, ``split:``) rather than pixels."""
        return self.kind in ("fraction", "list")

    def __str__(self) -> str:
        return self.name


def parse_image_spec(spec: str | ImageSpec) -> ImageSpec:
    """Parse an image label spec (module docstring) into an :class:`ImageSpec`.

    Raises:
        SpecError: an unknown spec or one that does not apply to images, with the grammar.
    """
    if isinstance(spec, ImageSpec):
        return spec
    if not isinstance(spec, str):
        raise SpecError(f"label spec must be a string, got {type(spec).__name__}; {IMAGE_GRAMMAR}")
    s = spec.strip()
    m = _FRACTION_RE.match(s)
    if m:
        n = int(m.group(1))
        if n < 2:
            raise SpecError(
                f"label spec {spec!r}: 1/N needs N >= 2 (1/1 is 'full'); {IMAGE_GRAMMAR}"
            )
        return ImageSpec(kind="fraction", denominator=n)
    m = _SPLIT_RE.match(s)
    if m:
        return ImageSpec(kind="list", path=m.group(1).strip())
    try:
        sp = parse_spec(s)
    except SpecError as e:
        raise SpecError(f"unknown image label spec {spec!r}; {IMAGE_GRAMMAR}") from e
    if sp.kind in ("full", "given"):
        return ImageSpec(kind=sp.kind)
    if sp.kind == "import":
        raise SpecError(
            f"label spec {spec!r} imports point indices: not for images; {IMAGE_GRAMMAR}"
        )
    return ImageSpec(kind="pixels", pixels=sp)


def image_spec_dirname(spec: str | ImageSpec) -> str:
    """The folder name of a spec under ``labels/`` (:attr:`ImageSpec.dirname`)."""
    return parse_image_spec(spec).dirname


def _choose(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    if k >= len(pool):
        return pool
    return rng.choice(pool, size=k, replace=False)


def sample_pixels(
    mask: np.ndarray,
    spec: str | ImageSpec,
    seed: int,
    image_id: str,
    instances: np.ndarray | None = None,
) -> np.ndarray:
    """The weak mask of one image under a pixel spec.

    Args:
        mask: (H, W) uint8 ground truth, :data:`IGNORE` = no label.
        spec: a spec of kind 'pixels' (``1%``, ``sqn1%``, ``20pt``, ``5pps``, ``click``).
        seed: global seed; the draw is seeded by (seed, image_id, spec name).
        image_id: the image's id.
        instances: (H, W) integer instance ids, 0 = none; needed for ``click`` (None: no click).

    Returns:
        (H, W) uint8: ``mask`` on the drawn pixels, :data:`IGNORE` elsewhere.
    """
    sp = parse_image_spec(spec)
    if sp.kind != "pixels" or sp.pixels is None:
        raise ValueError(f"label spec {sp.name!r} does not draw pixels")
    px = sp.pixels
    flat = np.asarray(mask, dtype=np.uint8).reshape(-1)
    out = np.full(flat.shape, IGNORE, dtype=np.uint8)
    labelled = np.flatnonzero(flat != IGNORE)
    rng = scene_rng(seed, image_id, px.name)
    chosen: list[np.ndarray] = []
    cls = flat[labelled]
    if px.kind in ("ratio", "npt"):
        for k in np.unique(cls):
            pool = labelled[cls == k]
            m = max(int(len(pool) * px.ratio), 1) if px.kind == "ratio" else px.count
            chosen.append(_choose(rng, pool, m))
    elif px.kind == "sqn" and len(labelled):
        chosen.append(_choose(rng, labelled, max(int(len(labelled) * px.ratio), 1)))
    elif px.kind == "pps":
        chosen.append(_choose(rng, labelled, px.count))
    elif px.kind == "click" and instances is not None:
        inst = np.asarray(instances).reshape(-1)
        if inst.shape != flat.shape:
            raise ValueError(
                f"image {image_id!r}: instance mask of {np.shape(instances)} pixels, "
                f"class mask of {np.shape(mask)}"
            )
        inst_l = inst[labelled]
        has = inst_l > 0
        pool_all, inst_all = labelled[has], inst_l[has]
        for i in np.unique(inst_all):
            chosen.append(_choose(rng, pool_all[inst_all == i], 1))
    if chosen:
        idx = np.concatenate(chosen)
        out[idx] = flat[idx]
    return out.reshape(np.shape(mask))


def split_images(train_ids: list[str], denominator: int, seed: int) -> list[str]:
    """The labelled images of ``1/denominator``: the first ``ceil(n / denominator)`` ids of
    one permutation of the sorted ``train_ids`` seeded by ``seed`` only (so smaller fractions
    are inside larger ones); returned sorted."""
    ids = sorted(train_ids)
    if not ids:
        return []
    k = max(math.ceil(len(ids) / denominator), 1)
    order = scene_rng(seed, "image-split", 0).permutation(len(ids))
    return sorted(ids[i] for i in order[:k])


def _entry_keys(entry: str) -> list[str]:
    """The ids a list entry may mean: itself, its file stem, the stem less a Cityscapes suffix."""
    first = entry.split()[0]
    stem = Path(first).stem
    keys = [first, stem]
    for suffix in _STEM_SUFFIXES:
        if stem.endswith(suffix):
            keys.append(stem[: -len(suffix)])
    return keys


def read_split_list(path: str | Path, train_ids: list[str]) -> list[str]:
    """The training images a list file names (``split:PATH``), sorted.

    An entry (one per line; blank lines and ``#`` comments skipped; only the first
    whitespace-separated token counts, so U2PL's "image mask" lines work) matches an image
    id equal to it, to its file stem, or to its stem less a Cityscapes suffix
    (``_leftImg8bit``, ``_gtFine_labelIds``, ...); a folder dataset's id matches by its last
    ``__`` part too.

    Raises:
        SpecError: the file is missing or empty, or an entry names no training image (the
            first few are listed).
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"split list {p} does not exist")
    entries = [ln.strip() for ln in p.read_text().splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise SpecError(f"split list {p} names no image")
    by_key: dict[str, str] = {}
    for i in train_ids:
        by_key.setdefault(i.rsplit("__", 1)[-1], i)
    by_key.update({i: i for i in train_ids})
    found: set[str] = set()
    unknown: list[str] = []
    for e in entries:
        hit = next((by_key[k] for k in _entry_keys(e) if k in by_key), None)
        if hit is None:
            unknown.append(e)
        else:
            found.add(hit)
    if unknown:
        raise SpecError(
            f"split list {p}: {len(unknown)} of {len(entries)} entries name no training image, "
            f"e.g. {unknown[:3]}"
        )
    return sorted(found)
