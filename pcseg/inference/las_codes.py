"""Predicted classes as raw label codes: the reverse of CLASSES.yaml's ``map``, and the LAS
``classification`` codes (with the limits of the point format and notes on what is left
unchanged) that both file paths write."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.datasets.custom import ClassesSpec
from pcseg.io.point_file import PointFile


def label_codes(spec: ClassesSpec, pred: np.ndarray) -> np.ndarray:
    """Raw label codes of predicted classes: the reverse of ``map`` (the class index itself
    when ``map`` is omitted); -1 for a class no raw value maps to."""
    rev = spec.reverse_map()
    return pred.astype(np.int64) if rev is None else rev[pred]


def las_classification(
    pf: PointFile, spec: ClassesSpec, pred: np.ndarray, fmt: str
) -> tuple[np.ndarray | None, list[str]]:
    """Classification codes to set in the output of ``pf`` written as ``fmt`` ('same' or a
    format): LAS codes, the ``.label`` codes of a KITTI ``.bin``, or None (leave it); and
    notes."""
    target = pf.format if fmt == "same" else fmt
    if target not in ("las", "bin"):
        return None, []
    if target == "bin":
        return label_codes(spec, pred), []
    if spec.label_field != "classification" and pf.format == "las":
        return None, []
    las = pf.native.get("las")
    limit = 31 if las is not None and las.point_format.id < 6 else 255
    notes = classification_notes(spec, np.unique(pred), limit)
    if any("left unchanged" in n for n in notes):
        return None, notes
    return classification_codes(spec, pred, pf.fields.get("classification")), notes


def classification_notes(spec: ClassesSpec, classes: np.ndarray, limit: int) -> list[str]:
    """Notes on writing the codes of the predicted ``classes`` into a LAS classification
    whose largest code is ``limit`` (31 for point formats < 6); a note containing "left
    unchanged" means the classification is not written."""
    codes = label_codes(spec, np.asarray(classes, dtype=np.int64))
    notes = []
    if (codes < 0).any():
        notes.append("classes without a raw code in 'map' keep the file's classification")
    if codes.max(initial=0) > limit:
        notes.append(
            f"codes above {limit} do not fit this point format's classification; "
            "classification left unchanged (see pred_class)"
        )
    return notes


def classification_codes(spec: ClassesSpec, pred: np.ndarray, old: np.ndarray | None) -> np.ndarray:
    """uint8 LAS codes of ``pred``: the reverse of ``map``; a class without a code keeps the
    point's ``old`` classification (1, unclassified, without one)."""
    codes = label_codes(spec, pred)
    if (codes < 0).any():
        fill = old if old is not None else np.ones(len(codes), dtype=np.int64)
        codes = np.where(codes < 0, fill, codes)
    return codes.astype(np.uint8)


def las_limit(path: Path) -> int:
    """Largest classification code of a LAS file's point format (31 below format 6)."""
    import laspy  # type: ignore[import-untyped]

    with laspy.open(str(path)) as r:
        return 31 if r.header.point_format.id < 6 else 255
