"""Colour modes: pure numpy functions from per-point arrays to (N, 3) uint8 RGB.

Modes (:data:`MODES`):

=============== =================================================================
``rgb``         the scan's colour, or remission through a colormap (viridis)
``gt``          ground truth by class colour, ignored points grey
``weak``        weakly labelled points by class colour, the rest light grey
``pred``        the model's prediction
``pseudo``      the method's pseudo-labels (-1 = none -> grey)
``confidence``  max softmax probability, colormap over [0, 1] (red = unsure)
``entropy``     prediction entropy, colormap over [0, log K] (bright = unsure)
``error``       prediction vs ground truth: wrong violet, right grey, ignored dark
``pseudo_error`` pseudo-label vs ground truth: wrong violet, right grey, none/ignored dark
=============== =================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from pcseg.viz.errors import ViewError
from pcseg.viz.palettes import ERROR_COLOR, IGNORE_COLOR, UNLABELLED_COLOR

if TYPE_CHECKING:  # pragma: no cover
    from pcseg.viz.data import ViewData

MODES: tuple[str, ...] = (
    "rgb",
    "gt",
    "weak",
    "pred",
    "pseudo",
    "confidence",
    "entropy",
    "error",
    "pseudo_error",
)
LABEL_MODES: tuple[str, ...] = ("gt", "weak", "pred", "pseudo")
"""Modes whose colours are class colours (they get a class legend)."""

WRONG_COLOR: tuple[int, int, int] = ERROR_COLOR  # violet: no class palette uses it
RIGHT_COLOR: tuple[int, int, int] = (190, 190, 190)
DARK_COLOR: tuple[int, int, int] = (60, 60, 60)

CONFIDENCE_CMAP = "RdYlGn"
ENTROPY_CMAP = "inferno"
REMISSION_CMAP = "viridis"
#: feature kinds the rgb mode shows through :data:`REMISSION_CMAP` (one scalar per point)
SCALAR_KINDS: tuple[str, ...] = ("remission", "features", "intensity", "height")


class ModeUnavailable(ValueError):
    """The view data lacks what a colour mode needs (e.g. ``pred`` for a processed folder)."""


def _as_labels(labels: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D label array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def label_colors(
    labels: np.ndarray, palette: np.ndarray, ignore_color: Sequence[int] = IGNORE_COLOR
) -> np.ndarray:
    """Class colours: labels (N,) int in [0, K) or -1 -> (N, 3) uint8; -1 gets ``ignore_color``.

    Raises ValueError for a label >= K or < -1.
    """
    labels = _as_labels(labels, "labels")
    palette = np.asarray(palette, dtype=np.uint8)
    if labels.size and (labels.max() >= len(palette) or labels.min() < -1):
        raise ValueError(
            f"labels range [{labels.min()}, {labels.max()}] outside [-1, "
            f"{len(palette) - 1}] of a {len(palette)}-colour palette"
        )
    out = np.empty((len(labels), 3), dtype=np.uint8)
    valid = labels >= 0
    out[valid] = palette[labels[valid]]
    out[~valid] = np.asarray(ignore_color, dtype=np.uint8)
    return out


def weak_colors(
    labels: np.ndarray,
    labelled: np.ndarray,
    palette: np.ndarray,
    unlabelled_color: Sequence[int] = UNLABELLED_COLOR,
    ignore_color: Sequence[int] = IGNORE_COLOR,
) -> np.ndarray:
    """Weak-label view: points with ``labelled`` (N,) bool True get their class colour
    (``ignore_color`` if their label is -1), all others ``unlabelled_color``. -> (N, 3) uint8."""
    labelled = np.asarray(labelled, dtype=bool)
    labels = _as_labels(labels, "labels")
    if labelled.shape != labels.shape:
        raise ValueError(f"labelled mask shape {labelled.shape} != labels shape {labels.shape}")
    out = np.empty((len(labels), 3), dtype=np.uint8)
    out[:] = np.asarray(unlabelled_color, dtype=np.uint8)
    out[labelled] = label_colors(labels[labelled], palette, ignore_color)
    return out


def scalar_colors(
    values: np.ndarray,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    nan_color: Sequence[int] = IGNORE_COLOR,
) -> np.ndarray:
    """Heat map: values (N,) float -> (N, 3) uint8 through matplotlib colormap ``cmap``
    after clipping to [vmin, vmax] (defaults: 1st / 99th percentile of the finite values).
    Non-finite values get ``nan_color``."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {v.shape}")
    finite = np.isfinite(v)
    if vmin is None or vmax is None:
        lo, hi = np.percentile(v[finite], [1, 99]) if finite.any() else (0.0, 1.0)
        vmin = float(lo) if vmin is None else vmin
        vmax = float(hi) if vmax is None else vmax
    span = vmax - vmin
    t = np.zeros_like(v) if span <= 0 else np.clip((v - vmin) / span, 0.0, 1.0)
    t[~finite] = 0.0
    out = np.asarray(colormaps[cmap](t, bytes=True))[:, :3].astype(np.uint8)
    out[~finite] = np.asarray(nan_color, dtype=np.uint8)
    return out


def rgb_colors(feats: np.ndarray, feat_kind: str = "rgb", cmap: str = REMISSION_CMAP) -> np.ndarray:
    """Input colours: RGB feats (N, >=3) in [0, 1] -> (N, 3) uint8 (round(255 * clip));
    feats stored as 0..255 (max > 1.5) are scaled by 1/255 first. Remission feats (N, 1)
    -> :func:`scalar_colors` with ``cmap`` over their 1st..99th percentile (also the
    other :data:`SCALAR_KINDS`: a predicted file's intensity or height)."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"feats must be (N, C), got shape {feats.shape}")
    if feat_kind in SCALAR_KINDS or feats.shape[1] < 3:
        return scalar_colors(feats[:, 0], cmap=cmap)
    if feat_kind != "rgb":
        raise ValueError(f"feat_kind must be 'rgb' or 'remission', got {feat_kind!r}")
    rgb = feats[:, :3]
    if rgb.size and rgb.max() > 1.5:
        rgb = rgb / 255.0
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def error_colors(
    pred: np.ndarray,
    gt: np.ndarray,
    wrong: Sequence[int] = WRONG_COLOR,
    right: Sequence[int] = RIGHT_COLOR,
    ignored: Sequence[int] = DARK_COLOR,
) -> np.ndarray:
    """Error map (N, 3) uint8: gt == -1 or pred == -1 -> ``ignored``; pred != gt -> ``wrong``;
    else ``right``."""
    pred = _as_labels(pred, "pred")
    gt = _as_labels(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    out = np.empty((len(gt), 3), dtype=np.uint8)
    out[:] = np.asarray(right, dtype=np.uint8)
    out[pred != gt] = np.asarray(wrong, dtype=np.uint8)
    out[(gt < 0) | (pred < 0)] = np.asarray(ignored, dtype=np.uint8)
    return out


def entropy_vmax(num_classes: int) -> float:
    """Largest possible entropy (nats) of a ``num_classes``-way softmax: log K."""
    return float(np.log(max(num_classes, 2)))


def available_modes(view: ViewData) -> list[str]:
    """The modes of :data:`MODES` that ``view`` has data for."""
    out = []
    for m in MODES:
        try:
            _check_mode(view, m)
        except ModeUnavailable:
            continue
        out.append(m)
    return out


def _check_mode(view: ViewData, mode: str) -> None:
    if mode not in MODES:
        raise ViewError(f"unknown colour mode {mode!r}; expected one of {', '.join(MODES)}")
    has_gt = view.semantic is not None and bool((view.semantic >= 0).any())
    need = {
        "gt": [("semantic", has_gt, "the scene has no ground-truth labels")],
        "weak": [
            (
                "labelled",
                view.labelled is not None,
                "no weak-label spec loaded (pass --labels SPEC, e.g. 1%)",
            )
        ],
        "pred": [
            ("pred", view.pred is not None, "no predictions (open a run folder after pcseg test)")
        ],
        "pseudo": [
            (
                "pseudo",
                view.pseudo is not None and bool((view.pseudo >= 0).any()),
                "the method produced no pseudo-labels (all -1)"
                if view.pseudo is not None
                else "no predictions (open a run folder after pcseg test)",
            )
        ],
        "confidence": [
            ("confidence", view.confidence is not None, "no confidence in the predictions")
        ],
        "entropy": [("entropy", view.entropy is not None, "no entropy in the predictions")],
        "error": [
            ("pred", view.pred is not None, "no predictions"),
            ("semantic", has_gt, "the scene has no ground-truth labels"),
        ],
        "pseudo_error": [
            (
                "pseudo",
                view.pseudo is not None and bool((view.pseudo >= 0).any()),
                "no pseudo-labels",
            ),
            ("semantic", has_gt, "the scene has no ground-truth labels"),
        ],
    }.get(mode, [])
    for _, ok, why in need:
        if not ok:
            raise ModeUnavailable(f"mode {mode!r} unavailable for scene {view.name}: {why}")


def mode_colors(view: ViewData, mode: str) -> np.ndarray:
    """Colours (N, 3) uint8 of ``view`` in colour mode ``mode`` (one of :data:`MODES`).

    Raises :class:`ModeUnavailable` when the data needed by the mode is absent.
    """
    _check_mode(view, mode)
    pal = view.palette
    if mode == "rgb":
        return rgb_colors(view.feats, view.feat_kind)
    if mode == "gt":
        return label_colors(view.semantic, pal)
    if mode == "weak":
        labels = view.semantic if view.weak_classes is None else view.weak_classes
        return weak_colors(labels, view.labelled, pal)
    if mode == "pred":
        return label_colors(view.pred, pal)
    if mode == "pseudo":
        return label_colors(view.pseudo, pal)
    if mode == "confidence":
        return scalar_colors(view.confidence, CONFIDENCE_CMAP, 0.0, 1.0)
    if mode == "entropy":
        return scalar_colors(view.entropy, ENTROPY_CMAP, 0.0, entropy_vmax(len(view.class_names)))
    if mode == "error":
        return error_colors(view.pred, view.semantic)
    return error_colors(view.pseudo, view.semantic)  # pseudo_error


def class_shares(labels: np.ndarray, class_names: Sequence[str], top: int = 3) -> str:
    """The ``top`` most frequent classes of ``labels`` (-1 left out) with their shares,
    e.g. ``'ground 61.0%, building 30.2%'``; '' when no point has a class."""
    lab = np.asarray(labels)
    lab = lab[lab >= 0]
    if not lab.size:
        return ""
    counts = np.bincount(lab, minlength=len(class_names))
    order = np.argsort(-counts, kind="stable")[:top]
    return ", ".join(
        f"{class_names[c]} {100.0 * counts[c] / lab.size:.1f}%" for c in order if counts[c]
    )


def mode_summary(view: ViewData, mode: str, mask: np.ndarray | None = None) -> str:
    """One-line statistic of ``mode`` over the points in ``mask`` (all if None), e.g.
    ``'acc 87.3%'`` for pred (without ground truth: its largest class shares),
    ``'123 pts (1.00%)'`` for weak; '' when nothing applies."""
    sel = np.ones(view.num_points, dtype=bool) if mask is None else np.asarray(mask, bool)
    gt = view.semantic[sel] if view.semantic is not None else None
    valid = gt >= 0 if gt is not None else None

    def acc(labels: np.ndarray) -> str:
        if gt is None or not valid.any():
            return ""
        m = valid & (labels >= 0)
        if not m.any():
            return ""
        return f"acc {100.0 * float((labels[m] == gt[m]).mean()):.1f}%"

    if mode == "weak" and view.labelled is not None:
        n = int(view.labelled[sel].sum())
        return f"{n:,d} labelled ({100.0 * n / max(1, int(sel.sum())):.2f}%)"
    if mode in ("pred", "error") and view.pred is not None:
        s = acc(view.pred[sel])
        if mode == "error" and s:
            m = valid & (view.pred[sel] >= 0)
            return f"{100.0 * float((view.pred[sel][m] != gt[m]).mean()):.1f}% wrong"
        return s or (class_shares(view.pred[sel], view.class_names) if mode == "pred" else "")
    if mode in ("pseudo", "pseudo_error") and view.pseudo is not None:
        p = view.pseudo[sel]
        cover = 100.0 * float((p >= 0).mean()) if p.size else 0.0
        a = acc(p)
        return f"{a}, covers {cover:.1f}%" if a else f"covers {cover:.1f}%"
    if mode == "confidence" and view.confidence is not None:
        return f"mean {float(np.mean(view.confidence[sel])):.3f}"
    if mode == "entropy" and view.entropy is not None:
        return f"mean {float(np.mean(view.entropy[sel])):.3f} nats"
    return ""
