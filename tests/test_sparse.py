"""pcseg.sparse against dense references (torch conv3d / conv_transpose3d in float64).

Conventions checked here, written independently of the engine:
* our weight is (K, C_in, C_out) with offset k = (iz * ks + iy) * ks + ix (z slowest, x
  fastest); the dense conv3d weight on a (B, C, X, Y, Z) grid is
  w[:, :, ix, iy, iz] = W[k].T (conv_transpose3d: w[:, :, ix, iy, iz] = W[k]);
* odd kernels are centred, a kernel-2 stride-2 conv maps fine voxel c to the coarse
  voxel floor(c / 2s) * 2s (MinkowskiEngine).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pcseg.sparse import (
    BatchNorm,
    BackendUnavailableError,
    Conv3d,
    ConvTranspose3d,
    CoordinateManager,
    CoordinateRangeError,
    ReLU,
    SparseTensor,
    SubMConv3d,
    TorchBackend,
    cat,
    get_backend,
    global_avg_pool,
    global_max_pool,
    kernel_offsets,
    pack_keys,
    sparse_conv,
    unpack_keys,
    voxel_to_point,
)
from pcseg.sparse import backends as backends_mod
from pcseg.sparse import tensor as tensor_mod

DT = torch.float64


# --------------------------------------------------------------------------- helpers
def random_coords(batch: int, grid: int, occupancy: float, stride: int = 1,
                  origin: tuple[int, int, int] = (-7, 3, -2), shuffle: bool = True) -> torch.Tensor:
    """(M, 4) int32 unique voxels: ~occupancy of a grid^3 block per batch entry, spatial
    coords origin + stride * cell (origin must be a multiple of stride for stride > 1)."""
    rows = []
    for b in range(batch):
        cells = torch.nonzero(torch.rand(grid, grid, grid) < occupancy)
        xyz = cells * stride + torch.tensor(origin)
        rows.append(torch.cat([torch.full((len(xyz), 1), b), xyz], 1))
    c = torch.cat(rows).to(torch.int32)
    if shuffle:
        c = c[torch.randperm(len(c))]
    return c


def dense_conv_weight(W: torch.Tensor, ks: int, transpose: bool = False) -> torch.Tensor:
    """Our (K, Cin, Cout) weight -> conv3d (Cout, Cin, ks, ks, ks) / conv_transpose3d
    (Cin, Cout, ks, ks, ks) weight for grids laid out (B, C, X, Y, Z). Differentiable."""
    cin, cout = W.shape[1], W.shape[2]
    slots = [[[None] * ks for _ in range(ks)] for _ in range(ks)]
    for iz in range(ks):
        for iy in range(ks):
            for ix in range(ks):
                k = (iz * ks + iy) * ks + ix
                slots[ix][iy][iz] = W[k] if transpose else W[k].t()
    w = torch.stack([torch.stack([torch.stack(slots[ix][iy], -1) for iy in range(ks)], -2)
                     for ix in range(ks)], -3)
    expected = (cin, cout) if transpose else (cout, cin)
    assert w.shape == (*expected, ks, ks, ks)
    return w


def densify(coords: torch.Tensor, feats: torch.Tensor, stride: int, min_coord: torch.Tensor,
            shape: tuple[int, int, int], batch: int) -> torch.Tensor:
    """Reference scatter of features into (B, C, X, Y, Z) (independent of SparseTensor.dense)."""
    grid = feats.new_zeros((batch, feats.shape[1], *shape))
    c = coords.long()
    idx = (c[:, 1:] - min_coord) // stride
    for r in range(len(c)):
        grid[c[r, 0], :, idx[r, 0], idx[r, 1], idx[r, 2]] = feats[r]
    return grid


def sample(grid: torch.Tensor, coords: torch.Tensor, stride: int, min_coord: torch.Tensor) -> torch.Tensor:
    """Rows of a (B, C, X, Y, Z) grid at the given coordinates -> (M, C)."""
    c = coords.long()
    idx = (c[:, 1:] - min_coord) // stride
    return grid[c[:, 0], :, idx[:, 0], idx[:, 1], idx[:, 2]]


def grid_frame(coords: torch.Tensor, align: int, stride: int, pad: int = 2) -> tuple[torch.Tensor, tuple]:
    """min_coord (multiple of ``align``, congruent to coords mod stride) and an even grid shape."""
    sp = coords[:, 1:].long()
    mn = torch.div(sp.min(0).values, align, rounding_mode="floor") * align
    ext = ((sp.max(0).values - mn) // stride + 1 + pad)
    ext = ext + ext % 2
    return mn, tuple(int(v) for v in ext)


def grads_of(out: torch.Tensor, g: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad((out * g).sum(), tensors))


# --------------------------------------------------------------------------- keys
def test_key_roundtrip_negative_and_kitti_range():
    c = torch.tensor([[0, -1600, 1600, -1], [3, 1599, -1600, 0], [0, -1, -1, -1],
                      [32767, 16383, -16384, 7], [1, 0, 0, 0]], dtype=torch.int64)
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


@pytest.mark.parametrize("bad,col", [([0, 16384, 0, 0], "x"), ([0, 0, -16385, 0], "y"),
                                     ([0, 0, 0, 20000], "z"), ([-1, 0, 0, 0], "batch"),
                                     ([32768, 0, 0, 0], "batch")])
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


# ----------------------------------------------------------- convs vs dense refs
SUBM_CASES = [(1, 1, 1, 1, True), (3, 1, 1, 1, True), (3, 1, 2, 1, False), (3, 2, 2, 1, True),
              (5, 1, 2, 1, True), (5, 2, 1, 1, False), (3, 1, 2, 2, True), (3, 2, 1, 2, True),
              (5, 1, 1, 2, True)]


@pytest.mark.parametrize("ks,dil,batch,stride,shuffle", SUBM_CASES)
def test_subm_conv_matches_dense(ks, dil, batch, stride, shuffle, monkeypatch):
    # odd cases use binary search instead of the dense neighbour table
    monkeypatch.setattr(tensor_mod, "USE_DENSE_INDEX", (ks + dil + batch) % 2 == 0)
    cin, cout = 3, 4
    origin = (-7, 3, -2) if stride == 1 else (-8, 2, -6)
    c = random_coords(batch, 9, 0.3, stride=stride, origin=origin, shuffle=shuffle)
    f = torch.randn(len(c), cin, dtype=DT, requires_grad=True)
    conv = SubMConv3d(cin, cout, ks, dil, bias=True).to(DT)
    x = SparseTensor(c, f, stride=stride)
    y = conv(x)
    assert y.stride == stride and y.manager is x.manager and y.feats.shape == (len(c), cout)

    mn, shape = grid_frame(c, stride, stride)
    grid = densify(c, f, stride, mn, shape, batch)
    r = (ks // 2) * dil
    ref_grid = F.conv3d(grid, dense_conv_weight(conv.weight, ks), conv.bias, padding=r, dilation=dil)
    ref = sample(ref_grid, c, stride, mn)
    torch.testing.assert_close(y.feats, ref, rtol=1e-10, atol=1e-10)

    g = torch.randn_like(ref)
    got = grads_of(y.feats, g, f, conv.weight, conv.bias)
    want = grads_of(ref, g, f, conv.weight, conv.bias)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ks,batch,stride", [(2, 1, 1), (2, 2, 1), (3, 1, 1), (3, 2, 1), (2, 2, 2), (3, 1, 2)])
def test_strided_conv_matches_dense(ks, batch, stride):
    cin, cout = 3, 5
    origin = (-7, 5, -1) if stride == 1 else (-6, 2, -10)
    c = random_coords(batch, 9, 0.3, stride=stride, origin=origin)
    f = torch.randn(len(c), cin, dtype=DT, requires_grad=True)
    conv = Conv3d(cin, cout, ks, stride=2).to(DT)
    x = SparseTensor(c, f, stride=stride)
    y = conv(x)
    assert y.stride == 2 * stride
    out_c = y.coords
    want = {(b, *[(v // (2 * stride)) * 2 * stride for v in p]) for b, *p in c.tolist()}
    assert {tuple(r) for r in out_c.tolist()} == want

    mn, shape = grid_frame(c, 2 * stride, stride)
    grid = densify(c, f, stride, mn, shape, batch)
    pad = 1 if ks == 3 else 0
    ref_grid = F.conv3d(grid, dense_conv_weight(conv.weight, ks), stride=2, padding=pad)
    ref = sample(ref_grid, out_c, 2 * stride, mn)
    torch.testing.assert_close(y.feats, ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(ref)
    for a, b in zip(grads_of(y.feats, g, f, conv.weight), grads_of(ref, g, f, conv.weight)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ks,batch,stride", [(2, 1, 1), (2, 2, 1), (3, 2, 1), (2, 1, 2), (3, 1, 2)])
def test_transposed_conv_matches_dense(ks, batch, stride):
    cin, cout = 4, 3
    origin = (-5, 3, -8) if stride == 1 else (-6, 2, -10)
    c = random_coords(batch, 9, 0.3, stride=stride, origin=origin)
    fine = SparseTensor(c, torch.zeros(len(c), 1, dtype=DT), stride=stride)
    coarse_c = fine.manager.coords(2 * stride)
    fc = torch.randn(len(coarse_c), cin, dtype=DT, requires_grad=True)
    xc = SparseTensor(coarse_c, fc, stride=2 * stride, manager=fine.manager)
    up = ConvTranspose3d(cin, cout, ks, stride=2).to(DT)
    y = up(xc)
    assert y.stride == stride and torch.equal(y.coords, c)

    mn, shape = grid_frame(c, 2 * stride, stride)
    cshape = tuple(s // 2 for s in shape)
    grid = densify(coarse_c, fc, 2 * stride, mn, cshape, batch)
    if ks == 2:
        ref_grid = F.conv_transpose3d(grid, dense_conv_weight(up.weight, ks, transpose=True), stride=2)
    else:
        ref_grid = F.conv_transpose3d(grid, dense_conv_weight(up.weight, ks, transpose=True), stride=2,
                                      padding=1, output_padding=1)
    ref = sample(ref_grid, c, stride, mn)
    torch.testing.assert_close(y.feats, ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(ref)
    for a, b in zip(grads_of(y.feats, g, fc, up.weight), grads_of(ref, g, fc, up.weight)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_strided_then_transposed_returns_to_exact_fine_coords():
    c = random_coords(2, 10, 0.25, origin=(-9, -3, 5))
    x = SparseTensor(c, torch.randn(len(c), 2))
    y = Conv3d(2, 4, 2)(x)
    z = Conv3d(4, 4, 2)(y)
    u = ConvTranspose3d(4, 3, 2)(ConvTranspose3d(4, 4, 2)(z))
    assert u.stride == 1 and u.manager is x.manager and torch.equal(u.coords, c)
    with pytest.raises(ValueError, match="not divisible"):
        ConvTranspose3d(2, 2, 2)(x)
    x2 = SparseTensor(c * torch.tensor([1, 2, 2, 2], dtype=torch.int32), torch.randn(len(c), 2), stride=2)
    with pytest.raises(ValueError, match="no coordinates at tensor stride 1"):
        ConvTranspose3d(2, 2, 2)(x2)


@pytest.mark.parametrize("kind", ["subm3", "subm5d2", "down2", "down3", "up2"])
def test_gradcheck_tiny(kind):
    c = random_coords(2, 4, 0.3, origin=(-2, 1, -3))
    m = CoordinateManager(c)
    if kind == "subm3":
        km, n_in, K = m.kernel_map(1, 1, 3, 1, "subm"), len(c), 27
    elif kind == "subm5d2":
        km, n_in, K = m.kernel_map(1, 1, 5, 2, "subm"), len(c), 125
    elif kind == "down2":
        km, n_in, K = m.kernel_map(1, 2, 2, 1, "down"), len(c), 8
    elif kind == "down3":
        km, n_in, K = m.kernel_map(1, 2, 3, 1, "down"), len(c), 27
    else:
        km, n_in, K = m.kernel_map(2, 1, 2, 1, "up"), m.num_rows(2), 8
    f = torch.randn(n_in, 2, dtype=DT, requires_grad=True)
    w = torch.randn(K, 2, 3, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: sparse_conv(a, b, km), (f, w), eps=1e-6, atol=1e-7,
                                    fast_mode=True)


def test_small_blocks_give_same_result(monkeypatch):
    """The block-wise gather/GEMM/scatter (blocks splitting offsets) equals one big block."""
    import pcseg.sparse.functional as PF

    c = random_coords(2, 10, 0.3)
    x = SparseTensor(c, torch.randn(len(c), 6, dtype=DT, requires_grad=True))
    conv = SubMConv3d(6, 5, 3).to(DT)
    y1 = conv(x).feats
    g = torch.randn_like(y1)
    g1 = grads_of(y1, g, x.feats, conv.weight)
    monkeypatch.setattr(PF, "BLOCK_ELEMS", 7 * 6)  # a few rows per block
    y2 = conv(x).feats
    g2 = grads_of(y2, g, x.feats, conv.weight)
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_clear_workspace_frees_the_scratch_buffers_of_every_thread():
    import gc
    import threading

    import pcseg.sparse.functional as PF

    c = random_coords(2, 10, 0.3)
    conv = SubMConv3d(6, 5, 3).to(DT)

    def run() -> None:
        x = SparseTensor(c, torch.randn(len(c), 6, dtype=DT, requires_grad=True))
        conv(x).feats.sum().backward()

    PF.clear_workspace()
    assert PF.workspace_bytes() == 0
    run()
    here = PF.workspace_bytes()
    assert here >= (1 << 16) * 8  # at least one float64 buffer of the minimum size
    ran, release = threading.Event(), threading.Event()

    def run_and_wait() -> None:
        run()
        ran.set()
        release.wait(30)

    t = threading.Thread(target=run_and_wait)
    t.start()
    assert ran.wait(30)
    assert PF.workspace_bytes() > here  # a live thread's buffers are counted too
    release.set()
    t.join()
    gc.collect()
    assert PF.workspace_bytes() == here  # a finished thread's buffers went with it
    PF.clear_workspace()
    assert PF.workspace_bytes() == 0


def test_cpu_autocast_bf16():
    c = random_coords(1, 10, 0.3)
    f = torch.randn(len(c), 8, requires_grad=True)
    conv = SubMConv3d(8, 8, 3)
    ref = conv(SparseTensor(c, f)).feats
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(SparseTensor(c, f)).feats
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, rtol=5e-2, atol=5e-2)
    y.float().sum().backward()
    assert f.grad is not None and f.grad.dtype == torch.float32
    assert conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32
    assert torch.isfinite(conv.weight.grad).all()


def test_reduced_precision_sums_over_offsets_accumulate_in_float32(monkeypatch):
    """A dense 3x3x3 block, one channel of ones, centre weight 256 and 0.5 on the other 26
    offsets: the centre voxel's output is 256 + 26 * 0.5 = 269. bf16 has 8 significant bits
    (spacing 2 at 256), so summing the offsets in bf16 would drop every 0.5 and give 256;
    a float32 sum rounded once gives 268 or 270. The same for the input gradient (the
    transposed sum) and the weight gradient of the centre offset summed over 27 voxels.
    One pair per block, so no single scatter call can hide a bf16 running sum."""
    import pcseg.sparse.functional as PF

    monkeypatch.setattr(PF, "_block_rows", lambda cin, cout, device: 1)
    g = torch.stack(torch.meshgrid(*[torch.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    c = torch.cat([torch.zeros(27, 1, dtype=torch.int64), g], 1)
    centre = int(((g == 1).all(1)).nonzero())
    conv = SubMConv3d(1, 1, 3)
    with torch.no_grad():
        conv.weight.fill_(0.5)
        conv.weight[13] = 256.0  # offset (1, 1, 1) of the 3x3x3 kernel, z slowest
    f = torch.ones(27, 1, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(SparseTensor(c, f)).feats
    assert y.dtype == torch.bfloat16
    assert abs(float(y[centre].detach()) - 269.0) <= 1.0
    y.float().backward(torch.ones_like(y, dtype=torch.float32))
    # d out / d f[centre] = sum over the 27 outputs that see the centre voxel = 269 as well
    assert abs(float(f.grad[centre]) - 269.0) <= 1.0
    # d out / d w[k] = sum of the 27 (or fewer) inputs seen through offset k: 27 for the centre
    assert float(conv.weight.grad[13]) == 27.0 and conv.weight.grad.dtype == torch.float32


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
    assert float(grid.abs().sum()) == pytest.approx(float(f0.abs().sum() + f1.abs().sum()), rel=1e-6)
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


# ------------------------------------------------------------------- backends
def test_backend_selection(monkeypatch):
    monkeypatch.delenv("PCSEG_SPARSE_BACKEND", raising=False)
    assert get_backend().name == "torch"
    monkeypatch.setenv("PCSEG_SPARSE_BACKEND", "torch")
    assert get_backend().name == "torch"
    monkeypatch.setenv("PCSEG_SPARSE_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match="valid: torch, minkowski, spconv"):
        get_backend()
    monkeypatch.setattr(backends_mod, "_importable", lambda name: False)
    with pytest.raises(BackendUnavailableError, match="libopenblas-dev") as ei:
        get_backend("minkowski")
    assert "collections.Sequence" in str(ei.value) and "MinkowskiEngine==0.5.4" in str(ei.value)
    with pytest.raises(BackendUnavailableError, match=r"pip install spconv==2\.3\.8"):
        get_backend("spconv")


# ------------------------------------------------------------------------ GPU
@pytest.mark.gpu
def test_cuda_subm_and_strided_match_cpu():
    c = random_coords(2, 10, 0.3)
    f = torch.randn(len(c), 4)
    conv, down = SubMConv3d(4, 6, 3), Conv3d(6, 5, 2)
    y_cpu = down(conv(SparseTensor(c, f))).feats
    conv_c, down_c = SubMConv3d(4, 6, 3).cuda(), Conv3d(6, 5, 2).cuda()
    conv_c.load_state_dict(conv.state_dict())
    down_c.load_state_dict(down.state_dict())
    y_gpu = down_c(conv_c(SparseTensor(c.cuda(), f.cuda()))).feats
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.float16):
        y16 = down_c(conv_c(SparseTensor(c.cuda(), f.cuda()))).feats
    assert y16.dtype == torch.float16
    torch.testing.assert_close(y16.float().cpu(), y_cpu, rtol=3e-2, atol=3e-2)
    assert math.isfinite(float(y16.float().sum()))

