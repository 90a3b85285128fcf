"""Where to click next: active-labelling suggestions from a run's predictions.

Per-point uncertainty ``u`` (pure numpy, :func:`uncertainty`):

* the prediction entropy divided by ``log K`` (in [0, 1]);
* plus, where the run has pseudo-labels (ERDA, U2PL, thresholding), the disagreement between
  the pseudo-label p and the prediction q: ``+1`` where ``p >= 0`` and ``p != q``.

Spots (:func:`suggest_spots`): the points are binned into a voxel grid of ``cell`` metres; a
cell's score is the MEAN uncertainty of its points times ``min(1, n / median n)`` (so a cell
with a handful of stray points does not outrank a surface), cells already holding a user
label are skipped, then greedy non-maximum suppression takes the best cell and discards every
cell within ``min_distance`` metres of a taken one, until ``k`` spots: the spots are spread
over the scene, not one blob. Each spot is the most uncertain point of its cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Spot:
    """A suggested place to label: ``point`` index, its ``position`` and the cell ``score``."""

    point: int
    position: np.ndarray
    score: float


def uncertainty(
    entropy: np.ndarray | None,
    num_classes: int,
    pred: np.ndarray | None = None,
    pseudo: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) float32 per-point uncertainty (module docstring); ``confidence`` (1 - max prob) is
    used when there is no entropy."""
    if entropy is not None:
        u = np.asarray(entropy, dtype=np.float64) / max(math.log(max(num_classes, 2)), 1e-12)
    elif confidence is not None:
        u = 1.0 - np.asarray(confidence, dtype=np.float64)
    else:
        raise ValueError("uncertainty needs the run's entropy or confidence")
    u = np.clip(np.nan_to_num(u, nan=0.0), 0.0, None)
    if pred is not None and pseudo is not None:
        p = np.asarray(pseudo)
        u = u + ((p >= 0) & (p != np.asarray(pred))).astype(np.float64)
    return u.astype(np.float32)


def suggest_spots(
    coords: np.ndarray,
    scores: np.ndarray,
    k: int = 10,
    cell: float = 0.5,
    min_distance: float | None = None,
    labelled: np.ndarray | None = None,
) -> list[Spot]:
    """Up to ``k`` spread-out spots of high uncertainty, best first (module docstring).

    Args:
        coords: (N, 3) points; scores: (N,) per-point uncertainty (:func:`uncertainty`).
        cell: voxel size (metres) of the score grid.
        min_distance: no two spots closer than this (metres); default ``2 * cell``.
        labelled: (N,) bool, points the user already labelled (their cells are skipped).
    """
    coords = np.asarray(coords, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3 or scores.shape != (len(coords),):
        raise ValueError(
            f"suggest_spots: coords (N, 3) and scores (N,) expected, got "
            f"{coords.shape} and {scores.shape}"
        )
    if len(coords) == 0 or k <= 0:
        return []
    if cell <= 0:
        raise ValueError(f"suggest_spots: cell must be > 0, got {cell}")
    dist = 2.0 * cell if min_distance is None else float(min_distance)
    vox = np.floor((coords - coords.min(axis=0)) / cell).astype(np.int64)
    _, inv, n = np.unique(vox, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    m = len(n)
    mean = np.bincount(inv, weights=scores, minlength=m) / n
    cell_score = mean * np.minimum(1.0, n / max(float(np.median(n)), 1.0))
    if labelled is not None:
        has = np.bincount(inv, weights=np.asarray(labelled, dtype=np.float64), minlength=m) > 0
        cell_score[has] = -np.inf
    # the most uncertain point of each cell
    order = np.lexsort((-scores, inv))
    first = np.ones(len(order), dtype=bool)
    first[1:] = inv[order][1:] != inv[order][:-1]
    best_point = np.empty(m, dtype=np.int64)
    best_point[inv[order][first]] = order[first]
    centre = np.zeros((m, 3))
    for d in range(3):
        centre[:, d] = np.bincount(inv, weights=coords[:, d], minlength=m) / n
    spots: list[Spot] = []
    alive = np.isfinite(cell_score)
    while len(spots) < k and alive.any():
        j = int(np.argmax(np.where(alive, cell_score, -np.inf)))
        p = int(best_point[j])
        spots.append(Spot(p, coords[p].astype(np.float32), float(cell_score[j])))
        alive &= np.linalg.norm(centre - centre[j], axis=1) >= dist
        alive[j] = False
    return spots
