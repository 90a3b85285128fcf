"""``pcseg predict`` with an image checkpoint: label your own image files.

INPUT: image files or folders (every ``.png`` / ``.jpg`` / ``.jpeg`` / ``.bmp`` / ``.tif`` /
``.tiff`` / ``.webp`` under a folder, hidden files skipped). Each image is normalised as in
training and predicted at its own resolution (``data.images.test_mode`` of the run: the whole
image, or sliding windows), then written as::

    OUT/<stem>_class.png     uint8 class index per pixel
    OUT/<stem>_overlay.png   the image blended half and half with the class colours

plus ``OUT/summary.json`` (files, classes, palette, failures). A file that cannot be read is
named and skipped; the exit status is then 1. The class colours are the processed folder's
palette kept in the checkpoint (``data_meta``), else pcseg.viz.palettes.generic_palette.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pcseg.config import Config, is_image_data
from pcseg.engine.checkpoint import config_from_checkpoint
from pcseg.engine.evaluate import load_model_for_eval
from pcseg.engine.evaluate_images import index_png, predict_image
from pcseg.engine.setup import autocast_factory, autocast_policy, resolve_device
from pcseg.images.transforms import normalise
from pcseg.io.atomic import atomic_write_bytes, atomic_write_json
from pcseg.models.dense import PixelRows
from pcseg.utils.progress import progress_bar
from pcseg.viz.palettes import generic_palette

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImagePredictError(ValueError):
    """An image predict run that cannot start (no image among the inputs, a bad checkpoint)."""


def list_image_files(inputs: list[str | Path]) -> list[Path]:
    """The image files of ``inputs`` (files as given, folders searched recursively, sorted;
    hidden files and folders skipped). Raises FileNotFoundError for a missing input."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = [
                p
                for p in sorted(item.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(item).parts)
            ]
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    return files


def overlay(
    image: np.ndarray, pred: np.ndarray, palette: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """(H, W, 3) uint8: ``image`` blended with the colour of each pixel's class."""
    colours = palette[pred].astype(np.float32)
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    blended: np.ndarray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return blended


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _palette(state: dict[str, Any], num_classes: int) -> np.ndarray:
    meta = (state.get("data_meta") or {}).get("classes") or {}
    pal = meta.get("palette") if isinstance(meta, dict) else None
    if pal is not None and len(pal) == num_classes:
        return np.asarray(pal, dtype=np.uint8)
    return np.asarray(generic_palette(num_classes), dtype=np.uint8)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            rgb: np.ndarray = np.asarray(im.convert("RGB"))
            return rgb
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e


def predict_image_files(
    checkpoint: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    device: str = "auto",
    progress: bool = True,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Label every image of ``inputs`` with the image ``checkpoint`` into ``out`` (module
    docstring; a second input of the same file name gets ``<stem>_2_class.png``, ...);
    returns the summary also written to ``out/summary.json``."""
    cfg: Config = config_from_checkpoint(checkpoint, [f"train.device={device}", *(overrides or [])])
    if not is_image_data(cfg.data):
        raise ImagePredictError(f"{checkpoint} was not trained on images")
    files = list_image_files(inputs)
    if not files:
        raise ImagePredictError(f"no image file ({', '.join(IMAGE_SUFFIXES)}) among {inputs}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ImagePredictError(f"--out {out} is a file, not a folder")
    dev = resolve_device(cfg.train.device)
    model, method, state = load_model_for_eval(cfg, checkpoint, dev)
    assert isinstance(model, PixelRows)
    autocast = autocast_factory(*autocast_policy(cfg.train.amp, cfg.train.amp_dtype, dev), dev)
    names = list(state.get("class_names") or [])
    palette = _palette(state, len(names))
    done: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    stems: dict[str, int] = {}
    t0 = time.time()
    for path in progress_bar(files, desc="predict", disable=not progress):
        try:
            rgb = _read_rgb(path)
        except ValueError as e:
            print(f"[predict] skipped {e}", file=sys.stderr)
            failures.append({"file": str(path), "error": str(e)})
            continue
        x = torch.from_numpy(normalise(rgb, cfg.data.images)).to(dev)
        prob, _ = predict_image(model, method, x, cfg.data.images, autocast)
        pred = prob.argmax(0)
        n = stems[path.stem] = stems.get(path.stem, 0) + 1
        stem = path.stem if n == 1 else f"{path.stem}_{n}"  # two inputs of one name
        atomic_write_bytes(out / f"{stem}_class.png", index_png(pred))
        atomic_write_bytes(out / f"{stem}_overlay.png", _png(overlay(rgb, pred, palette)))
        counts = np.bincount(pred.reshape(-1), minlength=len(names))
        done.append({"file": str(path), "output": f"{stem}_class.png", "pixels": counts.tolist()})
        print(f"[predict] {path} -> {out / (stem + '_class.png')}")
    summary = {
        "checkpoint": str(checkpoint),
        "files": done,
        "failures": failures,
        "class_names": names,
        "palette": palette.tolist(),
        "seconds": time.time() - t0,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


__all__ = [
    "IMAGE_SUFFIXES",
    "ImagePredictError",
    "list_image_files",
    "overlay",
    "predict_image_files",
]
