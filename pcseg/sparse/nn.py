"""Modules and functions on :class:`SparseTensor` (pure PyTorch backend).

Convolution weights have shape ``(K, C_in, C_out)`` in MinkowskiEngine kernel-offset order
(z slowest, x fastest; see :mod:`pcseg.sparse.functional`) and are initialised like
MinkowskiEngine's MinkUNet: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` with
``fan_out = K * C_out``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .functional import sparse_conv, sparse_conv_inference
from .kernel_map import KernelMap
from .tensor import SparseTensor


def init_kernel_(weight: Tensor, kernel_volume: int, out_channels: int) -> None:
    """Fill a convolution kernel in place with N(0, sqrt(2 / (K * C_out))).

    MinkowskiEngine's MinkUNet init (``kaiming_normal_``, fan_out = K * C_out, ReLU gain),
    shared by this backend and the spconv / MinkowskiEngine layers so all start alike.
    """
    with torch.no_grad():
        weight.normal_(0.0, math.sqrt(2.0) / math.sqrt(kernel_volume * out_channels))


def _check_input(x: SparseTensor, in_channels: int, who: str) -> None:
    if not isinstance(x, SparseTensor):
        raise TypeError(f"{who}: expected a SparseTensor, got {type(x).__name__}")
    if x.feats.shape[1] != in_channels:
        raise ValueError(f"{who}: expected {in_channels} input channels, got {x.feats.shape[1]}")


class _ConvBase(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, bias: bool
    ) -> None:
        super().__init__()
        for v, name in (
            (in_channels, "in_channels"),
            (out_channels, "out_channels"),
            (kernel_size, "kernel_size"),
            (dilation, "dilation"),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {v!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.kernel_volume = kernel_size**3
        self.weight = nn.Parameter(torch.empty(self.kernel_volume, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_out = K * C_out, ReLU gain) weight; bias U(-1/sqrt(fan_in), ..)."""
        init_kernel_(self.weight, self.kernel_volume, self.out_channels)
        with torch.no_grad():
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.kernel_volume * self.in_channels)
                self.bias.uniform_(-bound, bound)

    def _finish(self, f: Tensor) -> Tensor:
        return f + self.bias if self.bias is not None else f

    def _records_graph(self, feats: Tensor) -> bool:
        return torch.is_grad_enabled() and (
            feats.requires_grad or any(p.requires_grad for p in self.parameters(recurse=False))
        )

    def _conv(self, feats: Tensor, km: KernelMap) -> Tensor:
        """Convolution plus bias: the autograd op when a graph is recorded, else the
        forward-only :func:`sparse_conv_inference` (bias in the same pass)."""
        if self._records_graph(feats):
            return self._finish(sparse_conv(feats, self.weight, km))
        return sparse_conv_inference(feats, self.weight, km, self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, bias={self.bias is not None}"
        )


class SubMConv3d(_ConvBase):
    """Submanifold convolution: output coordinates = input coordinates.

    ``kernel_size`` odd (1, 3, 5, ...); offsets are scaled by ``dilation * tensor_stride``.
    Input (M, C_in) -> output (M, C_out) on the same coordinates.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        if isinstance(kernel_size, int) and kernel_size % 2 == 0:
            raise ValueError(
                f"SubMConv3d: kernel_size must be odd (1, 3, 5, ...), got {kernel_size}"
            )
        super().__init__(in_channels, out_channels, kernel_size, dilation, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        _check_input(x, self.in_channels, "SubMConv3d")
        if self.kernel_size == 1:
            if self.bias is not None and not self._records_graph(x.feats):
                return x.replace_feats(torch.addmm(self.bias, x.feats, self.weight[0]))
            return x.replace_feats(self._finish(torch.matmul(x.feats, self.weight[0])))
        km = x.manager.kernel_map(x.stride, x.stride, self.kernel_size, self.dilation, "subm")
        return x.replace_feats(self._conv(x.feats, km))


class Conv3d(_ConvBase):
    """Strided convolution, stride 2: stride-s input -> stride-2s output.

    Output coordinates are ``floor(c / 2s) * 2s`` of the input coordinates (created and
    cached by the coordinate manager). Kernel 2 takes the 8 children ``out + {0, s}^3``;
    odd kernels take ``out + {-r..r}^3 * s * dilation``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        if stride != 2:
            raise ValueError(
                f"Conv3d: only stride 2 is supported (use SubMConv3d for stride 1), got {stride}"
            )
        super().__init__(in_channels, out_channels, kernel_size, dilation, bias)
        self.stride = stride

    def forward(self, x: SparseTensor) -> SparseTensor:
        _check_input(x, self.in_channels, "Conv3d")
        out_stride = x.stride * self.stride
        km = x.manager.kernel_map(x.stride, out_stride, self.kernel_size, self.dilation, "down")
        return SparseTensor._derived(self._conv(x.feats, km), out_stride, x.manager)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", stride={self.stride}"


class ConvTranspose3d(_ConvBase):
    """Transposed convolution, stride 2, onto the exact fine coordinates of the level
    the input was derived from (stride-2s input -> stride-s output).

    It uses the transposed kernel map of ``Conv3d(kernel_size, stride=2)`` from that level:
    ``out[c] += in[p] @ W[k]`` for every fine ``c = p + offset_k * s``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        if stride != 2:
            raise ValueError(f"ConvTranspose3d: only stride 2 is supported, got {stride}")
        super().__init__(in_channels, out_channels, kernel_size, dilation, bias)
        self.stride = stride

    def forward(self, x: SparseTensor) -> SparseTensor:
        _check_input(x, self.in_channels, "ConvTranspose3d")
        if x.stride % self.stride:
            raise ValueError(
                f"ConvTranspose3d: input stride {x.stride} is not divisible by {self.stride}"
            )
        out_stride = x.stride // self.stride
        km = x.manager.kernel_map(x.stride, out_stride, self.kernel_size, self.dilation, "up")
        return SparseTensor._derived(self._conv(x.feats, km), out_stride, x.manager)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", stride={self.stride}"


class BatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over the (M, C) features of a SparseTensor (all voxels of the batch)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        _check_input(x, self.num_features, "BatchNorm")
        return x.replace_feats(super().forward(x.feats))


class ReLU(nn.Module):
    """Elementwise ReLU of the features."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(torch.relu_(x.feats) if self.inplace else torch.relu(x.feats))


def relu(x: SparseTensor) -> SparseTensor:
    """ReLU of the features (new tensor)."""
    return x.replace_feats(torch.relu(x.feats))


def cat(*tensors: SparseTensor) -> SparseTensor:
    """Concatenate features (skip connection); every tensor must be on the same coordinates."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if not tensors:
        raise ValueError("cat: nothing to concatenate")
    first = tensors[0]
    for i, t in enumerate(tensors[1:], 1):
        if not first.same_coords(t):
            raise ValueError(
                f"cat: tensor {i} has different coordinates (stride {t.stride} vs {first.stride}, "
                f"same manager: {t.manager is first.manager})"
            )
    return first.replace_feats(torch.cat([t.feats for t in tensors], dim=1))


def add(a: SparseTensor, b: SparseTensor) -> SparseTensor:
    """Elementwise sum of two tensors on the same coordinates (residual connection)."""
    return a + b


def global_avg_pool(x: SparseTensor) -> Tensor:
    """(B, C) mean of the features of each batch entry (an empty entry gives 0)."""
    B = x.batch_size
    b = x.batch_indices
    s = x.feats.new_zeros((B, x.feats.shape[1])).index_add_(0, b, x.feats)
    n = torch.bincount(b, minlength=B).clamp_(min=1).to(s.dtype)
    return s / n[:, None]


def global_max_pool(x: SparseTensor) -> Tensor:
    """(B, C) max of the features of each batch entry (an empty entry gives -inf)."""
    B = x.batch_size
    b = x.batch_indices
    C = x.feats.shape[1]
    out = x.feats.new_full((B, C), float("-inf"))
    return out.scatter_reduce(
        0, b[:, None].expand(-1, C), x.feats, reduce="amax", include_self=True
    )


def voxel_to_point(x: SparseTensor | Tensor, inverse: Tensor) -> Tensor:
    """(P, C) features of the original points: row ``inverse[p]`` of the voxel features.

    ``inverse``: (P,) integer voxel row of each point (as produced by voxelisation).
    """
    f = x.feats if isinstance(x, SparseTensor) else x
    if inverse.dim() != 1 or inverse.dtype.is_floating_point:
        raise ValueError(
            "voxel_to_point: inverse must be a 1-D integer tensor, "
            f"got {tuple(inverse.shape)} {inverse.dtype}"
        )
    if inverse.numel():
        lo, hi = int(inverse.min()), int(inverse.max())
        if lo < 0 or hi >= f.shape[0]:
            raise ValueError(
                f"voxel_to_point: inverse values must lie in [0, {f.shape[0]}), got [{lo}, {hi}]"
            )
    return f.index_select(0, inverse.to(device=f.device, dtype=torch.int64))
