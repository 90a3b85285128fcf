"""Collision-free int64 packing of (batch, x, y, z) voxel coordinates.

Layout of one key (bit 63 is always 0, so keys are non-negative and sort like
``(batch, x, y, z)`` tuples)::

    bits 48..62  batch index            15 bits, 0 .. 32767
    bits 32..47  x + 2**15              16 bits
    bits 16..31  y + 2**15              16 bits
    bits  0..15  z + 2**15              16 bits

Coordinates must lie in ``[COORD_MIN, COORD_MAX] = [-16384, 16383]`` (e.g. +-80 m at
5 cm is +-1600 voxels, +-800 m at 5 cm still fits).  The extra 2**14 of head-room in every
16-bit field means that adding a kernel offset ``|d| < 2**14`` to a valid coordinate
never carries into / borrows from the neighbouring field, so the key of ``c + d`` is
exactly ``key(c) + offset_delta(d)``: neighbour queries are a single int64 addition.
"""

from __future__ import annotations

import torch
from torch import Tensor

COORD_BITS = 16
BATCH_BITS = 15
_BIAS = 1 << (COORD_BITS - 1)  # 32768
_FIELD_MASK = (1 << COORD_BITS) - 1
COORD_MIN = -(1 << (COORD_BITS - 2))  # -16384
COORD_MAX = (1 << (COORD_BITS - 2)) - 1  # 16383
MAX_BATCH = (1 << BATCH_BITS) - 1  # 32767
#: exclusive bound on |kernel offset| (in finest-level voxels) accepted by offset_delta
MAX_OFFSET = 1 << (COORD_BITS - 2)
#: largest tensor stride a coarse level may have (coarse fields stay inside the head-room)
MAX_STRIDE = 1 << (COORD_BITS - 3)


class CoordinateRangeError(ValueError):
    """Raised when coordinates / batch indices / offsets do not fit the int64 key layout."""


def check_coords(coords: Tensor, what: str = "coords") -> None:
    """Validate an (M, 4) integer ``[batch, x, y, z]`` tensor against the key layout.

    Raises ``ValueError`` (shape / dtype) or :class:`CoordinateRangeError` (range), naming
    the offending column, its observed min / max and the allowed range.
    """
    if not isinstance(coords, Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(coords).__name__}")
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(
            f"{what}: expected shape (M, 4) [batch, x, y, z], got {tuple(coords.shape)}"
        )
    if coords.dtype.is_floating_point or coords.dtype.is_complex or coords.dtype == torch.bool:
        raise ValueError(f"{what}: expected an integer dtype, got {coords.dtype}")
    if coords.shape[0] == 0:
        return
    lo = coords.min(dim=0).values.tolist()
    hi = coords.max(dim=0).values.tolist()
    if lo[0] < 0 or hi[0] > MAX_BATCH:
        raise CoordinateRangeError(
            f"{what}: batch index (column 0) must lie in [0, {MAX_BATCH}], got [{lo[0]}, {hi[0]}]"
        )
    for col, name in ((1, "x"), (2, "y"), (3, "z")):
        if lo[col] < COORD_MIN or hi[col] > COORD_MAX:
            raise CoordinateRangeError(
                f"{what}: {name} (column {col}) must lie in [{COORD_MIN}, {COORD_MAX}] voxels, "
                f"got [{lo[col]}, {hi[col]}]; use a coarser voxel size or re-centre the scene"
            )


def pack_keys(coords: Tensor, check: bool = True) -> Tensor:
    """Pack (M, 4) integer ``[batch, x, y, z]`` coordinates into (M,) int64 keys.

    ``check=False`` skips the range validation (which synchronises a CUDA device); only
    pass it for coordinates derived from already validated ones.
    """
    if check:
        check_coords(coords)
    c = coords.to(torch.int64)
    key = c[:, 0] << (3 * COORD_BITS)
    key = key | ((c[:, 1] + _BIAS) << (2 * COORD_BITS))
    key = key | ((c[:, 2] + _BIAS) << COORD_BITS)
    key = key | (c[:, 3] + _BIAS)
    return key


def unpack_keys(keys: Tensor, dtype: torch.dtype = torch.int32) -> Tensor:
    """Inverse of :func:`pack_keys`: (M,) int64 keys -> (M, 4) ``[batch, x, y, z]`` of ``dtype``."""
    out = torch.empty((keys.shape[0], 4), dtype=torch.int64, device=keys.device)
    out[:, 0] = keys >> (3 * COORD_BITS)
    out[:, 1] = ((keys >> (2 * COORD_BITS)) & _FIELD_MASK) - _BIAS
    out[:, 2] = ((keys >> COORD_BITS) & _FIELD_MASK) - _BIAS
    out[:, 3] = (keys & _FIELD_MASK) - _BIAS
    return out.to(dtype)


def offset_delta(dx: int, dy: int, dz: int) -> int:
    """Key difference of a spatial offset (finest-level voxels): ``key(c + d) = key(c) + delta``."""
    for v, name in ((dx, "dx"), (dy, "dy"), (dz, "dz")):
        if abs(int(v)) >= MAX_OFFSET:
            raise CoordinateRangeError(
                f"kernel offset {name}={v} is out of range: |offset| must be < {MAX_OFFSET} voxels "
                "(kernel_size * dilation * tensor stride too large)"
            )
    return (int(dx) << (2 * COORD_BITS)) + (int(dy) << COORD_BITS) + int(dz)


def coarsen_keys(keys: Tensor, out_stride: int) -> Tensor:
    """Keys of ``floor(c / out_stride) * out_stride`` per spatial axis (batch kept).

    ``out_stride`` must be a power of two <= :data:`MAX_STRIDE`. Because the bias 2**15 is
    a multiple of ``out_stride``, flooring a biased field is clearing its low bits.
    """
    if out_stride < 1 or out_stride & (out_stride - 1) or out_stride > MAX_STRIDE:
        raise CoordinateRangeError(
            f"stride {out_stride} must be a power of two in [1, {MAX_STRIDE}]"
        )
    low = out_stride - 1
    field_clear = _FIELD_MASK & ~low
    mask = (
        (((1 << BATCH_BITS) - 1) << (3 * COORD_BITS))
        | (field_clear << (2 * COORD_BITS))
        | (field_clear << COORD_BITS)
        | field_clear
    )
    return keys & mask


def axis_bit(keys: Tensor, axis: int, bit: int) -> Tensor:
    """Bit ``bit`` of the biased field of spatial ``axis`` (0=x, 1=y, 2=z); (M,) int64 in {0, 1}."""
    shift = (2 - axis) * COORD_BITS + bit
    return (keys >> shift) & 1


def batch_of_keys(keys: Tensor) -> Tensor:
    """(M,) int64 batch index of each key."""
    return keys >> (3 * COORD_BITS)
