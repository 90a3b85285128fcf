"""Pascal VOC 2012 segmentation (``pcseg prepare voc --raw VOC2012``).

Layout (RAW is the ``VOC2012`` folder, or a folder holding ``VOC2012`` or
``VOCdevkit/VOC2012``)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png      palette ('P') PNG: index = class 0..20, 255 = border
                                    (ignored); the palette is VOC's (:func:`voc_palette`)
    SegmentationObject/<id>.png     palette PNG: index = object 1..N, 0 = background,
                                    255 = border: the instances of ``click``
    ImageSets/Segmentation/{train,val}.txt   one id per line (1464 / 1449 images)
    SegmentationClassAug/<id>.png   optional, SBD's augmented masks (grey or palette PNG,
                                    same values); with a train_aug.txt list
    ImageSets/Segmentation/train_aug.txt or RAW/train_aug.txt   optional (10582 ids; lines
                                    may be ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``)

Splits: ``train`` = train.txt, or train_aug.txt less the val images when SBD's masks are
there (``aug``: None = when present, True = required, False = never); ``val`` = val.txt;
``test`` = test.txt where its masks exist (VOC's test masks are not public: usually
empty, so a run tests on ``val``). A mask comes from SegmentationClass, else
SegmentationClassAug. Colour (RGB) copies of the masks are read through the palette
(224, 224, 192 = border).
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
    open_picture,
    read_label_values,
    read_rgb,
)
from pcseg.images.labels import IGNORE

DATASET = "voc"
CLASSES: list[str] = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
_LUT = lookup_table({k: k for k in range(len(CLASSES))}, [IGNORE], 256)


class VocLayoutError(ValueError):
    """A folder that is not a VOC 2012 tree (missing lists or image folder): named."""


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """VOC's colour map: index i's colour from the bits of i (0 black, 1 (128, 0, 0), ...,
    255 (224, 224, 192))."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


PALETTE = voc_palette(len(CLASSES))


def find_root(raw: Path) -> Path:
    """The VOC2012 folder under ``raw`` (itself, ``VOC2012``, ``VOCdevkit/VOC2012``)."""
    for cand in (raw, raw / "VOC2012", raw / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise VocLayoutError(f"{raw}: no JPEGImages/ here, in VOC2012/ or VOCdevkit/VOC2012/")


def read_list(path: Path) -> list[str]:
    """Image ids of a VOC list file (first token of each line, its file stem)."""
    ids = []
    for line in path.read_text().splitlines():
        tok = line.split()
        if tok and not tok[0].startswith("#"):
            ids.append(Path(tok[0]).stem)
    return list(dict.fromkeys(ids))


def _aug_list(root: Path) -> Path | None:
    for cand in (root / "ImageSets" / "Segmentation" / "train_aug.txt", root / "train_aug.txt"):
        if cand.is_file():
            return cand
    return None


def voc_splits(root: Path, aug: bool | None = None) -> dict[str, list[str]]:
    """{train, val, test: ids} of the VOC2012 folder ``root`` (module docstring)."""
    lists = root / "ImageSets" / "Segmentation"
    for name in ("train.txt", "val.txt"):
        if not (lists / name).is_file():
            raise VocLayoutError(f"{lists / name} does not exist")
    val = read_list(lists / "val.txt")
    train = read_list(lists / "train.txt")
    aug_list = _aug_list(root)
    has_aug = aug_list is not None and (root / "SegmentationClassAug").is_dir()
    if aug and not has_aug:
        raise VocLayoutError(
            f"{root}: SBD augmentation asked for, but no SegmentationClassAug/ "
            "with a train_aug.txt (ImageSets/Segmentation/ or the root)"
        )
    if has_aug and aug is not False and aug_list is not None:
        held = set(val)
        train = [i for i in read_list(aug_list) if i not in held]
    test: list[str] = []
    if (lists / "test.txt").is_file():
        test = [i for i in read_list(lists / "test.txt") if _mask_path(root, i) is not None]
    return {"train": train, "val": val, "test": test}


def _mask_path(root: Path, image_id: str) -> Path | None:
    for folder in ("SegmentationClass", "SegmentationClassAug"):
        p = root / folder / f"{image_id}.png"
        if p.is_file():
            return p
    return None


def _class_mask(path: Path) -> np.ndarray:
    """The class mask of a VOC mask PNG: palette / grey indices, or an RGB copy's colours."""
    with open_picture(path) as im:
        if im.mode != "RGB":
            values = read_label_values(path)
        else:
            rgb = np.asarray(im).astype(np.int64)
            key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            colour_to_index = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(PALETTE)}
            colour_to_index[(224 << 16) | (224 << 8) | 192] = IGNORE
            uniq, inv = np.unique(key, return_inverse=True)
            flat = np.array([colour_to_index.get(int(k), -1) for k in uniq], dtype=np.int64)
            values = flat[inv].reshape(key.shape)
            if (values < 0).any():
                bad = [(int(k) >> 16, (int(k) >> 8) & 255, int(k) & 255) for k in uniq[flat < 0]]
                raise DamagedImageError(f"{path}: colours {bad[:3]} are not VOC class colours")
    return map_values(values, _LUT, path, "a VOC class 0..20 or 255")


def read_voc_image(root: Path, image_id: str) -> ImageSample:
    """One VOC image: JPEG, class mask, instances from SegmentationObject when present."""
    img_path = root / "JPEGImages" / f"{image_id}.jpg"
    image = read_rgb(img_path)
    mpath = _mask_path(root, image_id)
    if mpath is None:
        raise DamagedImageError(
            f"{root}/SegmentationClass/{image_id}.png does not exist (nor in SegmentationClassAug/)"
        )
    mask = _class_mask(mpath)
    check_same_size(image, mask, img_path, mpath)
    instances = None
    opath = root / "SegmentationObject" / f"{image_id}.png"
    if opath.is_file():
        obj = read_label_values(opath)
        check_same_size(image, obj, img_path, opath)
        instances = np.where((obj > 0) & (obj != IGNORE), obj, 0)
    return ImageSample(image_id, image, mask, instances, str(img_path))


def open_voc(raw: Path, aug: bool | None = None) -> ImageSource:
    """The VOC 2012 dataset under ``raw`` as an :class:`ImageSource`."""
    root = find_root(Path(raw))
    splits = voc_splits(root, aug)
    return ImageSource(
        dataset=DATASET,
        classes=list(CLASSES),
        palette=list(PALETTE),
        splits=splits,
        read=lambda image_id: read_voc_image(root, image_id),
        fingerprint={
            "reader": DATASET,
            "raw": str(root.resolve()),
            "aug": aug,
            "train_images": len(splits["train"]),
        },
    )
