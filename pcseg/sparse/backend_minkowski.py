"""MinkowskiEngine 0.5.x adapter of the sparse backend interface (:mod:`pcseg.sparse.backends`).

``MinkowskiBackend`` builds the layers of :mod:`pcseg.models.minkunet` from MinkowskiEngine
(``build_model(name, ..., backend="minkowski")`` or ``PCSEG_SPARSE_BACKEND=minkowski``):

* ``subm_conv`` -> ``ME.MinkowskiConvolution(k, stride=1, dilation, dimension=3)``: with
  stride 1 MinkowskiEngine writes onto the input coordinates (sub-manifold);
* ``down_conv`` -> ``ME.MinkowskiConvolution(k=2, stride=2)``;
* ``up_conv`` -> ``ME.MinkowskiConvolutionTranspose(k=2, stride=2)``, which lands on the
  coordinate map that already exists at the finer stride (the encoder level);
* ``batch_norm`` -> an ``nn.BatchNorm1d`` subclass on ``x.F`` (what ``ME.MinkowskiBatchNorm``
  does internally, but with pcseg's state-dict keys ``bn.weight`` instead of
  ``bn.bn.weight``); ``relu`` -> ``ME.MinkowskiReLU``; ``cat`` -> ``ME.cat``; ``add`` -> ``+``.

Installing MinkowskiEngine (unmaintained since 2021, no wheels): see
:data:`pcseg.sparse.backends.MINKOWSKI_INSTALL` (``libopenblas-dev``, then
``pip install --no-build-isolation --config-settings="--global-option=--cpu_only
--blas=openblas" MinkowskiEngine==0.5.4``). MinkowskiEngine 0.5.4 does
``from collections import Sequence``, removed in Python 3.10; :func:`import_minkowski`
installs the ``collections.Sequence = collections.abc.Sequence`` shim (and the other ABC
aliases) before importing it.

Weights. pcseg's conv weight layout *is* MinkowskiEngine's: ``(K, C_in, C_out)``, offset
``k = (iz * ks + iy) * ks + ix`` (z slowest, x fastest), even kernels anchored at 0.
Differences are in naming / shapes only: the parameter is called ``kernel``; a 1x1x1
stride-1 conv stores ``(C_in, C_out)`` (``use_mm``); a conv bias is ``(1, C_out)``.
:func:`state_dict_to_minkowski` / :func:`state_dict_from_minkowski` convert.

Row order. ``ME.SparseTensor`` may reorder the input rows (``unique_index``); the adapter
records the input's ``inverse_mapping`` on the coordinate manager so that
:meth:`MinkowskiBackend.features` returns stride-1 features in the caller's row order.
"""

from __future__ import annotations

import collections
import collections.abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from .backends import MINKOWSKI_INSTALL, BackendUnavailableError, register_backend
from .nn import init_kernel_
from .tensor import SparseTensor

#: aliases removed from ``collections`` in Python 3.10 that MinkowskiEngine 0.5.4 imports
_ABC_ALIASES = ("Sequence", "Mapping", "MutableMapping", "Iterable", "Callable", "MutableSequence")

_ROW_ORDER_ATTR = "_pcseg_input_row_order"


def install_collections_shim() -> list[str]:
    """Re-create ``collections.Sequence`` & co. (removed in 3.10) for MinkowskiEngine 0.5.4.

    Returns the names that were added (empty on Python < 3.10 or when already present).
    """
    added = []
    for name in _ABC_ALIASES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
            added.append(name)
    return added


def import_minkowski() -> Any:
    """Import ``MinkowskiEngine`` (with the Python >= 3.10 shim).

    Raises:
        BackendUnavailableError: not importable; the message holds the build recipe and the
            original import error.
    """
    install_collections_shim()
    try:
        import MinkowskiEngine as ME  # noqa: N813, PLC0415
    except (ImportError, OSError, AttributeError) as e:  # broken builds raise the latter two
        raise BackendUnavailableError(
            f"{MINKOWSKI_INSTALL} (import error: {type(e).__name__}: {e})"
        ) from e
    return ME


# ============================================================================ weights
def weight_to_minkowski(weight: Tensor, stride_one: bool = True) -> Tensor:
    """pcseg conv weight (K, C_in, C_out) -> MinkowskiEngine ``kernel``.

    Identical for K > 1; ``(C_in, C_out)`` for K = 1 when the conv has stride 1 (``stride_one``,
    MinkowskiEngine's ``use_mm``), else ``(1, C_in, C_out)``.
    """
    if weight.dim() != 3:
        raise ValueError(
            f"weight_to_minkowski: expected (K, C_in, C_out), got {tuple(weight.shape)}"
        )
    if weight.shape[0] == 1 and stride_one:
        return weight[0].contiguous()
    return weight.contiguous()


def weight_from_minkowski(kernel: Tensor) -> Tensor:
    """MinkowskiEngine ``kernel`` ((K, C_in, C_out) or (C_in, C_out)) -> pcseg (K, C_in, C_out)."""
    if kernel.dim() == 2:
        return kernel.unsqueeze(0).contiguous()
    if kernel.dim() == 3:
        return kernel.contiguous()
    raise ValueError(
        f"weight_from_minkowski: expected a 2-D or 3-D kernel, got {tuple(kernel.shape)}"
    )


def state_dict_to_minkowski(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """State dict of a torch-backend model -> the same model on the MinkowskiEngine backend.

    A sparse conv is recognised by its 3-D ``<prefix>.weight``; it becomes
    ``<prefix>.kernel`` (:func:`weight_to_minkowski`, K = 1 taken as stride 1 -- the only
    1x1x1 convs of MinkUNet) and its ``<prefix>.bias`` (C_out,) becomes (1, C_out).
    BatchNorm and Linear entries are copied unchanged.
    """
    convs = {
        k[: -len(".weight")]
        for k, v in state_dict.items()
        if k.endswith(".weight") and v.dim() == 3
    }
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        prefix, _, leaf = k.rpartition(".")
        if prefix in convs and leaf == "weight":
            out[f"{prefix}.kernel"] = weight_to_minkowski(v)
        elif prefix in convs and leaf == "bias":
            out[k] = v.reshape(1, -1)
        else:
            out[k] = v
    return out


def state_dict_from_minkowski(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`state_dict_to_minkowski`
    (``*.kernel`` -> ``*.weight`` (K, C_in, C_out))."""
    convs = {k[: -len(".kernel")] for k in state_dict if k.endswith(".kernel")}
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        prefix, _, leaf = k.rpartition(".")
        if prefix in convs and leaf == "kernel":
            out[f"{prefix}.weight"] = weight_from_minkowski(v)
        elif prefix in convs and leaf == "bias":
            out[k] = v.reshape(-1)
        else:
            out[k] = v
    return out


# ============================================================================ layers
@dataclass(frozen=True)
class _Layers:
    """``MinkowskiEngine`` and the layer classes built on it."""

    ME: Any
    BatchNorm: type[nn.Module]


_LAYERS: _Layers | None = None


def _layers() -> _Layers:
    """Module classes built on first use (MinkowskiEngine is imported only then)."""
    global _LAYERS
    if _LAYERS is not None:
        return _LAYERS
    ME = import_minkowski()  # noqa: N806

    class MinkowskiBatchNormF(nn.BatchNorm1d):
        """``nn.BatchNorm1d`` over ``x.F`` returning a tensor on the same coordinate map."""

        def forward(self, x: Any) -> Any:
            return ME.SparseTensor(
                super().forward(x.F),
                coordinate_map_key=x.coordinate_map_key,
                coordinate_manager=x.coordinate_manager,
            )

    _LAYERS = _Layers(ME=ME, BatchNorm=MinkowskiBatchNormF)
    return _LAYERS


class MinkowskiBackend:
    """Layer factory on MinkowskiEngine 0.5.x (see the module docstring).

    Raises:
        BackendUnavailableError: MinkowskiEngine not importable (message has the recipe).
    """

    name = "minkowski"

    def __init__(self) -> None:
        self._L = _layers()
        self.ME = self._L.ME

    def _conv(
        self,
        cls: Any,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        dilation: int,
        bias: bool,
    ) -> nn.Module:
        m = cls(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            dilation=dilation,
            bias=bias,
            dimension=3,
        )
        init_kernel_(m.kernel, kernel_size**3, out_channels)
        return cast(nn.Module, m)  # MinkowskiEngine has no type information

    def subm_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        bias: bool = False,
        key: str | None = None,
    ) -> nn.Module:
        """Stride-1 ``MinkowskiConvolution`` (output on the input coordinates)."""
        if kernel_size % 2 != 1:
            raise ValueError(f"subm_conv: kernel_size must be odd, got {kernel_size}")
        return self._conv(
            self.ME.MinkowskiConvolution, in_channels, out_channels, kernel_size, 1, dilation, bias
        )

    def down_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        key: str | None = None,
    ) -> nn.Module:
        """Strided ``MinkowskiConvolution`` (tensor stride s -> 2s)."""
        if stride != 2:
            raise ValueError(f"down_conv: only stride 2 is supported, got {stride}")
        return self._conv(
            self.ME.MinkowskiConvolution, in_channels, out_channels, kernel_size, 2, 1, False
        )

    def up_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        key: str | None = None,
    ) -> nn.Module:
        """``MinkowskiConvolutionTranspose`` onto the existing coordinates at stride s."""
        if stride != 2:
            raise ValueError(f"up_conv: only stride 2 is supported, got {stride}")
        return self._conv(
            self.ME.MinkowskiConvolutionTranspose,
            in_channels,
            out_channels,
            kernel_size,
            2,
            1,
            False,
        )

    def batch_norm(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
        """BatchNorm1d over ``x.F`` (pcseg state-dict keys)."""
        return self._L.BatchNorm(channels, eps=eps, momentum=momentum)

    def relu(self, inplace: bool = False) -> nn.Module:
        """``ME.MinkowskiReLU``."""
        return cast(nn.Module, self.ME.MinkowskiReLU(inplace=inplace))

    def cat(self, a: Any, b: Any) -> Any:
        """``ME.cat`` (same coordinate map key required)."""
        return self.ME.cat(a, b)

    def add(self, a: Any, b: Any) -> Any:
        """Feature sum on the same coordinate map."""
        return a + b

    def make_input(self, coords: Tensor, feats: Tensor, stride: int = 1) -> Any:
        """``ME.SparseTensor`` from (M, 4) int ``[batch, x, y, z]`` coords and (M, C) feats.

        The input's ``inverse_mapping`` (original row -> MinkowskiEngine row) is recorded on
        the coordinate manager for :meth:`features`.
        """
        if feats.dim() != 2 or feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats must be ({coords.shape[0]}, C), got {tuple(feats.shape)}")
        if coords.device != feats.device:
            raise ValueError(f"coords on {coords.device} but feats on {feats.device}")
        t = self.ME.SparseTensor(feats, coordinates=coords.int().contiguous(), tensor_stride=stride)
        inv = getattr(t, "inverse_mapping", None)
        if inv is not None:
            inv = inv.long()
            if inv.numel() != coords.shape[0] or t.F.shape[0] != coords.shape[0]:
                raise ValueError(
                    "make_input: duplicated coordinates (MinkowskiEngine merged rows); "
                    "voxelize (unique) the coordinates first"
                )
            if torch.equal(inv, torch.arange(inv.numel(), device=inv.device)):
                inv = None
        setattr(t.coordinate_manager, _ROW_ORDER_ATTR, (t.coordinate_map_key, inv))
        return t

    def from_sparse_tensor(self, x: Any) -> Any:
        """MinkowskiEngine tensor of a pcseg :class:`SparseTensor` (ME tensors pass through)."""
        if isinstance(x, self.ME.SparseTensor):
            return x
        if not isinstance(x, SparseTensor):
            raise TypeError(
                f"expected a pcseg.sparse.SparseTensor or ME.SparseTensor, got {type(x).__name__}"
            )
        return self.make_input(x.coords, x.feats, x.stride)

    def features(self, x: Any) -> Tensor:
        """(M, C) features; on the input's coordinate map the rows follow the input's order."""
        rec = getattr(x.coordinate_manager, _ROW_ORDER_ATTR, None)
        if rec is not None and rec[1] is not None and _same_key(x.coordinate_map_key, rec[0]):
            return cast(Tensor, x.F.index_select(0, rec[1].to(x.F.device)))
        return cast(Tensor, x.F)

    def __repr__(self) -> str:
        return "MinkowskiBackend()"


def _same_key(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a.get_key() == b.get_key())
    except AttributeError:
        return bool(a == b)


register_backend("minkowski", MinkowskiBackend)

__all__ = [
    "MinkowskiBackend",
    "import_minkowski",
    "install_collections_shim",
    "state_dict_from_minkowski",
    "state_dict_to_minkowski",
    "weight_from_minkowski",
    "weight_to_minkowski",
]
