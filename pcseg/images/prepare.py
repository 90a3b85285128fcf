"""Raw image dataset -> processed image folder (``pcseg prepare voc|cityscapes|images``).

:func:`prepare_images` reads every image of an :class:`~pcseg.images.common.ImageSource`
(opened by :func:`open_source`) and writes ``images/<id>.png``, ``instances/<id>.png``
(when the dataset has them) and ``masks/<id>.png`` last, so an image whose mask exists is
complete and a rerun skips it (``overwrite`` redoes them). A damaged image (a truncated file,
a mask of another size, a mask value not in the map) is named on stderr, listed in
``summary.json`` under ``failures`` and left out of the splits; the others go on. Then
``meta.json`` (:mod:`pcseg.images.processed`), ``summary.json`` (images per split, labelled
images, per-class pixel counts of the train split, failures, label specs) and the weak
labels of the specs asked for (:func:`pcseg.images.processed.ensure_weak_labels`). A
folder prepared from other data is refused unless ``overwrite``; labels drawn for another
train split are removed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.images.cityscapes import open_cityscapes
from pcseg.images.common import ImageSample, ImageSource
from pcseg.images.folder import open_folder
from pcseg.images.labels import IGNORE, parse_image_spec
from pcseg.images.processed import (
    ImageMeta,
    ensure_weak_labels,
    labelled_images,
    load_mask,
    read_fingerprint,
    read_meta,
    write_image,
    write_instances,
    write_mask,
    write_meta,
)
from pcseg.images.voc import open_voc
from pcseg.io.atomic import atomic_write_json, remove_stale_temporaries
from pcseg.utils.progress import progress_bar

#: the datasets ``pcseg prepare`` reads as images
IMAGE_DATASETS = ("voc", "cityscapes", "images")


class ImagePrepareError(ValueError):
    """Nothing to prepare, or a folder that cannot be prepared into (the message says why)."""


@dataclass
class ImagePrepareOptions:
    """What ``pcseg prepare voc|cityscapes|images`` was asked.

    Attributes:
        dataset: "voc", "cityscapes" or "images".
        raw: the raw folder. out: the processed folder.
        classes: images only: the CLASSES.yaml (default RAW/CLASSES.yaml).
        voc_aug: voc only: SBD's augmented train set (None = when present).
        splits: the splits to process (None = all the reader defines).
        labels: label specs to draw (``pcseg.images.labels``). seed: their seed.
        overwrite: redo images already written; replace a folder prepared from other data.
    """

    dataset: str
    raw: Path
    out: Path
    classes: Path | None = None
    voc_aug: bool | None = None
    splits: list[str] | None = None
    labels: list[str] = field(default_factory=list)
    seed: int = 0
    overwrite: bool = False


def open_source(opts: ImagePrepareOptions) -> ImageSource:
    """The reader of ``opts.dataset`` opened on ``opts.raw``."""
    if not Path(opts.raw).is_dir():
        raise ImagePrepareError(f"raw folder {opts.raw} does not exist")
    if opts.dataset == "voc":
        return open_voc(opts.raw, opts.voc_aug)
    if opts.dataset == "cityscapes":
        return open_cityscapes(opts.raw)
    if opts.dataset == "images":
        return open_folder(opts.raw, opts.classes)
    raise ImagePrepareError(f"unknown image dataset {opts.dataset!r}; one of {IMAGE_DATASETS}")


def _json_plain(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (int keys -> str), for comparing fingerprints."""
    return json.loads(json.dumps(obj, default=str))


def _check_folder(out: Path, source: ImageSource, overwrite: bool) -> None:
    """Refuse a folder prepared from other data (unless ``overwrite``: then empty it)."""
    old = read_fingerprint(out)
    if old is None or old == _json_plain(source.fingerprint):
        return
    if not overwrite:
        raise ImagePrepareError(
            f"{out} was prepared from other data ({old.get('reader')} at {old.get('raw')}); "
            "give another --out, or --overwrite to replace it"
        )
    for sub in ("images", "masks", "instances", "labels"):
        shutil.rmtree(out / sub, ignore_errors=True)


def _write_sample(out: Path, s: ImageSample) -> None:
    write_image(out, s.image_id, s.image)
    if s.instances is not None:
        write_instances(out, s.image_id, s.instances)
    write_mask(out, s.image_id, s.mask)  # last: a mask on disk = a complete image


def _process(
    source: ImageSource, out: Path, split: str, overwrite: bool, failures: list[dict[str, str]]
) -> list[str]:
    """Write the images of ``split``; returns those done (failures appended, named on
    stderr)."""
    ids = source.splits[split]
    done = []
    for image_id in progress_bar(ids, desc=f"images {split}", unit="image"):
        if not overwrite and (out / "masks" / f"{image_id}.png").is_file():
            done.append(image_id)
            continue
        try:
            _write_sample(out, source.read(image_id))
        except (ValueError, OSError) as e:
            msg = " ".join(str(e).split())
            print(f"pcseg prepare: skipped image {image_id}: {msg}", file=sys.stderr)
            failures.append({"image": image_id, "error": msg})
            continue
        done.append(image_id)
    return done


def _class_pixels(out: Path, ids: list[str], k: int) -> tuple[list[int], int]:
    """(pixels per class over ``ids``, images without a labelled pixel)."""
    counts = np.zeros(k, dtype=np.int64)
    empty = 0
    for image_id in ids:
        m = load_mask(out, image_id)
        lab = m[m != IGNORE]
        counts += np.bincount(lab, minlength=k)[:k]
        empty += int(lab.size == 0)
    return counts.tolist(), empty


def _drop_stale_labels(out: Path, train: list[str]) -> None:
    """Remove labels/ when the train split is not the one they were drawn for."""
    try:
        old = read_meta(out).splits.get("train")
    except ValueError:
        old = None
    if old is not None and old != train and (out / "labels").is_dir():
        print(f"pcseg prepare: the train split changed: removing {out / 'labels'}", file=sys.stderr)
        shutil.rmtree(out / "labels")


def prepare_images(opts: ImagePrepareOptions, source: ImageSource | None = None) -> dict[str, Any]:
    """Prepare ``opts.raw`` into ``opts.out`` (module docstring); returns the summary.

    Raises:
        ImagePrepareError: no images, every image failed, an unknown split, or a folder
            prepared from other data without ``overwrite``.
    """
    for spec in opts.labels:
        parse_image_spec(spec)  # a bad spec fails before any work
    source = source or open_source(opts)
    out = Path(opts.out)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(out, source, opts.overwrite)
    for sub in ("images", "masks", "instances"):
        remove_stale_temporaries(out / sub, started)
    wanted = opts.splits or list(source.splits)
    unknown = sorted(set(wanted) - set(source.splits))
    if unknown:
        raise ImagePrepareError(
            f"{opts.dataset}: no split {unknown} (splits: {list(source.splits)})"
        )
    failures: list[dict[str, str]] = []
    splits = {
        s: _process(source, out, s, opts.overwrite, failures) if s in wanted else []
        for s in source.splits
    }
    total = sum(len(source.splits[s]) for s in wanted)
    if total == 0:
        raise ImagePrepareError(f"{opts.raw}: no images in the splits {wanted}")
    if not any(splits.values()):
        raise ImagePrepareError(f"{opts.raw}: every image failed ({failures[0]['error']} ...)")
    for s in ("train", "val", "test"):
        splits.setdefault(s, [])
    _drop_stale_labels(out, splits["train"])
    write_meta(
        out,
        ImageMeta(source.dataset, source.classes, source.palette, IGNORE, splits),
        _json_plain(source.fingerprint),
    )
    return _summarise(out, opts, source, splits, failures, total)


def _summarise(
    out: Path,
    opts: ImagePrepareOptions,
    source: ImageSource,
    splits: dict[str, list[str]],
    failures: list[dict[str, str]],
    total: int,
) -> dict[str, Any]:
    """Draw the label specs and write summary.json."""
    pixels, empty = _class_pixels(out, splits["train"], len(source.classes))
    label_counts: dict[str, dict[str, int]] = {}
    for spec in opts.labels:
        name = parse_image_spec(spec).name
        ensure_weak_labels(out, name, opts.seed)
        label_counts[name] = {"labelled_images": len(labelled_images(out, name, "train"))}
    summary = {
        "dataset": source.dataset,
        "images_total": total,
        "images": {s: len(v) for s, v in splits.items()},
        "train_images_without_labels": empty,
        "train_class_pixels": dict(zip(source.classes, pixels, strict=True)),
        "labels": label_counts,
        "seed": opts.seed,
        "failures": failures,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary
