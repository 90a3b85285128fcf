"""pcseg.inference.tiling: tiles cover every voxel once within the budget and the span limit;
the overlap in whole voxels."""

from __future__ import annotations

import numpy as np

from pcseg.inference.tiling import make_tiles, margin_voxels


def test_tiles_cover_every_voxel_once_within_budget():
    vox = np.random.default_rng(0).integers(0, 200, (20000, 3))
    vox[:, 2] //= 20
    vox = np.unique(vox, axis=0)
    tiles = make_tiles(vox, 3000, 4)
    owner = np.zeros(len(vox), dtype=np.int64)
    for t in tiles:
        owner[t.index[t.core]] += 1
        assert len(t.index) <= 3000
    assert (owner == 1).all() and len(tiles) > 4


def test_tiles_respect_the_span_limit():
    vox = np.stack([np.arange(100), np.zeros(100, int), np.zeros(100, int)], axis=1)
    tiles = make_tiles(vox, 10_000, 2, max_span=40)  # the budget alone would keep one tile
    assert len(tiles) > 1
    for t in tiles:
        assert int((t.hi - t.lo + 2 * 2).max()) <= 40
    owner = np.zeros(len(vox), dtype=np.int64)
    for t in tiles:
        owner[t.index[t.core]] += 1
    assert (owner == 1).all()


def test_margin_voxels_rounds_up_to_whole_voxels():
    assert margin_voxels(0.5, None) == 16
    assert margin_voxels(0.5, 3.0) == 6
    assert margin_voxels(0.5, 3.1) == 7
    assert margin_voxels(0.1, 0.3) == 3  # 0.3 / 0.1 = 2.9999999999999996 in floats
    assert margin_voxels(0.05, 0.0) == 0
