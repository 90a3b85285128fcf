"""pcseg.sparse.backend_spconv: pcseg's pure-PyTorch sparse convs vs spconv 2.x with identical
(converted) weights, the spconv adapter's argument checks, and one MinkUNet on the spconv
backend equal to the torch backend.

Scene: ~11k voxels of surfaces at 2 cm (a floor, two walls, a box; negative coordinates;
a second, smaller batch entry). spconv runs on CPU patched by
:func:`pcseg.sparse.backend_spconv.patch_spconv_cpu` (CPU backward crashes without it).

What is compared (float64, so agreement is to ~1e-12, i.e. the same sums):
* sub-manifold 3x3x3 (and 5x5x5, dilation 2) forward, d(feats) and d(weight);
* strided k=2 s=2 conv: output coordinates as sets, then rows sorted by coordinate,
  forward and gradients; the inverse conv back onto the fine coordinates likewise;
* float32 forward at float32 tolerance;
* spconv single-threaded vs spconv with 2 torch threads + the patched scatter: identical.

The race (spconv 2.3.8 CPU wheel): ``GatherCPU::scatter_add`` runs under
``#pragma omp parallel`` with its two row pointers shared by all threads. Measured here
(30k voxels, 32 -> 32 channels, float64, 2 threads): 17 of 20 unpatched sub-manifold
forwards were wrong (max error ~0.7), 0 of 20 with one thread or with the patch. The slow
test ``test_unpatched_scatter_race_demo`` reproduces it.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("spconv.pytorch")

# Everything except the multi-thread checks runs with one torch thread: spconv needs it
# (without the patch) and OpenMP with 2 threads on a busy 2-core machine is ~10x slower.

import spconv.pytorch as sp  # noqa: E402
from helpers.backends import (  # noqa: E402
    _check_same_outputs_and_grads,
    _model_pair,
    needs_spconv,
    small_scene,
)

from pcseg.sparse import Conv3d, ConvTranspose3d, SparseTensor, SubMConv3d  # noqa: E402
from pcseg.sparse.backend_spconv import (  # noqa: E402
    coords_to_indices,
    indices_to_coords,
    num_threads,
    patch_spconv_cpu,
    unpatched_scatter,
    weight_from_spconv,
    weight_to_spconv,
)
from pcseg.sparse.backends import get_backend  # noqa: E402
from pcseg.sparse.keys import pack_keys  # noqa: E402

patch_spconv_cpu()


def surface_scene(seed: int = 0) -> torch.Tensor:
    """(M, 4) int32 [batch, x, y, z] voxels at 2 cm: batch 0 = floor 1.4 x 1.4 m, two walls
    0.7 m high, a 0.36 m box on the floor (~10k voxels, negative x/y); batch 1 = a 0.6 m
    floor patch with a 0.3 m wall (~1.3k voxels)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.arange(-35, 35)
    h = torch.arange(0, 35)

    def plane(u, v, fix_axis: int, fix_val: int) -> torch.Tensor:
        U, V = torch.meshgrid(u, v, indexing="ij")
        cols = [U.flatten(), V.flatten()]
        cols.insert(fix_axis, torch.full((U.numel(),), fix_val))
        return torch.stack(cols, 1)

    parts = [plane(a, a, 2, 0), plane(a, h, 1, -35), plane(a, h, 0, 34)]
    b = torch.arange(-9, 9)
    bz = torch.arange(0, 18)
    parts += [
        plane(b, bz, 0, -9),
        plane(b, bz, 0, 8),
        plane(b, bz, 1, -9),
        plane(b, bz, 1, 8),
        plane(b, b, 2, 17),
    ]
    s0 = torch.unique(torch.cat(parts), dim=0)
    # light jitter of the surfaces (as a real scan): drop 5 % of the voxels
    s0 = s0[torch.rand(s0.shape[0], generator=g) > 0.05]
    c = torch.arange(0, 30)
    s1 = torch.unique(torch.cat([plane(c, c, 2, -3), plane(c, torch.arange(-3, 12), 1, 29)]), dim=0)
    out = torch.cat(
        [
            torch.cat([torch.zeros(len(s0), 1, dtype=torch.long), s0], 1),
            torch.cat([torch.ones(len(s1), 1, dtype=torch.long), s1], 1),
        ]
    )
    return out.to(torch.int32)


@pytest.fixture(scope="module")
def scene() -> torch.Tensor:
    return surface_scene()


def _sort_rows(coords: torch.Tensor) -> torch.Tensor:
    """Row permutation sorting (M, 4) [batch, x, y, z] coordinates."""
    return torch.argsort(pack_keys(coords.long(), check=False))


def _sp_input(coords: torch.Tensor, feats: torch.Tensor) -> tuple[object, torch.Tensor]:
    idx, shape, origin = coords_to_indices(coords)
    bs = int(coords[:, 0].max()) + 1
    return sp.SparseConvTensor(feats, idx, shape, bs), origin


def test_scene_size(scene):
    assert 9_000 <= scene.shape[0] <= 14_000
    assert len(torch.unique(pack_keys(scene))) == scene.shape[0]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_weight_layout_round_trip(k):
    w = torch.randn(k**3, 3, 5, dtype=torch.float64)
    s = weight_to_spconv(w)
    assert s.shape == (5, k, k, k, 3)
    assert torch.equal(weight_from_spconv(s), w)
    if k > 1:  # KRSC, axes (z, y, x): offset (iz*k + iy)*k + ix holds W[k]^T
        iz, iy, ix = 1, 0, k - 1
        assert torch.equal(s[:, iz, iy, ix, :], w[(iz * k + iy) * k + ix].T)


def test_coords_indices_round_trip(scene):
    for stride in (1, 2, 4):
        c = scene.clone()
        c[:, 1:] = torch.div(c[:, 1:], stride, rounding_mode="floor") * stride
        c = torch.unique(c, dim=0)
        idx, shape, origin = coords_to_indices(c, stride, align=32)
        assert idx.dtype == torch.int32 and bool((idx >= 0).all())
        assert all(s % (32 // stride) == 0 for s in shape)
        assert bool((idx[:, 1:] < torch.tensor(shape)).all())
        assert bool((origin % 32 == 0).all())
        assert torch.equal(indices_to_coords(idx, origin, stride), c)
    with pytest.raises(ValueError, match="multiples of the tensor stride"):
        coords_to_indices(torch.tensor([[0, 1, 2, 3]], dtype=torch.int32), stride=2)


def _subm_pair(cin, cout, k, dil, dtype):
    ours = SubMConv3d(cin, cout, k, dilation=dil).to(dtype)
    theirs = sp.SubMConv3d(cin, cout, k, dilation=dil, bias=False, indice_key="t").to(dtype)
    with torch.no_grad():
        theirs.weight.copy_(weight_to_spconv(ours.weight))
    return ours, theirs


@pytest.mark.parametrize(
    "k,dil,cin,cout", [(3, 1, 16, 24), (5, 1, 4, 8), (3, 2, 8, 8), (1, 1, 8, 12)]
)
def test_submanifold_forward_backward_float64(scene, k, dil, cin, cout):
    torch.manual_seed(1)
    feats = torch.randn(scene.shape[0], cin, dtype=torch.float64)
    gout = torch.randn(scene.shape[0], cout, dtype=torch.float64)
    ours, theirs = _subm_pair(cin, cout, k, dil, torch.float64)

    f1 = feats.clone().requires_grad_(True)
    f2 = feats.clone().requires_grad_(True)
    with num_threads(1):
        y1 = ours(SparseTensor(scene, f1)).feats
        (y1 * gout).sum().backward()
        x2, _ = _sp_input(scene, f2)
        y2 = theirs(x2).features
        (y2 * gout).sum().backward()

    assert y1.shape == y2.shape
    scale = y1.abs().max().item()
    assert scale > 0.1
    torch.testing.assert_close(y2, y1, rtol=0, atol=1e-12 * max(scale, 1))
    torch.testing.assert_close(f2.grad, f1.grad, rtol=0, atol=1e-11)
    torch.testing.assert_close(
        weight_from_spconv(theirs.weight.grad), ours.weight.grad, rtol=0, atol=1e-9
    )
    # sanity: the gradients are not trivially zero
    assert f1.grad.abs().max() > 0.1 and ours.weight.grad.abs().max() > 0.1


def test_submanifold_float32(scene):
    torch.manual_seed(2)
    feats = torch.randn(scene.shape[0], 32)
    ours, theirs = _subm_pair(32, 32, 3, 1, torch.float32)
    with num_threads(1):
        y1 = ours(SparseTensor(scene, feats)).feats
        y2 = theirs(_sp_input(scene, feats)[0]).features
    torch.testing.assert_close(y2, y1, rtol=1e-5, atol=1e-5)


def test_strided_and_inverse_conv_float64(scene):
    torch.manual_seed(3)
    cin, cmid, cout = 8, 12, 6
    feats = torch.randn(scene.shape[0], cin, dtype=torch.float64)
    down, up = Conv3d(cin, cmid, 2, 2).double(), ConvTranspose3d(cmid, cout, 2, 2).double()
    sdown = sp.SparseConv3d(cin, cmid, 2, 2, bias=False, indice_key="d1").double()
    sup = sp.SparseInverseConv3d(cmid, cout, 2, indice_key="d1", bias=False).double()
    with torch.no_grad():
        sdown.weight.copy_(weight_to_spconv(down.weight))
        sup.weight.copy_(weight_to_spconv(up.weight))

    # ---- pcseg
    f1 = feats.clone().requires_grad_(True)
    with num_threads(1):
        x1 = SparseTensor(scene, f1)
        d1 = down(x1)
        u1 = up(d1)
    coarse1 = d1.coords
    g_coarse = torch.randn(coarse1.shape[0], cmid, dtype=torch.float64)
    g_fine = torch.randn(scene.shape[0], cout, dtype=torch.float64)

    # ---- spconv
    f2 = feats.clone().requires_grad_(True)
    with num_threads(1):
        x2, origin = _sp_input(scene, f2)
        d2 = sdown(x2)
        u2 = sup(d2)
    coarse2 = indices_to_coords(d2.indices, origin, 2)

    # output coordinates equal as sets (both are floor(c / 2) * 2)
    assert coarse1.shape == coarse2.shape
    o1, o2 = _sort_rows(coarse1), _sort_rows(coarse2)
    assert torch.equal(coarse1[o1], coarse2[o2])
    expect = torch.unique(
        torch.cat([scene[:, :1], torch.div(scene[:, 1:], 2, rounding_mode="floor") * 2], 1), dim=0
    )
    assert torch.equal(coarse1[o1], expect)
    # strided conv rows (sorted by coordinate)
    torch.testing.assert_close(d2.features[o2], d1.feats[o1], rtol=0, atol=1e-12)
    # inverse conv: back onto the exact fine coordinates, in the input's row order
    assert torch.equal(u2.indices, x2.indices)
    torch.testing.assert_close(u2.features, u1.feats, rtol=0, atol=1e-12)

    # gradients through both convs: same upstream gradient per coordinate
    g2_coarse = torch.empty_like(g_coarse)
    g2_coarse[o2] = g_coarse[o1]
    with num_threads(1):
        loss1 = (u1.feats * g_fine).sum() + (d1.feats * g_coarse).sum()
        loss1.backward()
        loss2 = (u2.features * g_fine).sum() + (d2.features * g2_coarse).sum()
        loss2.backward()
    torch.testing.assert_close(f2.grad, f1.grad, rtol=0, atol=1e-11)
    torch.testing.assert_close(
        weight_from_spconv(sdown.weight.grad), down.weight.grad, rtol=0, atol=1e-9
    )
    torch.testing.assert_close(
        weight_from_spconv(sup.weight.grad), up.weight.grad, rtol=0, atol=1e-9
    )
    assert f1.grad.abs().max() > 0.1


def test_patched_multithread_matches_single_thread(scene):
    """With the patched scatter-add, spconv on 2 torch threads gives the single-thread result."""
    torch.manual_seed(4)
    feats = torch.randn(scene.shape[0], 16, dtype=torch.float64, requires_grad=True)
    conv = sp.SubMConv3d(16, 16, 3, bias=False, indice_key="m").double()
    gout = torch.randn(scene.shape[0], 16, dtype=torch.float64)

    def run(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats.grad = None
        conv.weight.grad = None
        with num_threads(n):
            y = conv(_sp_input(scene, feats)[0]).features
            (y * gout).sum().backward()
        return y.detach(), feats.grad.clone(), conv.weight.grad.clone()

    ref = run(1)
    for _ in range(2):
        got = run(2)
        for a, b in zip(got, ref):
            assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the race needs two hardware threads")
def test_unpatched_scatter_race_demo():
    """spconv's original CPU scatter-add with 2 threads gives wrong sums (upstream bug).

    If this ever fails, the installed spconv fixed its race and the patch is no longer needed.
    """
    torch.manual_seed(5)
    c = torch.unique(torch.randint(0, 40, (30_000, 3)), dim=0)
    coords = torch.cat([torch.zeros(len(c), 1, dtype=torch.long), c], 1).to(torch.int32)
    feats = torch.randn(len(c), 32, dtype=torch.float64)
    conv = sp.SubMConv3d(32, 32, 3, bias=False, indice_key="r").double()
    with torch.no_grad(), num_threads(1):
        ref = conv(_sp_input(coords, feats)[0]).features
    wrong = 0
    with torch.no_grad(), unpatched_scatter(), num_threads(2):
        for _ in range(20):
            y = conv(_sp_input(coords, feats)[0]).features
            wrong += int((y - ref).abs().max().item() > 1e-9)
    assert wrong > 0


# ------------------------------------------------------------ spconv adapter
@needs_spconv
def test_spconv_adapter_argument_checks():
    from pcseg.sparse.backend_spconv import SpconvBackend

    be = get_backend("spconv")
    assert isinstance(be, SpconvBackend)
    with pytest.raises(ValueError, match="key"):
        be.down_conv(4, 4, 2, 2, key=None)
    with pytest.raises(ValueError, match="kernel_size=2"):
        be.down_conv(4, 4, 3, 2, key="d")
    with pytest.raises(ValueError, match="odd"):
        be.subm_conv(4, 4, 2)
    coords, feats = small_scene()
    a = be.make_input(coords, feats.float())
    b = be.make_input(coords[1:], feats[1:].float())
    with pytest.raises(ValueError, match="different indices"):
        be.cat(a, b)
    # the input keeps the caller's row order
    from pcseg.sparse.backend_spconv import indices_to_coords

    assert torch.equal(indices_to_coords(a.indices, a.pcseg_origin), coords)


@needs_spconv
@pytest.mark.parametrize("train", [True, False])
def test_minkunet_spconv_equals_torch(train):
    from pcseg.sparse.backend_spconv import (
        num_threads,
        state_dict_from_spconv,
        state_dict_to_spconv,
    )

    ref, alt = _model_pair("spconv", state_dict_to_spconv)
    # one thread: spconv needs it without the patch, and it keeps the test fast on a
    # shared 2-core machine (OpenMP with 2 threads on a busy machine can be 10x slower)
    with num_threads(1):
        _check_same_outputs_and_grads(ref, alt, state_dict_from_spconv, train)
