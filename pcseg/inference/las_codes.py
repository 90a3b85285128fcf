"""Predicted classes as raw label codes: the reverse of CLASSES.yaml's ``map``, and the LAS
``classification`` codes (with the limits of the point format and notes on what is left
unchanged) that both file paths write; :class:`CodePolicy` says which points' codes a
prediction may replace (``--keep-codes``, ``--only-unclassified``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.io.point_file import PointFile
from pcseg.readers.custom import ClassesSpec

#: ASPRS codes of points never classified (0) and unclassified (1)
UNCLASSIFIED_CODES = (0, 1)


@dataclass(frozen=True)
class CodePolicy:
    """Which points of a LAS file get the predicted classification (the others keep their
    code; every point still gets ``pred_class`` / ``confidence``).

    ``keep_codes``: a point whose code is not in the class file's ``map`` keeps it (water 9,
    overlap 12, ...), except the unclassified codes 0 / 1, which are what is to be
    classified. ``only``: only points whose code is in this set are classified (``pcseg
    predict --only-unclassified``, default ASPRS 0 and 1). Both: a point must pass both.
    Default: every point is classified.
    """

    keep_codes: bool = False
    only: tuple[int, ...] | None = None

    @classmethod
    def of(cls, keep_codes: bool = False, only: Sequence[int] | None = None) -> CodePolicy:
        """The policy of the CLI flags (``only``: the codes, None when not given)."""
        return cls(bool(keep_codes), None if only is None else tuple(int(c) for c in only))

    @property
    def active(self) -> bool:
        """Whether some points may keep their code."""
        return self.keep_codes or self.only is not None

    def replace_mask(self, spec: ClassesSpec, old: np.ndarray | None) -> np.ndarray | None:
        """(N,) bool: the points whose code ``old`` is replaced (None: all, also when the
        file has no classification)."""
        if not self.active or old is None:
            return None
        old = np.asarray(old).astype(np.int64)
        mask = np.ones(len(old), dtype=bool)
        if self.keep_codes:
            # without a map the raw values are the class indices
            mapped = list(spec.map) if spec.map is not None else list(range(len(spec.names)))
            mask &= np.isin(old, [*mapped, *UNCLASSIFIED_CODES])
        if self.only is not None:
            mask &= np.isin(old, self.only)
        return mask

    def describe(self) -> str:
        """The policy in words (summary)."""
        parts = []
        if self.keep_codes:
            parts.append("codes not in map kept (0/1 classified)")
        if self.only is not None:
            parts.append(f"only codes {list(self.only)} classified")
        return "; ".join(parts) or "every point classified"


#: the default policy: every point gets the predicted classification
EVERY_POINT = CodePolicy()


def label_codes(spec: ClassesSpec, pred: np.ndarray) -> np.ndarray:
    """Raw label codes of predicted classes: the reverse of ``map`` (the class index itself
    when ``map`` is omitted); -1 for a class no raw value maps to."""
    rev = spec.reverse_map()
    return pred.astype(np.int64) if rev is None else rev[pred]


def las_classification(
    pf: PointFile,
    spec: ClassesSpec,
    pred: np.ndarray,
    fmt: str,
    policy: CodePolicy = EVERY_POINT,
) -> tuple[np.ndarray | None, list[str]]:
    """Classification codes to set in the output of ``pf`` written as ``fmt`` ('same' or a
    format): LAS codes (only where ``policy`` lets a point's code be replaced), the
    ``.label`` codes of a KITTI ``.bin``, or None (leave it); and notes."""
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
    return classification_codes(spec, pred, pf.fields.get("classification"), policy), notes


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


def classification_codes(
    spec: ClassesSpec,
    pred: np.ndarray,
    old: np.ndarray | None,
    policy: CodePolicy = EVERY_POINT,
) -> np.ndarray:
    """uint8 LAS codes of ``pred``: the reverse of ``map``; a class without a code, and a
    point whose code ``policy`` keeps, keeps the point's ``old`` classification (1,
    unclassified, without one)."""
    codes = label_codes(spec, pred)
    fill = old if old is not None else np.ones(len(codes), dtype=np.int64)
    if (codes < 0).any():
        codes = np.where(codes < 0, fill, codes)
    replace = policy.replace_mask(spec, old)
    if replace is not None:
        codes = np.where(replace, codes, fill)
    return codes.astype(np.uint8)


def las_limit(path: Path) -> int:
    """Largest classification code of a LAS file's point format (31 below format 6)."""
    import laspy  # type: ignore[import-untyped]

    with laspy.open(str(path)) as r:
        return 31 if r.header.point_format.id < 6 else 255
