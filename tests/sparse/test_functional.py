"""pcseg.sparse.functional (sparse convolution) against dense references (torch conv3d /
conv_transpose3d in float64).

Conventions checked here, written independently of the engine:
* our weight is (K, C_in, C_out) with offset k = (iz * ks + iy) * ks + ix (z slowest, x
  fastest); the dense conv3d weight on a (B, C, X, Y, Z) grid is
  w[:, :, ix, iy, iz] = W[k].T (conv_transpose3d: w[:, :, ix, iy, iz] = W[k]);
* odd kernels are centred, a kernel-2 stride-2 conv maps fine voxel c to the coarse
  voxel floor(c / 2s) * 2s (MinkowskiEngine).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.sparse import (
    DT,
    dense_conv_weight,
    densify,
    grads_of,
    grid_frame,
    random_coords,
    sample,
)

from pcseg.sparse import (
    Conv3d,
    ConvTranspose3d,
    CoordinateManager,
    SparseTensor,
    SubMConv3d,
    sparse_conv,
)
from pcseg.sparse import tensor as tensor_mod

# ----------------------------------------------------------- convs vs dense refs
SUBM_CASES = [
    (1, 1, 1, 1, True),
    (3, 1, 1, 1, True),
    (3, 1, 2, 1, False),
    (3, 2, 2, 1, True),
    (5, 1, 2, 1, True),
    (5, 2, 1, 1, False),
    (3, 1, 2, 2, True),
    (3, 2, 1, 2, True),
    (5, 1, 1, 2, True),
]


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
    ref_grid = F.conv3d(
        grid, dense_conv_weight(conv.weight, ks), conv.bias, padding=r, dilation=dil
    )
    ref = sample(ref_grid, c, stride, mn)
    torch.testing.assert_close(y.feats, ref, rtol=1e-10, atol=1e-10)

    g = torch.randn_like(ref)
    got = grads_of(y.feats, g, f, conv.weight, conv.bias)
    want = grads_of(ref, g, f, conv.weight, conv.bias)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "ks,batch,stride", [(2, 1, 1), (2, 2, 1), (3, 1, 1), (3, 2, 1), (2, 2, 2), (3, 1, 2)]
)
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
        ref_grid = F.conv_transpose3d(
            grid, dense_conv_weight(up.weight, ks, transpose=True), stride=2
        )
    else:
        ref_grid = F.conv_transpose3d(
            grid,
            dense_conv_weight(up.weight, ks, transpose=True),
            stride=2,
            padding=1,
            output_padding=1,
        )
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
    x2 = SparseTensor(
        c * torch.tensor([1, 2, 2, 2], dtype=torch.int32), torch.randn(len(c), 2), stride=2
    )
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
    assert torch.autograd.gradcheck(
        lambda a, b: sparse_conv(a, b, km), (f, w), eps=1e-6, atol=1e-7, fast_mode=True
    )


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


# ------------------------------------------------------ forward-only inference path
@pytest.mark.parametrize("kind", ["subm3", "subm1", "down2", "down3", "up2"])
def test_inference_path_equals_the_autograd_op_plus_bias(kind):
    """Without a recorded graph the convs run sparse_conv_inference (bias written with the
    products): the same numbers as the autograd op + bias, in float64."""
    c = random_coords(2, 9, 0.3)
    f = torch.randn(len(c), 3, dtype=DT)
    x = SparseTensor(c, f)
    if kind == "up2":
        down = Conv3d(3, 3, 2).to(DT)
        x = down(x)
        conv = ConvTranspose3d(3, 4, 2, bias=True).to(DT)
    elif kind.startswith("down"):
        conv = Conv3d(3, 4, int(kind[-1]), bias=True).to(DT)
    else:
        conv = SubMConv3d(3, 4, int(kind[-1]), bias=True).to(DT)
    want = conv(x).feats  # parameters require grad: the autograd op
    assert want.requires_grad
    with torch.inference_mode():
        got = conv(x).feats
    assert not got.requires_grad
    torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(conv(x).feats, want.detach(), rtol=1e-12, atol=1e-12)


def test_inference_conv_autocast_bf16_and_bias():
    """Under CPU autocast the inference path computes in bf16 like the autograd op."""
    from pcseg.sparse.functional import sparse_conv_inference

    c = random_coords(1, 10, 0.3)
    f = torch.randn(len(c), 8)
    x = SparseTensor(c, f)
    km = x.manager.kernel_map(1, 1, 3, 1, "subm")
    w = torch.randn(27, 8, 8) * 0.1
    b = torch.randn(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = sparse_conv(f, w, km)
        got = sparse_conv_inference(f, w, km, b)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float() + b, rtol=2e-2, atol=2e-2)


def test_workspace_made_under_inference_mode_serves_training_later():
    """Scratch buffers first allocated inside torch.inference_mode are normal tensors: a
    training convolution afterwards may write them."""
    import pcseg.sparse.functional as PF

    PF.clear_workspace()
    c = random_coords(1, 9, 0.3)
    conv = SubMConv3d(3, 3, 3)
    with torch.inference_mode():
        conv(SparseTensor(c, torch.randn(len(c), 3)))
    f = torch.randn(len(c), 3, requires_grad=True)
    conv(SparseTensor(c, f)).feats.sum().backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()
