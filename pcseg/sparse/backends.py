"""Sparse-convolution backend switch and layer factory.

Models (``pcseg.models.minkunet``) build every sparse layer through a backend object, so
the same network definition can run on the pure-PyTorch engine of this package (default),
or on MinkowskiEngine / spconv through adapters with the same methods.

Backend selection (first that is set): the ``name`` argument (e.g. the config key
``model.backend``), the environment variable ``PCSEG_SPARSE_BACKEND``, else ``"torch"``.
Valid names: ``torch``, ``minkowski``, ``spconv``.

Interface of a backend (see :class:`TorchBackend`):

* ``subm_conv(in, out, kernel_size=3, dilation=1, bias=False, key=None) -> nn.Module``
* ``down_conv(in, out, kernel_size=2, stride=2, key=None) -> nn.Module`` (stride s -> 2s)
* ``up_conv(in, out, kernel_size=2, stride=2, key=None) -> nn.Module`` (stride 2s -> s, onto
  the coordinates of the level the matching ``down_conv`` came from)
* ``batch_norm(channels, momentum=0.1, eps=1e-5) -> nn.Module``; ``relu(inplace) -> nn.Module``
* ``cat(a, b)``, ``add(a, b)`` on backend tensors with the same coordinates
* ``make_input(coords (M,4) int, feats (M,C)) -> backend tensor``;
  ``from_sparse_tensor(x: SparseTensor) -> backend tensor``
* ``features(x) -> (M, C)`` features in the row order of the input

``key`` names the coordinate level a layer works on (``"s1"``, ``"s2"``, ... for
submanifold convs at that stride, ``"down1"`` for the stride-1 -> 2 conv and its
transposed partner). The torch backend ignores it (its coordinate manager resolves levels
from strides); spconv needs it (``indice_key``) to pair inverse convolutions with the
strided convolution they undo.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from . import nn as snn
from .tensor import SparseTensor

ENV_VAR = "PCSEG_SPARSE_BACKEND"
BACKENDS = ("torch", "minkowski", "spconv")

MINKOWSKI_INSTALL = (
    "MinkowskiEngine is not importable. CPU build recipe: "
    "`apt-get install libopenblas-dev` then "
    "`pip install --no-build-isolation "
    '--config-settings="--global-option=--cpu_only --blas=openblas" '
    "MinkowskiEngine==0.5.4`; on Python >= 3.10 MinkowskiEngine 0.5.4 also needs the shim "
    "`import collections, collections.abc; collections.Sequence = collections.abc.Sequence` "
    "executed before `import MinkowskiEngine`. Or use the default pure-PyTorch backend "
    f"({ENV_VAR}=torch)."
)
SPCONV_INSTALL = (
    "spconv is not importable. Install `pip install spconv==2.3.8` (CPU) or the CUDA wheel that "
    "matches your CUDA runtime, e.g. `pip install spconv-cu126==2.3.8` "
    "(spconv-cu120/cu121/cu124/...). "
    f"Or use the default pure-PyTorch backend ({ENV_VAR}=torch)."
)


class BackendUnavailableError(ImportError):
    """The requested sparse backend cannot be used in this environment
    (message says how to fix it)."""


@runtime_checkable
class SparseBackend(Protocol):
    """What a model needs from a backend (implemented by :class:`TorchBackend` and adapters)."""

    name: str

    def subm_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        bias: bool = False,
        key: str | None = None,
    ) -> nn.Module: ...

    def down_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        key: str | None = None,
    ) -> nn.Module: ...

    def up_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        key: str | None = None,
    ) -> nn.Module: ...

    def batch_norm(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module: ...

    def relu(self, inplace: bool = False) -> nn.Module: ...

    def cat(self, a: Any, b: Any) -> Any: ...

    def add(self, a: Any, b: Any) -> Any: ...

    def make_input(self, coords: Tensor, feats: Tensor) -> Any: ...

    def from_sparse_tensor(self, x: SparseTensor) -> Any: ...

    def features(self, x: Any) -> Tensor: ...


class TorchBackend:
    """Layer factory of the pure-PyTorch engine (:mod:`pcseg.sparse`)."""

    name = "torch"

    def __init__(self, sort_input: bool = True) -> None:
        self.sort_input = sort_input

    def subm_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        bias: bool = False,
        key: str | None = None,
    ) -> nn.Module:
        """Submanifold conv module (same coordinates in and out)."""
        return snn.SubMConv3d(in_channels, out_channels, kernel_size, dilation, bias)

    def down_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        key: str | None = None,
    ) -> nn.Module:
        """Strided conv module (stride s -> 2s, creates the coarse coordinates)."""
        return snn.Conv3d(in_channels, out_channels, kernel_size, stride)

    def up_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        key: str | None = None,
    ) -> nn.Module:
        """Transposed conv module (stride 2s -> s onto the existing fine coordinates)."""
        return snn.ConvTranspose3d(in_channels, out_channels, kernel_size, stride)

    def batch_norm(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
        """BatchNorm over all voxels."""
        return snn.BatchNorm(channels, eps=eps, momentum=momentum)

    def relu(self, inplace: bool = False) -> nn.Module:
        """ReLU module."""
        return snn.ReLU(inplace=inplace)

    def cat(self, a: SparseTensor, b: SparseTensor) -> SparseTensor:
        """Channel concatenation of two tensors on the same coordinates."""
        return snn.cat(a, b)

    def add(self, a: SparseTensor, b: SparseTensor) -> SparseTensor:
        """Residual sum of two tensors on the same coordinates."""
        return a + b

    def make_input(self, coords: Tensor, feats: Tensor) -> SparseTensor:
        """Input tensor from (M, 4) int ``[batch, x, y, z]`` coordinates and (M, C) features."""
        return SparseTensor(coords, feats)

    def from_sparse_tensor(self, x: SparseTensor) -> SparseTensor:
        """Backend tensor of a pcseg :class:`SparseTensor`: ``x`` itself when its rows are
        in key order, else a row-sorted copy (:meth:`SparseTensor.sorted`; cache-friendly
        gathers / scatters), whose original order :meth:`features` restores."""
        if not isinstance(x, SparseTensor):
            raise TypeError(f"expected a pcseg.sparse.SparseTensor, got {type(x).__name__}")
        return x.sorted() if self.sort_input else x

    def features(self, x: SparseTensor) -> Tensor:
        """(M, C) features, rows in the order of the input given to :meth:`from_sparse_tensor`."""
        return x.unsort_feats()

    def __repr__(self) -> str:
        return f"TorchBackend(sort_input={self.sort_input})"


def resolve_backend_name(name: str | None = None) -> str:
    """The backend name to use: ``name``, else ``$PCSEG_SPARSE_BACKEND``, else ``"torch"``."""
    src = "argument"
    if name is None:
        name = os.environ.get(ENV_VAR) or None
        src = f"environment variable {ENV_VAR}"
    if name is None:
        return "torch"
    key = str(name).strip().lower()
    aliases = {"pytorch": "torch", "me": "minkowski", "minkowskiengine": "minkowski"}
    key = aliases.get(key, key)
    if key not in BACKENDS:
        raise ValueError(
            f"unknown sparse backend {name!r} (from {src}); valid: {', '.join(BACKENDS)}"
        )
    return key


def _importable(module: str) -> bool:
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_ADAPTERS: dict[str, Callable[[], SparseBackend]] = {"torch": TorchBackend}
#: adapter modules imported on first use; importing one registers its backend
_ADAPTER_MODULES: dict[str, str] = {
    "spconv": "pcseg.sparse.backend_spconv",
    "minkowski": "pcseg.sparse.backend_minkowski",
}


def register_backend(name: str, factory: Callable[[], SparseBackend]) -> None:
    """Register the adapter class / factory (called without arguments) for ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown sparse backend {name!r}; valid: {', '.join(BACKENDS)}")
    _ADAPTERS[name] = factory


def get_backend(name: str | None = None) -> SparseBackend:
    """Instantiate the selected backend (see module docstring for the selection order).

    Raises:
        ValueError: unknown name.
        BackendUnavailableError: ``minkowski`` / ``spconv`` requested but not importable
            (the message gives the install recipe), or importable but no adapter is
            registered in this version of pcseg.
    """
    key = resolve_backend_name(name)
    if key == "minkowski" and not _importable("MinkowskiEngine"):
        raise BackendUnavailableError(MINKOWSKI_INSTALL)
    if key == "spconv" and not _importable("spconv"):
        raise BackendUnavailableError(SPCONV_INSTALL)
    factory = _ADAPTERS.get(key)
    if factory is None and key in _ADAPTER_MODULES:
        importlib.import_module(_ADAPTER_MODULES[key])  # registers the adapter
        factory = _ADAPTERS.get(key)
    if factory is None:
        raise BackendUnavailableError(
            f"sparse backend {key!r} is importable but pcseg has no adapter registered for it yet "
            f"(register one with pcseg.sparse.backends.register_backend); use {ENV_VAR}=torch"
        )
    return factory()
