"""Dense references and random voxel sets for the pcseg.sparse tests (written independently of
the engine)."""

from __future__ import annotations

import torch

DT = torch.float64


def random_coords(
    batch: int,
    grid: int,
    occupancy: float,
    stride: int = 1,
    origin: tuple[int, int, int] = (-7, 3, -2),
    shuffle: bool = True,
) -> torch.Tensor:
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
    w = torch.stack(
        [torch.stack([torch.stack(slots[ix][iy], -1) for iy in range(ks)], -2) for ix in range(ks)],
        -3,
    )
    expected = (cin, cout) if transpose else (cout, cin)
    assert w.shape == (*expected, ks, ks, ks)
    return w


def densify(
    coords: torch.Tensor,
    feats: torch.Tensor,
    stride: int,
    min_coord: torch.Tensor,
    shape: tuple[int, int, int],
    batch: int,
) -> torch.Tensor:
    """Reference scatter of features into (B, C, X, Y, Z) (independent of SparseTensor.dense)."""
    grid = feats.new_zeros((batch, feats.shape[1], *shape))
    c = coords.long()
    idx = (c[:, 1:] - min_coord) // stride
    for r in range(len(c)):
        grid[c[r, 0], :, idx[r, 0], idx[r, 1], idx[r, 2]] = feats[r]
    return grid


def sample(
    grid: torch.Tensor, coords: torch.Tensor, stride: int, min_coord: torch.Tensor
) -> torch.Tensor:
    """Rows of a (B, C, X, Y, Z) grid at the given coordinates -> (M, C)."""
    c = coords.long()
    idx = (c[:, 1:] - min_coord) // stride
    return grid[c[:, 0], :, idx[:, 0], idx[:, 1], idx[:, 2]]


def grid_frame(
    coords: torch.Tensor, align: int, stride: int, pad: int = 2
) -> tuple[torch.Tensor, tuple]:
    """min_coord (multiple of ``align``, congruent to coords mod stride) and an even grid shape."""
    sp = coords[:, 1:].long()
    mn = torch.div(sp.min(0).values, align, rounding_mode="floor") * align
    ext = (sp.max(0).values - mn) // stride + 1 + pad
    ext = ext + ext % 2
    return mn, tuple(int(v) for v in ext)


def grads_of(out: torch.Tensor, g: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad((out * g).sum(), tensors))


def perturb_batch_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm1d of ``model`` non-trivial running statistics and affine
    parameters (so that an eval-mode test of batch-norm folding is a real test); in place."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            n = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
                mod.weight.copy_(0.5 + torch.rand(n, generator=g))
                mod.bias.copy_(0.4 * torch.rand(n, generator=g) - 0.2)
    return model
