"""pcseg.sparse.kernel_map: kernel offsets in MinkowskiEngine order, submanifold and
downsampling maps against brute force."""

from __future__ import annotations

import pytest
import torch
from helpers.sparse import random_coords

from pcseg.sparse import (
    CoordinateManager,
    kernel_offsets,
)
from pcseg.sparse import tensor as tensor_mod


# ------------------------------------------------------------------ kernel maps
def test_kernel_offset_order_is_minkowski():
    offs = kernel_offsets(3)
    assert offs[0] == (-1, -1, -1) and offs[1] == (0, -1, -1) and offs[3] == (-1, 0, -1)
    assert offs[9] == (-1, -1, 0) and offs[13] == (0, 0, 0) and offs[26] == (1, 1, 1)
    assert kernel_offsets(2) == [(x, y, z) for z in (0, 1) for y in (0, 1) for x in (0, 1)]
    assert kernel_offsets(3, 2)[0] == (-2, -2, -2)


def _chunk_queries(monkeypatch, per: int | None, n: int) -> None:
    """Neighbour queries of ``per`` offsets each (plus a remainder) instead of all at once."""
    if per is not None:
        import pcseg.sparse.kernel_map as KM

        monkeypatch.setattr(KM, "QUERY_ELEMS", per * n + 1)
        monkeypatch.setattr(KM, "QUERY_ELEMS_CPU", per * n + 1)


@pytest.mark.parametrize("per", [None, 1, 2])
@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("ks,dil,stride", [(3, 1, 1), (5, 1, 1), (3, 2, 2), (5, 3, 1)])
def test_submanifold_map_matches_brute_force(ks, dil, stride, dense, per, monkeypatch):
    monkeypatch.setattr(tensor_mod, "USE_DENSE_INDEX", dense)
    c = random_coords(2, 6, 0.3, stride=stride, origin=(-4, 2, -6))
    _chunk_queries(monkeypatch, per, len(c))
    m = CoordinateManager(c, stride)
    km = m.kernel_map(stride, stride, ks, dil, "subm")
    # the dense table covers offsets up to DENSE_PAD cells; kernel 5 dilation 3 falls back
    uses_dense = m._neighbor_index(stride, (ks // 2) * dil).kind == "dense"
    assert uses_dense == (dense and (ks // 2) * dil <= tensor_mod.DENSE_PAD)
    lookup = {tuple(r): i for i, r in enumerate(c.tolist())}
    for k, (dx, dy, dz) in enumerate(kernel_offsets(ks, dil)):
        want = set()
        for o, (b, x, y, z) in enumerate(c.tolist()):
            i = lookup.get((b, x + dx * stride, y + dy * stride, z + dz * stride))
            if i is not None:
                want.add((i, o))
        ii, oo = km.pairs(k)
        got = set(zip(ii.tolist(), oo.tolist()))
        assert got == want and len(got) == len(ii)
        if k < len(kernel_offsets(ks, dil)) // 2:  # searched offsets: sorted by output row
            assert torch.equal(oo, torch.sort(oo).values)


@pytest.mark.parametrize("per", [None, 1, 2])
@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("ks,dil", [(2, 1), (3, 1), (2, 2), (3, 2)])
def test_downsample_map_matches_brute_force(ks, dil, dense, per, monkeypatch):
    monkeypatch.setattr(tensor_mod, "USE_DENSE_INDEX", dense)
    s = 2
    c = random_coords(2, 6, 0.35, stride=s, origin=(-6, 4, -10))
    m = CoordinateManager(c, s)
    coarse = m.coords(2 * s)
    _chunk_queries(monkeypatch, per, len(coarse))
    # coarse coords: unique floor(c / 2s) * 2s (MinkowskiEngine convention)
    want_coarse = {(b, *[(v // (2 * s)) * 2 * s for v in (x, y, z)]) for b, x, y, z in c.tolist()}
    assert {tuple(r) for r in coarse.tolist()} == want_coarse and len(coarse) == len(want_coarse)
    km = m.kernel_map(s, 2 * s, ks, dil, "down")
    fine = {tuple(r): i for i, r in enumerate(c.tolist())}
    for k, (dx, dy, dz) in enumerate(kernel_offsets(ks, dil)):
        want = set()
        for o, (b, x, y, z) in enumerate(coarse.tolist()):
            i = fine.get((b, x + dx * s, y + dy * s, z + dz * s))
            if i is not None:
                want.add((i, o))
        ii, oo = km.pairs(k)
        assert set(zip(ii.tolist(), oo.tolist())) == want
    up = m.kernel_map(2 * s, s, ks, dil, "up")
    assert up.n_in == km.n_out and up.n_out == km.n_in
    assert torch.equal(up.in_idx, km.out_idx) and torch.equal(up.out_idx, km.in_idx)
