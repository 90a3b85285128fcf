"""pcseg.sparse.nn and pcseg.sparse.tensor: BatchNorm/ReLU, pooling, SparseTensor batching,
ordering and kernel-map caching."""

from __future__ import annotations

import pytest
import torch
from helpers.sparse import DT, random_coords

from pcseg.sparse import (
    BatchNorm,
    Conv3d,
    ConvTranspose3d,
    ReLU,
    SparseTensor,
    SubMConv3d,
    TorchBackend,
    cat,
    global_avg_pool,
    global_max_pool,
    pack_keys,
    voxel_to_point,
)


# ---------------------------------------------------------- other ops / tensor
def test_batchnorm_relu_match_hand_computation():
    c = random_coords(2, 6, 0.4)
    f = torch.randn(len(c), 3, dtype=DT) * 3 + 1
    bn = BatchNorm(3).to(DT)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    y = bn(SparseTensor(c, f))
    mean = f.mean(0)
    var = ((f - mean) ** 2).mean(0)
    want = (f - mean) / torch.sqrt(var + 1e-5) * bn.weight + bn.bias
    torch.testing.assert_close(y.feats, want.detach())
    n = len(f)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var * n / (n - 1))
    r = ReLU()(y)
    assert torch.equal(r.feats, torch.where(y.feats > 0, y.feats, torch.zeros_like(y.feats)))


def test_cat_pools_voxel_to_point():
    c = random_coords(3, 5, 0.5)
    a = SparseTensor(c, torch.randn(len(c), 2, dtype=DT))
    b = a.replace_feats(torch.randn(len(c), 3, dtype=DT))
    ab = cat(a, b)
    assert torch.equal(ab.feats[:, :2], a.feats) and torch.equal(ab.feats[:, 2:], b.feats)
    other = SparseTensor(c.clone(), torch.randn(len(c), 1, dtype=DT))  # equal coords, other manager
    with pytest.raises(ValueError, match="coordinates"):
        cat(a, other)
    avg, mx = global_avg_pool(ab), global_max_pool(ab)
    assert avg.shape == (3, 5) and mx.shape == (3, 5)
    for bi in range(3):
        rows = [i for i in range(len(c)) if int(c[i, 0]) == bi]
        torch.testing.assert_close(avg[bi], ab.feats[rows].sum(0) / len(rows))
        for ch in range(5):
            assert mx[bi, ch] == max(float(ab.feats[r, ch]) for r in rows)
    inverse = torch.randint(0, len(c), (50,))
    p = voxel_to_point(ab, inverse)
    for i in range(50):
        assert torch.equal(p[i], ab.feats[inverse[i]])
    with pytest.raises(ValueError, match="inverse"):
        voxel_to_point(ab, torch.tensor([len(c)]))


def test_from_scenes_dense_batch_and_to():
    s0 = torch.tensor([[0, 0, 0], [1, 2, 3], [-1, 0, 2]])
    s1 = torch.tensor([[5, 5, 5], [0, 0, 0]])
    f0, f1 = torch.randn(3, 2), torch.randn(2, 2)
    x = SparseTensor.from_scenes([s0, s1], [f0, f1])
    assert x.batch_size == 2 and x.batch_indices.tolist() == [0, 0, 0, 1, 1]
    assert x.coords.dtype == torch.int32 and x.coords[:, 1:].tolist() == s0.tolist() + s1.tolist()
    grid, mn = x.dense()
    assert mn.tolist() == [-1, 0, 0] and grid.shape == (2, 2, 7, 6, 6)
    assert torch.equal(grid[0, :, 2, 2, 3], f0[1]) and torch.equal(grid[1, :, 6, 5, 5], f1[0])
    assert float(grid.abs().sum()) == pytest.approx(
        float(f0.abs().sum() + f1.abs().sum()), rel=1e-6
    )
    # strided tensor: dense at stride resolution
    xs = SparseTensor(torch.tensor([[0, -2, 0, 4], [0, 2, 2, 0]]), torch.ones(2, 1), stride=2)
    gs, mns = xs.dense()
    assert mns.tolist() == [-2, 0, 0] and gs.shape == (1, 1, 3, 2, 3)
    assert gs[0, 0, 0, 0, 2] == 1 and gs[0, 0, 2, 1, 0] == 1 and gs.sum() == 2
    assert x.to("cpu") is x


def test_sorted_roundtrip_and_backend_restores_order():
    c = random_coords(2, 6, 0.4)
    x = SparseTensor(c, torch.randn(len(c), 3, dtype=DT))
    s = x.sorted()
    assert s.manager.is_sorted and s.manager is not x.manager
    keys = pack_keys(s.coords)
    assert bool((keys[1:] > keys[:-1]).all())
    assert torch.equal(s.unsort_feats(), x.feats)
    assert s.sorted() is s
    be = TorchBackend()
    assert torch.equal(be.features(be.from_sparse_tensor(x)), x.feats)


def test_kernel_maps_are_cached_and_built_once():
    c = random_coords(2, 10, 0.3)
    x = SparseTensor(c, torch.randn(len(c), 2)).sorted()
    a = SubMConv3d(2, 3, 3)(x)
    b = SubMConv3d(3, 3, 3)(a)
    d = Conv3d(3, 3, 2)(b)
    e = SubMConv3d(3, 3, 3)(d)
    u = ConvTranspose3d(3, 3, 2)(e)
    SubMConv3d(3, 3, 3)(u)
    log = x.manager.build_log
    assert sorted(log) == sorted([("subm", 1, 1, 3, 1), ("down", 1, 2, 2, 1), ("subm", 2, 2, 3, 1)])
    assert x.manager.kernel_map(1, 1, 3, 1, "subm") is x.manager.kernel_map(1, 1, 3, 1)
