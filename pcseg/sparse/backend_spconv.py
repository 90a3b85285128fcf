"""spconv 2.x adapter of the sparse backend interface (:mod:`pcseg.sparse.backends`).

``SpconvBackend`` builds every layer a MinkUNet needs from ``spconv.pytorch`` so the one
network definition of :mod:`pcseg.models.minkunet` runs on spconv
(``build_model(name, ..., backend="spconv")`` or ``PCSEG_SPARSE_BACKEND=spconv``).

Layers: ``subm_conv`` -> ``SubMConv3d`` (``indice_key = f"{key}_k{ks}_d{dil}"`` so only
identical kernels share pairs), ``down_conv`` -> ``SparseConv3d(k=2, s=2, padding=0,
indice_key=key)``, ``up_conv`` -> ``SparseInverseConv3d(k=2, indice_key=key)``, which
reuses the pairs of the strided conv with the same key and returns exactly the fine
coordinates the strided conv came from. BatchNorm / ReLU act on ``.features``.

Coordinates. pcseg uses ``[batch, x, y, z]`` (tensor-stride multiples, may be negative);
spconv uses int32 ``[batch, i0, i1, i2]`` >= 0 with a ``spatial_shape``. The adapter
writes ``[batch, z, y, x]`` with ``index = (coord - origin) / stride``, ``origin`` the
per-axis minimum rounded down to a multiple of ``align`` (32 finest voxels by default)
and ``spatial_shape`` rounded up to a multiple of ``align / stride``. With ``align`` a
multiple of ``stride * 2**L`` the k=2 s=2 convs of L levels produce
``floor(c / 2s) * 2s`` exactly like pcseg's coordinate manager, and no voxel falls
outside spconv's output shape.

Offset order and weight layout (checked against the pure-PyTorch engine in
``tests/test_spconv_equivalence.py``). spconv 2.3 stores every conv weight as KRSC =
``(C_out, k0, k1, k2, C_in)`` (``spconv.constants.ALL_WEIGHT_IS_KRSC``) where ``k0..k2``
follow the index axes, and flattens ``(k0, k1, k2)`` row-major into its offset index;
sub-manifold offsets are centred (``in = out + (i - k//2)``), strided k=2 offsets start
at 0 (``in = 2 out + i``), like pcseg. With indices in ``[z, y, x]`` order the spconv
offset index is ``(iz * k + iy) * k + ix`` -- exactly pcseg's / MinkowskiEngine's
order (z slowest, x fastest) -- so::

    spconv_weight = pcseg_weight.permute(2, 0, 1).reshape(C_out, k, k, k, C_in)

except for 1x1x1 kernels: spconv computes those as ``features @ weight.view(C_in, C_out)``
(a raw reinterpretation of the KRSC buffer, not a transpose), hence
``spconv_weight = pcseg_weight[0].reshape(C_out, 1, 1, 1, C_in)`` there.
:func:`weight_to_spconv` / :func:`weight_from_spconv` and the ``state_dict_*`` helpers
implement both cases.

CPU caveats of the spconv 2.3.8 CPU wheel, fixed by :func:`patch_spconv_cpu`
(applied by :class:`SpconvBackend`; idempotent):

1. ``ops.indice_conv_backward`` calls ``get_current_stream()`` ->
   ``torch.cuda.current_stream()`` unconditionally, which raises "Torch not compiled with
   CUDA enabled" with a CPU-only torch: every CPU backward crashes.
2. ``SpconvOps.scatter_add_cpu`` (``GatherCPU::scatter_add``) runs under
   ``#pragma omp parallel`` but its loop writes two pointers (``buf``, ``out_ptr``)
   declared outside the lambda and captured by reference, shared by all threads: with
   more than one OpenMP thread rows are added to the wrong output rows -- silently wrong
   forward and backward results. spconv's GOMP symbols bind to torch's ``libgomp``
   (loaded globally by torch), so the thread count it sees is ``torch.get_num_threads()``.
   The patch runs that one kernel with one thread (torch's setting, and also spconv's
   bundled libgomp in case it is the one bound); gathers and GEMMs keep every thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .backends import SPCONV_INSTALL, BackendUnavailableError, register_backend
from .nn import init_kernel_
from .tensor import SparseTensor

#: default alignment (finest voxels) of the index origin and of the spatial shape
DEFAULT_ALIGN = 32


# ============================================================================ import / patch
def import_spconv() -> Any:
    """``spconv.pytorch``; raises :class:`BackendUnavailableError` with the install recipe."""
    try:
        import spconv.pytorch as spconv_pt  # noqa: PLC0415
    except ImportError as e:
        raise BackendUnavailableError(f"{SPCONV_INSTALL} (import error: {e})") from e
    return spconv_pt


_PATCH_LOCK = threading.Lock()
_PATCHED: dict[str, Any] = {}


def _bundled_libgomp() -> ctypes.CDLL | None:
    """ctypes handle of the libgomp shipped in ``spconv.libs`` (None if absent)."""
    import spconv  # noqa: PLC0415

    site = os.path.dirname(os.path.dirname(os.path.abspath(spconv.__file__)))
    hits = sorted(glob.glob(os.path.join(site, "spconv.libs", "libgomp*.so*")))
    if not hits:
        return None
    try:
        lib = ctypes.CDLL(hits[0])
        lib.omp_get_max_threads.restype = ctypes.c_int
        return lib
    except OSError:
        return None


def patch_spconv_cpu() -> bool:
    """Make spconv 2.x correct on CPU (see the module docstring); idempotent.

    1. ``get_current_stream`` in ``spconv.pytorch.ops`` / ``hash`` / ``utils`` returns 0
       when CUDA is unavailable (CPU kernels ignore the stream) instead of raising.
    2. ``SpconvOps.scatter_add_cpu`` (the racy kernel) runs with one OpenMP thread: torch's
       intra-op thread count is set to 1 around the call (spconv's OpenMP runtime is
       torch's ``libgomp``) and restored after it, and so is the ``omp_set_num_threads`` of
       the libgomp bundled with the spconv wheel.

    Returns True when the patch was applied by this call, False when it already was.
    Raises :class:`BackendUnavailableError` when spconv is not importable.
    """
    with _PATCH_LOCK:
        if _PATCHED:
            return False
        import_spconv()
        import importlib  # noqa: PLC0415

        from spconv.pytorch import cppcore  # noqa: PLC0415

        original_stream: Callable[[], int] = cppcore.get_current_stream

        def get_current_stream() -> int:
            """CUDA stream handle, or 0 where torch has no CUDA (CPU kernels ignore it)."""
            if not torch.cuda.is_available():
                return 0
            return original_stream()

        for name in ("cppcore", "ops", "hash", "utils"):
            try:
                mod: Any = importlib.import_module(f"spconv.pytorch.{name}")
            except ImportError:
                continue
            if getattr(mod, "get_current_stream", None) is original_stream:
                mod.get_current_stream = get_current_stream

        from spconv.pytorch import ops  # noqa: PLC0415

        ops_cls = ops.SpconvOps
        original_scatter = ops_cls.scatter_add_cpu
        gomp = _bundled_libgomp()

        def scatter_add_cpu(out: Any, inp: Any, inds: Any) -> Any:
            """spconv's CPU scatter-add run single-threaded (its OpenMP loop races)."""
            n = torch.get_num_threads()
            g = gomp.omp_get_max_threads() if gomp is not None else 1
            if n > 1:
                torch.set_num_threads(1)
            if gomp is not None and g > 1:  # g > 1 only with gomp
                gomp.omp_set_num_threads(1)
            try:
                return original_scatter(out, inp, inds)
            finally:
                if n > 1:
                    torch.set_num_threads(n)
                if gomp is not None and g > 1:
                    gomp.omp_set_num_threads(g)

        ops_cls.scatter_add_cpu = staticmethod(scatter_add_cpu)
        _PATCHED.update(
            stream=(original_stream, get_current_stream),
            scatter=(original_scatter, scatter_add_cpu),
        )
        return True


def spconv_cpu_patched() -> bool:
    """Whether :func:`patch_spconv_cpu` has been applied in this process."""
    return bool(_PATCHED)


@contextlib.contextmanager
def unpatched_scatter() -> Iterator[None]:
    """Temporarily restore spconv's original (racy) CPU scatter-add (tests / demos only)."""
    if not _PATCHED:
        yield
        return
    from spconv.pytorch import ops  # noqa: PLC0415

    original, patched = _PATCHED["scatter"]
    ops.SpconvOps.scatter_add_cpu = staticmethod(original)
    try:
        yield
    finally:
        ops.SpconvOps.scatter_add_cpu = staticmethod(patched)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (restored afterwards).

    ``with num_threads(1): ...`` is the fully single-threaded spconv configuration (also
    correct without :func:`patch_spconv_cpu`'s scatter fix).
    """
    if n < 1:
        raise ValueError(f"num_threads: n must be >= 1, got {n}")
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


# ============================================================================ weights
def _cube_side(k_volume: int, what: str) -> int:
    k: int = round(k_volume ** (1.0 / 3.0))  # typeshed types int ** float as Any
    for c in (k - 1, k, k + 1):
        if c >= 1 and c**3 == k_volume:
            return c
    raise ValueError(f"{what}: kernel volume {k_volume} is not a cube k**3")


def weight_to_spconv(weight: Tensor) -> Tensor:
    """pcseg conv weight (K, C_in, C_out) -> spconv KRSC weight (C_out, k, k, k, C_in).

    Axes ``k, k, k`` are (z, y, x) to match the adapter's ``[batch, z, y, x]`` indices;
    K = 1 uses spconv's 1x1 convention (``weight.view(C_in, C_out)`` is the matrix).
    """
    if weight.dim() != 3:
        raise ValueError(f"weight_to_spconv: expected (K, C_in, C_out), got {tuple(weight.shape)}")
    K, cin, cout = weight.shape
    k = _cube_side(K, "weight_to_spconv")
    if K == 1:
        return weight[0].contiguous().reshape(cout, 1, 1, 1, cin)
    return weight.permute(2, 0, 1).reshape(cout, k, k, k, cin).contiguous()


def weight_from_spconv(weight: Tensor) -> Tensor:
    """spconv KRSC weight (C_out, kz, ky, kx, C_in) -> pcseg (K, C_in, C_out); inverse of
    :func:`weight_to_spconv`."""
    if weight.dim() != 5:
        raise ValueError(
            f"weight_from_spconv: expected (C_out, k, k, k, C_in), got {tuple(weight.shape)}"
        )
    cout, kz, ky, kx, cin = weight.shape
    if not kz == ky == kx:
        raise ValueError(
            f"weight_from_spconv: only cubic kernels are supported, got {kz}x{ky}x{kx}"
        )
    if kz == 1:
        return weight.contiguous().reshape(1, cin, cout)
    return weight.reshape(cout, kz**3, cin).permute(1, 2, 0).contiguous()


def state_dict_to_spconv(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """State dict of a torch-backend model -> the same model on the spconv backend.

    Every 3-D ``*.weight`` (sparse conv weight (K, C_in, C_out)) goes through
    :func:`weight_to_spconv`; everything else (BatchNorm, the final Linear) is copied.
    """
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        out[k] = weight_to_spconv(v) if k.endswith(".weight") and v.dim() == 3 else v
    return out


def state_dict_from_spconv(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`state_dict_to_spconv` (5-D ``*.weight`` -> (K, C_in, C_out))."""
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        out[k] = weight_from_spconv(v) if k.endswith(".weight") and v.dim() == 5 else v
    return out


# ============================================================================ coordinates
def coords_to_indices(
    coords: Tensor, stride: int = 1, align: int = DEFAULT_ALIGN
) -> tuple[Tensor, list[int], Tensor]:
    """pcseg ``[batch, x, y, z]`` coordinates -> spconv indices.

    Args:
        coords: (M, 4) integer coordinates, spatial entries multiples of ``stride``.
        stride: tensor stride of ``coords``.
        align: origin / shape alignment in finest voxels (a multiple of ``stride``; must be
            a multiple of ``stride * 2**L`` for L stride-2 levels below this one).
    Returns:
        ``indices`` (M, 4) int32 ``[batch, z, y, x]`` >= 0 (contiguous, same device),
        ``spatial_shape`` [Z, Y, X] (multiples of ``align // stride``),
        ``origin`` (3,) int64 ``[x0, y0, z0]`` with ``coord = origin + index * stride``.
    """
    if not isinstance(coords, Tensor) or coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(
            f"coords: expected an (M, 4) [batch, x, y, z] tensor, got "
            f"{tuple(coords.shape) if isinstance(coords, Tensor) else type(coords).__name__}"
        )
    if coords.dtype.is_floating_point:
        raise ValueError(f"coords: expected an integer dtype, got {coords.dtype}")
    if stride < 1 or align < stride or align % stride:
        raise ValueError(f"align ({align}) must be a positive multiple of stride ({stride})")
    c = coords.long()
    if c.shape[0] == 0:
        return (
            torch.zeros((0, 4), dtype=torch.int32, device=coords.device),
            [align // stride] * 3,
            torch.zeros(3, dtype=torch.int64),
        )
    sp = c[:, 1:]
    lo = sp.min(0).values
    hi = sp.max(0).values
    origin = torch.div(lo, align, rounding_mode="floor") * align
    rel = sp - origin
    if bool((rel % stride != 0).any()):
        raise ValueError(
            f"coords: spatial coordinates are not multiples of the tensor stride {stride}"
        )
    idx = rel // stride
    unit = align // stride
    extent = (hi - origin) // stride + 1
    shape_xyz = ((extent + unit - 1) // unit * unit).tolist()
    indices = (
        torch.stack([c[:, 0], idx[:, 2], idx[:, 1], idx[:, 0]], 1).to(torch.int32).contiguous()
    )
    return indices, [int(shape_xyz[2]), int(shape_xyz[1]), int(shape_xyz[0])], origin.cpu()


def indices_to_coords(indices: Tensor, origin: Tensor, stride: int = 1) -> Tensor:
    """spconv ``[batch, z, y, x]`` indices at ``stride`` -> pcseg (M, 4) int32 ``[batch, x, y, z]``.

    ``origin`` is the (3,) ``[x0, y0, z0]`` returned by :func:`coords_to_indices` for the
    input the indices derive from (a tensor at stride ``s`` has ``coord = origin + idx * s``).
    """
    i = indices.long()
    o = origin.to(i.device).long()
    xyz = torch.stack([i[:, 3], i[:, 2], i[:, 1]], 1) * stride + o
    return torch.cat([i[:, :1], xyz], 1).to(torch.int32)


# ============================================================================ layers
@dataclass(frozen=True)
class _Layers:
    """``spconv.pytorch`` and the layer classes built on it."""

    sp: Any
    SubMConv3d: type[nn.Module]
    Conv3d: type[nn.Module]
    InverseConv3d: type[nn.Module]
    BatchNorm: type[nn.Module]
    ReLU: type[nn.Module]


_LAYERS: _Layers | None = None


def _layers() -> _Layers:
    """Module classes built on first use (spconv is imported only then)."""
    global _LAYERS
    if _LAYERS is not None:
        return _LAYERS
    sp = import_spconv()

    class _InitMixin:
        # set by spconv's conv __init__ before it calls reset_parameters
        kernel_size: tuple[int, ...]
        weight: Tensor
        bias: Tensor | None
        in_channels: int
        out_channels: int

        def reset_parameters(self) -> None:  # called by spconv's __init__
            kv = int(math.prod(self.kernel_size))
            init_kernel_(self.weight, kv, self.out_channels)
            if self.bias is not None:
                bound = 1.0 / math.sqrt(kv * self.in_channels)
                with torch.no_grad():
                    self.bias.uniform_(-bound, bound)

    # spconv ships no type information: its classes are Any (and mypy does not take an attribute
    # of the local module object as a base-class name)
    class SpconvSubMConv3d(_InitMixin, sp.SubMConv3d):  # type: ignore[misc, name-defined]
        """spconv ``SubMConv3d`` with pcseg's weight init (weight (C_out, k, k, k, C_in))."""

    class SpconvConv3d(_InitMixin, sp.SparseConv3d):  # type: ignore[misc, name-defined]
        """spconv ``SparseConv3d`` (stride 2, k = 2) with pcseg's weight init."""

    class SpconvInverseConv3d(_InitMixin, sp.SparseInverseConv3d):  # type: ignore[misc, name-defined]
        """spconv ``SparseInverseConv3d`` with pcseg's weight init."""

    class SpconvBatchNorm(nn.BatchNorm1d):
        """``nn.BatchNorm1d`` over the features of a ``SparseConvTensor`` (same state-dict
        keys as pcseg's :class:`~pcseg.sparse.nn.BatchNorm`)."""

        def forward(self, x: Any) -> Any:
            return x.replace_feature(super().forward(x.features))

    class SpconvReLU(nn.Module):
        """ReLU of the features of a ``SparseConvTensor``."""

        def __init__(self, inplace: bool = False) -> None:
            super().__init__()
            self.inplace = inplace

        def forward(self, x: Any) -> Any:
            f = x.features
            return x.replace_feature(torch.relu_(f) if self.inplace else torch.relu(f))

    _LAYERS = _Layers(
        sp=sp,
        SubMConv3d=SpconvSubMConv3d,
        Conv3d=SpconvConv3d,
        InverseConv3d=SpconvInverseConv3d,
        BatchNorm=SpconvBatchNorm,
        ReLU=SpconvReLU,
    )
    return _LAYERS


def _check_same_indices(a: Any, b: Any, who: str) -> None:
    ia, ib = a.indices, b.indices
    if ia is ib:
        return
    if ia.shape != ib.shape or not torch.equal(ia, ib):
        raise ValueError(
            f"{who}: the two spconv tensors have different indices "
            f"({ia.shape[0]} vs {ib.shape[0]} rows)"
        )


class SpconvBackend:
    """Layer factory on spconv 2.x (see the module docstring).

    Args:
        align: index origin / spatial-shape alignment in finest voxels (multiple of
            ``2**levels``; 32 serves the 4 levels of MinkUNet with one to spare).
        patch_cpu: apply :func:`patch_spconv_cpu` (needed for a correct CPU run).
    Raises:
        BackendUnavailableError: spconv not importable.
    """

    name = "spconv"

    def __init__(self, align: int = DEFAULT_ALIGN, patch_cpu: bool = True) -> None:
        if align < 1 or align & (align - 1):
            raise ValueError(f"align must be a power of two, got {align}")
        self._L = _layers()
        self.align = int(align)
        if patch_cpu:
            patch_spconv_cpu()

    # ------------------------------------------------------------------ layers
    def subm_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        bias: bool = False,
        key: str | None = None,
    ) -> nn.Module:
        """``SubMConv3d``; convs with the same ``key``, kernel and dilation share pairs."""
        if kernel_size % 2 != 1:
            raise ValueError(f"subm_conv: kernel_size must be odd, got {kernel_size}")
        ikey = None if key is None or kernel_size == 1 else f"{key}_k{kernel_size}_d{dilation}"
        return self._L.SubMConv3d(
            in_channels,
            out_channels,
            kernel_size,
            stride=1,
            padding=0,
            dilation=dilation,
            bias=bias,
            indice_key=ikey,
        )

    def down_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        key: str | None = None,
    ) -> nn.Module:
        """``SparseConv3d(k=2, s=2)`` storing its pairs under ``key`` for the matching up conv."""
        if kernel_size != 2 or stride != 2:
            raise ValueError(
                "spconv backend: down_conv supports kernel_size=2, stride=2 only "
                f"(pcseg's output coordinates), got kernel_size={kernel_size}, stride={stride}"
            )
        if not key:
            raise ValueError(
                "spconv backend: down_conv needs a key (indice_key) to pair its up_conv"
            )
        return self._L.Conv3d(
            in_channels, out_channels, 2, stride=2, padding=0, bias=False, indice_key=key
        )

    def up_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        key: str | None = None,
    ) -> nn.Module:
        """``SparseInverseConv3d`` undoing the ``down_conv`` with the same ``key``."""
        if kernel_size != 2 or stride != 2:
            raise ValueError(
                "spconv backend: up_conv supports kernel_size=2, stride=2 only, "
                f"got kernel_size={kernel_size}, stride={stride}"
            )
        if not key:
            raise ValueError("spconv backend: up_conv needs the key of the down_conv it undoes")
        return self._L.InverseConv3d(in_channels, out_channels, 2, indice_key=key, bias=False)

    def batch_norm(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
        """BatchNorm1d over all voxels' features."""
        return self._L.BatchNorm(channels, eps=eps, momentum=momentum)

    def relu(self, inplace: bool = False) -> nn.Module:
        """ReLU of the features."""
        return self._L.ReLU(inplace=inplace)

    # ----------------------------------------------------------------- tensors
    def cat(self, a: Any, b: Any) -> Any:
        """Channel concatenation of two spconv tensors with the same indices."""
        _check_same_indices(a, b, "cat")
        return a.replace_feature(torch.cat([a.features, b.features], 1))

    def add(self, a: Any, b: Any) -> Any:
        """Feature sum of two spconv tensors with the same indices."""
        _check_same_indices(a, b, "add")
        return a.replace_feature(a.features + b.features)

    def make_input(self, coords: Tensor, feats: Tensor, stride: int = 1) -> Any:
        """``SparseConvTensor`` from (M, 4) ``[batch, x, y, z]`` coords and (M, C) feats.

        Rows keep their order; the pcseg origin is kept as ``tensor.pcseg_origin``
        (``[x0, y0, z0]``, see :func:`indices_to_coords`).
        """
        if feats.dim() != 2 or feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats must be ({coords.shape[0]}, C), got {tuple(feats.shape)}")
        if coords.device != feats.device:
            raise ValueError(f"coords on {coords.device} but feats on {feats.device}")
        if self.align % (stride * 16):
            raise ValueError(
                f"align {self.align} is too small for an input at stride {stride} followed by "
                f"4 stride-2 levels (need a multiple of {stride * 16})"
            )
        indices, shape, origin = coords_to_indices(coords, stride, self.align)
        bs = int(coords[:, 0].max().item()) + 1 if coords.shape[0] else 1
        t = self._L.sp.SparseConvTensor(feats.contiguous(), indices, shape, bs)
        t.pcseg_origin = origin
        return t

    def from_sparse_tensor(self, x: Any) -> Any:
        """spconv tensor of a pcseg :class:`SparseTensor`
        (a ``SparseConvTensor`` passes through)."""
        if isinstance(x, self._L.sp.SparseConvTensor):
            return x
        if not isinstance(x, SparseTensor):
            raise TypeError(
                "expected a pcseg.sparse.SparseTensor or spconv SparseConvTensor, "
                f"got {type(x).__name__}"
            )
        return self.make_input(x.coords, x.feats, x.stride)

    def features(self, x: Any) -> Tensor:
        """(M, C) features; at the input level the rows follow the input's order."""
        f: Tensor = x.features
        return f

    def __repr__(self) -> str:
        return f"SpconvBackend(align={self.align})"


register_backend("spconv", SpconvBackend)

__all__ = [
    "DEFAULT_ALIGN",
    "SpconvBackend",
    "coords_to_indices",
    "import_spconv",
    "indices_to_coords",
    "num_threads",
    "patch_spconv_cpu",
    "spconv_cpu_patched",
    "state_dict_from_spconv",
    "state_dict_to_spconv",
    "unpatched_scatter",
    "weight_from_spconv",
    "weight_to_spconv",
]
