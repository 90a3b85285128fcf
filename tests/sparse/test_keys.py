"""pcseg.sparse.keys: packing voxel coordinates into sortable keys, ranges, bad input."""

from __future__ import annotations

import pytest
import torch

from pcseg.sparse import (
    CoordinateRangeError,
    SparseTensor,
    pack_keys,
    unpack_keys,
)


# --------------------------------------------------------------------------- keys
def test_key_roundtrip_negative_and_kitti_range():
    c = torch.tensor(
        [
            [0, -1600, 1600, -1],
            [3, 1599, -1600, 0],
            [0, -1, -1, -1],
            [32767, 16383, -16384, 7],
            [1, 0, 0, 0],
        ],
        dtype=torch.int64,
    )
    k = pack_keys(c)
    assert k.dtype == torch.int64 and bool((k >= 0).all())
    assert torch.equal(unpack_keys(k, torch.int64), c)
    # random +-1600 coordinates: round trip and no collisions
    r = torch.randint(-1600, 1601, (20000, 3))
    b = torch.randint(0, 4, (20000, 1))
    cc = torch.unique(torch.cat([b, r], 1), dim=0)
    kk = pack_keys(cc)
    assert torch.equal(unpack_keys(kk, torch.int64), cc)
    assert torch.unique(kk).numel() == len(cc)
    # key order is lexicographic (batch, x, y, z)
    order = torch.argsort(kk)
    lex = sorted(range(len(cc)), key=lambda i: tuple(cc[i].tolist()))
    assert order.tolist() == lex


@pytest.mark.parametrize(
    "bad,col",
    [
        ([0, 16384, 0, 0], "x"),
        ([0, 0, -16385, 0], "y"),
        ([0, 0, 0, 20000], "z"),
        ([-1, 0, 0, 0], "batch"),
        ([32768, 0, 0, 0], "batch"),
    ],
)
def test_key_out_of_range_raises(bad, col):
    c = torch.tensor([[0, 0, 0, 0], bad])
    with pytest.raises(CoordinateRangeError, match=col):
        pack_keys(c)
    with pytest.raises(CoordinateRangeError):
        SparseTensor(c, torch.zeros(2, 1))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="duplicated"):
        SparseTensor(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="integer"):
        SparseTensor(torch.zeros(2, 4), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="rows"):
        SparseTensor(torch.zeros(2, 4, dtype=torch.int32), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="multiples"):
        SparseTensor(torch.tensor([[0, 1, 2, 4]]), torch.zeros(1, 1), stride=2)
