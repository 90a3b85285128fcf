"""Active-labelling suggestions (pcseg.annotate.suggest): spread-out spots that find a region
whose predictions were deliberately corrupted."""

from __future__ import annotations

import math

import numpy as np

from pcseg.annotate.suggest import suggest_spots, uncertainty


def _scene(seed: int = 0):
    """A 10 m x 10 m floor of 20k points; a confident correct prediction everywhere except in
    the 1.5 m square around (7, 2), where the prediction is corrupted: wrong class, high
    entropy, and a pseudo-label that disagrees."""
    rng = np.random.default_rng(seed)
    n, k = 20000, 5
    coords = np.concatenate([rng.random((n, 2)) * 10, np.zeros((n, 1))], axis=1)
    gt = (coords[:, 0] // 2).astype(np.int64) % k
    pred = gt.copy()
    pseudo = gt.copy()
    entropy = rng.random(n).astype(np.float32) * 0.3  # background noise
    bad = (np.abs(coords[:, 0] - 7) < 0.75) & (np.abs(coords[:, 1] - 2) < 0.75)
    pred[bad] = (gt[bad] + 1) % k
    entropy[bad] = rng.uniform(0.6, 1.0, bad.sum()) * math.log(k)
    # a few isolated high-entropy outliers elsewhere must not win
    out = rng.choice(np.flatnonzero(~bad), 30, replace=False)
    entropy[out] = math.log(k)
    return coords, pred, pseudo, entropy, bad, k


def test_suggestions_fall_in_the_corrupted_region():
    coords, pred, pseudo, entropy, bad, k = _scene()
    u = uncertainty(entropy, k, pred=pred, pseudo=pseudo)
    assert u[bad].min() > u[~bad].max() - 1.0 and u[bad].mean() > 1.5
    spots = suggest_spots(coords, u, k=3, cell=0.5, min_distance=0.5)
    assert len(spots) == 3
    assert all(bad[s.point] for s in spots)
    assert [s.score for s in spots] == sorted((s.score for s in spots), reverse=True)


def test_entropy_only_and_spread():
    coords, _, _, entropy, bad, k = _scene(1)
    u = uncertainty(entropy, k)  # no pseudo-labels (a supervised run)
    spots = suggest_spots(coords, u, k=8, cell=0.5)
    assert bad[spots[0].point]
    pos = np.stack([s.position for s in spots])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=2) + np.eye(len(spots)) * 99
    assert d.min() >= 1.0 - 0.75  # no two spots from one blob (cells >= 2 cells apart)
    assert len({(int(p[0] // 0.5), int(p[1] // 0.5)) for p in pos}) == 8


def test_labelled_cells_are_skipped():
    coords, pred, pseudo, entropy, bad, k = _scene(2)
    u = uncertainty(entropy, k, pred=pred, pseudo=pseudo)
    labelled = bad.copy()  # the user already labelled the whole region
    spots = suggest_spots(coords, u, k=3, cell=0.5, labelled=labelled)
    cell = np.floor((coords - coords.min(axis=0)) / 0.5).astype(int)  # suggest_spots' grid
    cells_lab = {tuple(c) for c in cell[labelled]}
    assert len(spots) == 3 and all(tuple(cell[s.point]) not in cells_lab for s in spots)
    assert suggest_spots(coords[:0], u[:0], k=3) == []
