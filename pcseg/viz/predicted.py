"""The files ``pcseg predict`` writes, read for viewing: one labelled file, or the files of a
predict ``--out`` folder.

A predicted file is the input in its own format (LAS/LAZ, PLY, NPY/NPZ, PCD, TXT) with the
per-point fields ``pred_class`` (class index) and ``confidence`` (max softmax probability)
added (:mod:`pcseg.inference`). The class names (and the class file's ``colors``) are those of
the run that wrote the file: its entry in ``predict_summary.json`` (or
``predict_summary.rank<r>.json``) next to it, whose entries carry ``classes`` / ``colors``
(older summaries: the top-level ones). Without a summary the classes are shown as
``class 0`` .. ``class K-1`` and a note says why.

The input colour of the view is the file's ``red`` / ``green`` / ``blue`` (8 or 16 bit), else
its ``intensity``, else the height ``z``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.io.point_file import PointFileError, list_point_files
from pcseg.io.points import read_points
from pcseg.viz.errors import ViewError

SUMMARY_GLOB = "predict_summary*.json"


@dataclass
class ClassList:
    """The classes of a predicted file: names in training order, ``colors`` {name: [r, g, b]}
    (None: none given) and where they come from (for messages)."""

    names: tuple[str, ...]
    colors: dict[str, list[int]] | None
    source: str


@dataclass
class PredictedFile:
    """A predicted file read for viewing.

    Attributes:
        path: the file; xyz: (N, 3) float64 as stored; pred: (N,) int64 ``pred_class``;
        confidence: (N,) float32 or None; feats: (N, 3) RGB in [0, 1] or (N, 1) scalar with
        ``feat_kind`` 'rgb' | 'intensity' | 'height'; classes: the class list; notes:
        what the user should know (classes not found).
    """

    path: Path
    xyz: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray | None
    feats: np.ndarray
    feat_kind: str
    classes: ClassList
    notes: list[str]


def is_predict_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding a ``predict_summary*.json``."""
    return path.is_dir() and any(p.is_file() for p in path.glob(SUMMARY_GLOB))


def summary_classes(folder: str | os.PathLike[str]) -> dict[str, ClassList]:
    """{output file name: its classes} from the predict summaries in ``folder`` (unreadable
    summaries are skipped; a file in two rank summaries takes the later one)."""
    out: dict[str, ClassList] = {}
    for path in sorted(Path(folder).glob(SUMMARY_GLOB)):
        if path.name.endswith(".unreadable.json"):
            continue
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(summary, dict) or not isinstance(summary.get("files"), list):
            continue
        for entry in summary["files"]:
            found = _entry_classes(entry, summary, path)
            if found is not None:
                out[Path(str(entry["output"])).name] = found
    return out


def _entry_classes(entry: Any, summary: dict[str, Any], path: Path) -> ClassList | None:
    if not isinstance(entry, dict) or "output" not in entry:
        return None
    names = entry.get("classes") or summary.get("classes")
    if not isinstance(names, list) or not names:
        return None
    colors = entry.get("colors") if "classes" in entry else summary.get("colors")
    return ClassList(tuple(str(n) for n in names), colors or None, str(path))


KITTI_HINT = (
    "a KITTI .bin scan: pcseg predict writes its classes to the .label file beside it, which "
    "pcseg view does not read; predict with --format ply (or npy) to view the result"
)


def predicted_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The predicted files of a predict ``--out`` folder: those its summaries list that are
    there, else every point file in it, sorted by name; KITTI ``.bin`` scans left out (their
    classes are in ``.label`` files: :data:`KITTI_HINT`)."""
    folder = Path(folder)
    listed = [folder / name for name in summary_classes(folder)]
    files = [p for p in listed if p.is_file()] or list_point_files(folder)
    return sorted((p for p in files if p.suffix.lower() != ".bin"), key=lambda p: p.name)


def _colour_feats(fields: dict[str, np.ndarray], xyz: np.ndarray) -> tuple[np.ndarray, str]:
    """(feats, kind) of the input colour: RGB in [0, 1], else intensity, else z."""
    if all(k in fields for k in ("red", "green", "blue")):
        rgb = np.stack(
            [np.asarray(fields[k], dtype=np.float64) for k in ("red", "green", "blue")], 1
        )
        top = 65535.0 if rgb.size and rgb.max() > 255 else 255.0
        return (rgb / top).astype(np.float32), "rgb"
    if "intensity" in fields:
        return np.asarray(fields["intensity"], dtype=np.float32).reshape(-1, 1), "intensity"
    return xyz[:, 2:3].astype(np.float32), "height"


def read_predicted_file(
    path: str | os.PathLike[str], classes: ClassList | None = None
) -> PredictedFile:
    """Read the predicted file ``path`` (``classes``: its class list; None: looked up in the
    summaries next to it). :class:`ViewError` naming the file when it has no ``pred_class``
    or its classes do not fit."""
    path = Path(path)
    try:
        pf = read_points(path)
    except PointFileError as e:
        raise ViewError(str(e)) from None
    if "pred_class" not in pf.fields and pf.format == "bin":
        raise ViewError(f"{path}: {KITTI_HINT}")
    if "pred_class" not in pf.fields:
        raise ViewError(
            f"{path}: no 'pred_class' field, so no file written by pcseg predict "
            f"(fields: {', '.join(sorted(pf.fields))})"
        )
    pred = np.asarray(pf.fields["pred_class"]).reshape(-1).astype(np.int64)
    conf = pf.fields.get("confidence")
    confidence = None if conf is None else np.asarray(conf, dtype=np.float32).reshape(-1)
    notes: list[str] = []
    if classes is None:
        classes = summary_classes(path.parent).get(path.name)
    if classes is None:
        k = int(pred.max()) + 1 if pred.size else 1
        classes = ClassList(tuple(f"class {i}" for i in range(k)), None, "pred_class values")
        notes.append(
            f"{path}: no predict_summary.json entry next to it: classes shown as class 0.."
            f"{k - 1} (keep the summary pcseg predict wrote beside the file)"
        )
    if pred.size and (pred.min() < 0 or pred.max() >= len(classes.names)):
        raise ViewError(
            f"{path}: pred_class values in [{pred.min()}, {pred.max()}], but {classes.source} "
            f"lists {len(classes.names)} classes"
        )
    feats, kind = _colour_feats(pf.fields, pf.xyz)
    return PredictedFile(path, pf.xyz, pred, confidence, feats, kind, classes, notes)
