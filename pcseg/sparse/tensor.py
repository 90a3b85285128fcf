"""SparseTensor and the CoordinateManager that caches keys, coarse levels and kernel maps.

Coordinates are integer voxel indices at the finest level; a tensor at stride ``s`` has
coordinates that are multiples of ``s`` (MinkowskiEngine convention). Coarse levels are
``floor(c / 2s) * 2s`` of the level below and their rows are in sorted-key order.

One :class:`CoordinateManager` is shared by every tensor derived from one input (all the
activations of one forward pass). It holds, per stride, the int64 keys (sorted once) and
the coordinates, and caches kernel maps keyed by
``(kind, in_stride, out_stride, kernel_size, dilation)`` so that each map is built once
per forward pass and reused by every layer that needs it. ``manager.build_log`` records
every map actually built (tests use it to count builds).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .kernel_map import (
    DenseGridIndex,
    KernelMap,
    SortedKeyIndex,
    build_downsample_map,
    build_submanifold_map,
)
from .keys import (
    MAX_STRIDE,
    batch_of_keys,
    check_coords,
    coarsen_keys,
    pack_keys,
    unpack_keys,
)

KINDS = ("subm", "down", "up")

#: cache key of a kernel map: (kind, in_stride, out_stride, kernel_size, dilation)
MapKey = tuple[str, int, int, int, int]
#: padding (in cells of the level) of dense neighbour tables: offsets up to this radius
#: (e.g. kernel 5 with dilation 2) are looked up in the table, larger ones by binary search
DENSE_PAD = 4
#: a level gets a dense neighbour table when its padded box has at most this many cells a
#: voxel (or at most 2**20 cells); :attr:`CoordinateManager.dense_cells_per_voxel`
DENSE_CELLS_PER_VOXEL = 64
#: set to False to always use binary search (``torch.searchsorted``) for kernel maps
USE_DENSE_INDEX = True


def _check_stride(stride: int, what: str = "stride") -> int:
    if isinstance(stride, bool) or not isinstance(stride, int):
        raise TypeError(f"{what} must be an int, got {type(stride).__name__}")
    if stride < 1 or stride & (stride - 1) or stride > MAX_STRIDE:
        raise ValueError(f"{what} must be a power of two in [1, {MAX_STRIDE}], got {stride}")
    return stride


class _Level:
    """Coordinates of one tensor stride: keys in row order, sorted keys, sort permutation."""

    __slots__ = (
        "stride",
        "keys",
        "sorted_keys",
        "perm",
        "coords",
        "parent",
        "dense",
        "dense_planned",
    )

    def __init__(
        self,
        stride: int,
        keys: Tensor,
        sorted_keys: Tensor,
        perm: Tensor | None,
        coords: Tensor | None = None,
    ) -> None:
        self.stride = stride
        self.keys = keys  # (N,) int64, row order
        self.sorted_keys = sorted_keys  # (N,) int64 ascending
        self.perm = perm  # (N,) int64 rows of sorted keys, None = identity
        self.coords = coords  # (N, 4) int, decoded lazily for derived levels
        self.parent: Tensor | None = None  # (N,) int64 row in level 2*stride
        self.dense: DenseGridIndex | None = None
        self.dense_planned = False

    @property
    def n(self) -> int:
        return int(self.keys.numel())


class CoordinateManager:
    """Coordinates of every stride derived from one input, plus cached kernel maps.

    Args:
        coords: (N, 4) integer ``[batch, x, y, z]`` of the base level (unique rows).
        stride: tensor stride of the base level (power of two); coordinates must be
            multiples of it.
        check: validate range / multiples / uniqueness (synchronises a CUDA device once).
    """

    def __init__(self, coords: Tensor, stride: int = 1, check: bool = True) -> None:
        _check_stride(stride)
        if check:
            check_coords(coords)
            if stride > 1 and coords.shape[0] and bool((coords[:, 1:] % stride != 0).any()):
                raise ValueError(
                    f"coords: spatial coordinates must be multiples of the tensor stride {stride}"
                )
        self.device = coords.device
        self.coord_dtype = coords.dtype
        self.base_stride = stride
        keys = pack_keys(coords, check=False)
        sorted_keys, order = torch.sort(keys)
        perm: Tensor | None = order
        if check and keys.numel() > 1:
            dup = torch.nonzero(sorted_keys[1:] == sorted_keys[:-1]).squeeze(1)
            if dup.numel():
                first = unpack_keys(sorted_keys[dup[:1]])[0].tolist()
                raise ValueError(
                    f"coords: {dup.numel()} duplicated rows, e.g. [batch, x, y, z] = {first}; "
                    "voxelize (unique) the coordinates before building a SparseTensor"
                )
        if keys.numel() and bool(
            torch.equal(order, torch.arange(keys.numel(), device=keys.device))
        ):
            perm = None
        self._init_state(_Level(stride, keys, sorted_keys, perm, coords))

    def _init_state(self, base: _Level, origin_inverse: Tensor | None = None) -> None:
        self._levels: dict[int, _Level] = {base.stride: base}
        #: for a manager made by :meth:`SparseTensor.sorted`: (N,) int64 row of the sorted
        #: tensor holding each row of the original tensor (None otherwise)
        self.origin_inverse = origin_inverse
        self._maps: dict[MapKey, KernelMap] = {}
        self._batch_size: int | None = None
        #: dense-table threshold of this manager's levels (set before the first kernel map;
        #: prediction raises it: one table lookup instead of a binary search per query, for
        #: up to 512 bytes of table a voxel)
        self.dense_cells_per_voxel = DENSE_CELLS_PER_VOXEL
        #: every kernel map actually built, as its cache key (kind, in_s, out_s, ks, dil)
        self.build_log: list[MapKey] = []

    @classmethod
    def _sorted_copy(cls, other: CoordinateManager) -> CoordinateManager:
        """Manager of ``other``'s base coordinates reordered to ascending keys
        (no re-validation)."""
        lvl = other._levels[other.base_stride]
        perm = lvl.perm
        if perm is None:
            raise ValueError("_sorted_copy: the base level is already sorted")
        mgr = cls.__new__(cls)
        mgr.device, mgr.coord_dtype, mgr.base_stride = (
            other.device,
            other.coord_dtype,
            other.base_stride,
        )
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=perm.device)
        coords = other.coords(other.base_stride).index_select(0, perm)
        mgr._init_state(
            _Level(other.base_stride, lvl.sorted_keys, lvl.sorted_keys, None, coords), inv
        )
        mgr._batch_size = other._batch_size
        mgr.dense_cells_per_voxel = other.dense_cells_per_voxel
        return mgr

    def base_perm(self) -> Tensor | None:
        """(N,) int64 base-level rows in ascending key order, or None when already sorted."""
        return self._levels[self.base_stride].perm

    # ----------------------------------------------------------------- levels
    @property
    def strides(self) -> list[int]:
        """Strides whose coordinates exist so far (ascending)."""
        return sorted(self._levels)

    def has_stride(self, stride: int) -> bool:
        """Whether coordinates at ``stride`` exist (without creating them)."""
        return stride in self._levels

    def _level(self, stride: int, create: bool = True) -> _Level:
        lvl = self._levels.get(stride)
        if lvl is not None:
            return lvl
        _check_stride(stride)
        if not create or stride < self.base_stride:
            raise ValueError(
                f"no coordinates at tensor stride {stride} in this manager (available: "
                f"{self.strides}); a transposed conv can only go back to a stride its input "
                "was derived from"
            )
        finer = self._level(stride // 2, create=True)
        coarse = coarsen_keys(finer.keys, stride)
        uniq, inverse = torch.unique(coarse, sorted=True, return_inverse=True)
        finer.parent = inverse
        lvl = _Level(stride, uniq, uniq, None)
        self._levels[stride] = lvl
        return lvl

    def coords(self, stride: int) -> Tensor:
        """(N_s, 4) ``[batch, x, y, z]`` at ``stride`` (created from the level below if needed)."""
        lvl = self._level(stride)
        if lvl.coords is None:
            lvl.coords = unpack_keys(lvl.keys, self.coord_dtype)
        return lvl.coords

    def num_rows(self, stride: int) -> int:
        """Number of voxels at ``stride`` (created if needed)."""
        return self._level(stride).n

    def keys(self, stride: int) -> Tensor:
        """(N_s,) int64 keys at ``stride`` in row order."""
        return self._level(stride).keys

    def batch_indices(self, stride: int) -> Tensor:
        """(N_s,) int64 batch index of every row at ``stride``."""
        return batch_of_keys(self._level(stride).keys)

    @property
    def batch_size(self) -> int:
        """1 + the largest batch index of the base level (0 when empty)."""
        if self._batch_size is None:
            lvl = self._levels[self.base_stride]
            self._batch_size = int(batch_of_keys(lvl.sorted_keys[-1:]).item()) + 1 if lvl.n else 0
        return self._batch_size

    @property
    def is_sorted(self) -> bool:
        """Whether the base level's rows are in ascending key order (``(batch, x, y, z)``
        lexicographic); the engine's gathers / scatters are most cache friendly then."""
        return self._levels[self.base_stride].perm is None

    def parent(self, stride: int) -> Tensor:
        """(N_s,) int64 row at stride ``2*stride`` of every row at ``stride``."""
        self._level(2 * stride)
        p = self._levels[stride].parent
        assert p is not None
        return p

    # ----------------------------------------------------------- kernel maps
    def kernel_map(
        self,
        in_stride: int,
        out_stride: int,
        kernel_size: int,
        dilation: int = 1,
        kind: str = "subm",
    ) -> KernelMap:
        """Cached kernel map.

        kind ``"subm"``: ``in_stride == out_stride``, odd kernel, output coords = input coords.
        kind ``"down"``: ``out_stride == 2 * in_stride`` (strided conv, creates coarse coords).
        kind ``"up"``: ``in_stride == 2 * out_stride``; the transposed ``"down"`` map onto the
        existing fine coordinates at ``out_stride``.
        """
        key = (kind, int(in_stride), int(out_stride), int(kernel_size), int(dilation))
        got = self._maps.get(key)
        if got is not None:
            return got
        if kind == "subm":
            if in_stride != out_stride:
                raise ValueError(
                    f"subm kernel map needs in_stride == out_stride, got {in_stride}, {out_stride}"
                )
            lvl = self._level(in_stride)
            index = self._neighbor_index(in_stride, (kernel_size // 2) * dilation)
            base = (
                lvl.keys
                if isinstance(index, SortedKeyIndex)
                else index.encode(self.coords(in_stride))
            )
            km = build_submanifold_map(index, base, lvl.n, in_stride, kernel_size, dilation)
            self.build_log.append(key)
        elif kind == "down":
            if out_stride != 2 * in_stride:
                raise ValueError(
                    "down kernel map needs out_stride == 2 * in_stride, "
                    f"got {in_stride}, {out_stride}"
                )
            fine = self._level(in_stride)
            coarse = self._level(out_stride)
            assert fine.parent is not None
            index, base = None, None
            if not (kernel_size == 2 and dilation == 1):
                reach = (
                    (kernel_size - 1) * dilation
                    if kernel_size % 2 == 0
                    else (kernel_size // 2) * dilation
                )
                index = self._neighbor_index(in_stride, reach + 1)
                base = (
                    coarse.keys
                    if isinstance(index, SortedKeyIndex)
                    else index.encode(self.coords(out_stride))
                )
            km = build_downsample_map(
                fine.keys, fine.parent, coarse.n, in_stride, kernel_size, dilation, index, base
            )
            self.build_log.append(key)
        elif kind == "up":
            if in_stride != 2 * out_stride:
                raise ValueError(
                    "up kernel map needs in_stride == 2 * out_stride, "
                    f"got {in_stride}, {out_stride}"
                )
            if out_stride not in self._levels:
                self._level(out_stride, create=False)  # raises a clear ValueError
            km = self.kernel_map(out_stride, in_stride, kernel_size, dilation, "down").transposed()
        else:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self._maps[key] = km
        return km

    def _neighbor_index(self, stride: int, radius: int) -> SortedKeyIndex | DenseGridIndex:
        """Lookup structure of a level for offsets up to ``radius`` cells: a dense table when
        the level's bounding box is small (built once per level), else binary search."""
        lvl = self._level(stride)
        if USE_DENSE_INDEX and not lvl.dense_planned:
            lvl.dense = DenseGridIndex.plan(
                self.coords(stride), stride, DENSE_PAD, self.dense_cells_per_voxel
            )
            lvl.dense_planned = True
        if USE_DENSE_INDEX and lvl.dense is not None and radius <= lvl.dense.max_radius:
            return lvl.dense
        return SortedKeyIndex(lvl.sorted_keys, lvl.perm)

    def clear_kernel_maps(self) -> None:
        """Drop cached kernel maps (coordinates are kept)."""
        self._maps.clear()

    def __repr__(self) -> str:
        lv = ", ".join(f"s{s}:{self._levels[s].n}" for s in self.strides)
        return f"CoordinateManager(device={self.device}, levels=[{lv}], maps={len(self._maps)})"


class SparseTensor:
    """Features on sparse voxels.

    Args:
        coords: (M, 4) integer ``[batch, x, y, z]``; unique rows; at ``stride`` s the
            spatial coordinates are multiples of s.
        feats: (M, C) floating features, same device as ``coords``.
        stride: tensor stride (power of two).
        manager: an existing :class:`CoordinateManager` that already holds exactly these
            coordinates at ``stride`` (then no keys are rebuilt); None builds a new one.
    """

    __slots__ = ("feats", "stride", "manager")

    def __init__(
        self,
        coords: Tensor,
        feats: Tensor,
        stride: int = 1,
        manager: CoordinateManager | None = None,
    ) -> None:
        if not isinstance(feats, Tensor):
            raise TypeError(f"feats: expected a torch.Tensor, got {type(feats).__name__}")
        if feats.dim() != 2:
            raise ValueError(f"feats: expected shape (M, C), got {tuple(feats.shape)}")
        if not feats.dtype.is_floating_point:
            raise ValueError(f"feats: expected a floating dtype, got {feats.dtype}")
        if not isinstance(coords, Tensor) or coords.dim() != 2 or coords.shape[1] != 4:
            shape = tuple(coords.shape) if isinstance(coords, Tensor) else type(coords).__name__
            raise ValueError(f"coords: expected an (M, 4) [batch, x, y, z] tensor, got {shape}")
        if coords.shape[0] != feats.shape[0]:
            raise ValueError(f"coords has {coords.shape[0]} rows but feats has {feats.shape[0]}")
        if coords.device != feats.device:
            raise ValueError(f"coords on {coords.device} but feats on {feats.device}")
        _check_stride(stride)
        if manager is None:
            manager = CoordinateManager(coords, stride)
        else:
            if manager.device != coords.device:
                raise ValueError(f"manager lives on {manager.device}, coords on {coords.device}")
            mine = manager.coords(stride)
            if mine is not coords and (
                mine.shape != coords.shape or not torch.equal(mine.long(), coords.long())
            ):
                raise ValueError(
                    f"coords differ from the manager's coordinates at stride {stride}; "
                    "pass manager=None to build a new coordinate manager"
                )
        self.feats = feats
        self.stride = stride
        self.manager = manager

    @classmethod
    def _derived(cls, feats: Tensor, stride: int, manager: CoordinateManager) -> SparseTensor:
        """Tensor on the manager's coordinates at ``stride`` without any validation."""
        obj = cls.__new__(cls)
        obj.feats = feats
        obj.stride = stride
        obj.manager = manager
        return obj

    @classmethod
    def from_scenes(
        cls, coords_list: Sequence[Tensor], feats_list: Sequence[Tensor]
    ) -> SparseTensor:
        """Batch scenes: ``coords_list[i]`` (N_i, 3) integer voxels, ``feats_list[i]`` (N_i, C).

        Scene ``i`` gets batch index ``i``; returns a stride-1 tensor with int32 coords.
        """
        if len(coords_list) != len(feats_list):
            raise ValueError(
                f"{len(coords_list)} coordinate arrays but {len(feats_list)} feature arrays"
            )
        if not coords_list:
            raise ValueError("from_scenes needs at least one scene")
        cs, fs = [], []
        for i, (c, f) in enumerate(zip(coords_list, feats_list)):
            if c.dim() != 2 or c.shape[1] != 3 or c.dtype.is_floating_point:
                raise ValueError(
                    f"scene {i}: coords must be (N, 3) integer, got {tuple(c.shape)} {c.dtype}"
                )
            if f.dim() != 2 or f.shape[0] != c.shape[0]:
                raise ValueError(
                    f"scene {i}: feats must be (N={c.shape[0]}, C), got {tuple(f.shape)}"
                )
            if f.shape[1] != feats_list[0].shape[1]:
                raise ValueError(
                    f"scene {i}: {f.shape[1]} feature channels, "
                    f"scene 0 has {feats_list[0].shape[1]}"
                )
            b = torch.full((c.shape[0], 1), i, dtype=torch.int32, device=c.device)
            cs.append(torch.cat([b, c.to(torch.int32)], dim=1))
            fs.append(f)
        return cls(torch.cat(cs), torch.cat(fs))

    # ------------------------------------------------------------- properties
    @property
    def coords(self) -> Tensor:
        """(M, 4) integer ``[batch, x, y, z]`` (multiples of ``stride``)."""
        return self.manager.coords(self.stride)

    @property
    def F(self) -> Tensor:  # noqa: N802 - MinkowskiEngine-style alias
        """Alias of :attr:`feats`."""
        return self.feats

    @property
    def C(self) -> Tensor:  # noqa: N802
        """Alias of :attr:`coords`."""
        return self.coords

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    @property
    def shape(self) -> torch.Size:
        """(M, C) of the features."""
        return self.feats.shape

    @property
    def batch_size(self) -> int:
        """Number of batch entries (1 + largest batch index of the input)."""
        return self.manager.batch_size

    @property
    def batch_indices(self) -> Tensor:
        """(M,) int64 batch index of every row."""
        return self.manager.batch_indices(self.stride)

    def __len__(self) -> int:
        return int(self.feats.shape[0])

    def __repr__(self) -> str:
        return (
            f"SparseTensor(M={self.feats.shape[0]}, C={self.feats.shape[1]}, stride={self.stride}, "
            f"dtype={self.feats.dtype}, device={self.feats.device})"
        )

    # ---------------------------------------------------------------- methods
    def replace_feats(self, feats: Tensor) -> SparseTensor:
        """Same coordinates / stride / manager, new (M, C') features."""
        if feats.dim() != 2 or feats.shape[0] != self.feats.shape[0]:
            raise ValueError(
                f"replace_feats: expected ({self.feats.shape[0]}, C) features, "
                f"got {tuple(feats.shape)}"
            )
        return SparseTensor._derived(feats, self.stride, self.manager)

    def same_coords(self, other: SparseTensor) -> bool:
        """Whether ``other`` lives on the very same coordinates (same manager and stride)."""
        return self.manager is other.manager and self.stride == other.stride

    def __add__(self, other: SparseTensor | Tensor | float) -> SparseTensor:
        if isinstance(other, SparseTensor):
            if not self.same_coords(other):
                raise ValueError(
                    "adding SparseTensors needs the same coordinates (same manager and stride)"
                )
            return self.replace_feats(self.feats + other.feats)
        return self.replace_feats(self.feats + other)

    def to(self, device: torch.device | str) -> SparseTensor:
        """Copy to ``device`` (a new coordinate manager there; its kernel maps are rebuilt
        on use)."""
        device = torch.device(device)
        if device == self.feats.device:
            return self
        coords = self.coords.to(device)
        return SparseTensor(
            coords,
            self.feats.to(device),
            self.stride,
            CoordinateManager(coords, self.stride, check=False),
        )

    def sorted(self) -> SparseTensor:
        """Rows reordered to ascending key order (``(batch, x, y, z)`` lexicographic).

        Returns ``self`` when the rows are already sorted (or the tensor is not at the base
        stride of its manager). Otherwise a new tensor on a new manager whose
        ``origin_inverse`` maps every original row to its sorted row, so that
        :meth:`unsort_feats` restores the original order. The permutation is differentiable.
        """
        m = self.manager
        if self.stride != m.base_stride or m.is_sorted:
            return self
        perm = m.base_perm()
        assert perm is not None
        mgr = CoordinateManager._sorted_copy(m)
        return SparseTensor._derived(self.feats.index_select(0, perm), self.stride, mgr)

    def unsort_feats(self, feats: Tensor | None = None) -> Tensor:
        """Features (default: this tensor's) at the base stride, back in the row order of
        the tensor :meth:`sorted` was called on (identity for an unsorted-origin manager)."""
        f = self.feats if feats is None else feats
        inv = self.manager.origin_inverse
        if inv is None:
            return f
        if self.stride != self.manager.base_stride:
            raise ValueError(
                f"unsort_feats: tensor is at stride {self.stride}, "
                f"base stride is {self.manager.base_stride}"
            )
        return f.index_select(0, inv)

    def detach(self) -> SparseTensor:
        """Features detached from the graph, same coordinates."""
        return self.replace_feats(self.feats.detach())

    def dense(
        self, shape: Sequence[int] | None = None, min_coord: Sequence[int] | Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Scatter into a dense grid.

        Returns ``(grid (B, C, X, Y, Z), min_coord (3,) int64)``. Voxel ``c`` lands at grid
        index ``(c - min_coord) // stride``. ``min_coord`` defaults to the per-axis minimum
        rounded down to a multiple of ``stride``; it must be congruent to the coordinates
        modulo ``stride``. ``shape`` defaults to the smallest grid holding every voxel.
        Differentiable w.r.t. the features.
        """
        c = self.coords.long()
        s = self.stride
        sp = c[:, 1:]
        if min_coord is None:
            if sp.shape[0] == 0:
                mc = torch.zeros(3, dtype=torch.int64, device=c.device)
            else:
                mc = torch.div(sp.min(0).values, s, rounding_mode="floor") * s
        else:
            mc = torch.as_tensor(min_coord, dtype=torch.int64, device=c.device).reshape(3)
        rel = sp - mc
        if bool((rel < 0).any()):
            raise ValueError(f"dense: min_coord {mc.tolist()} is above some coordinates")
        if bool((rel % s != 0).any()):
            raise ValueError(
                f"dense: min_coord {mc.tolist()} is not congruent to the coordinates "
                f"modulo stride {s}"
            )
        idx = rel // s
        if shape is None:
            shp = (idx.max(0).values + 1).tolist() if idx.shape[0] else [0, 0, 0]
        else:
            shp = [int(v) for v in shape]
            if len(shp) != 3:
                raise ValueError(f"dense: shape must have 3 entries, got {shp}")
            if idx.shape[0] and bool((idx >= torch.tensor(shp, device=idx.device)).any()):
                raise ValueError(f"dense: shape {shp} too small for the coordinates")
        B = self.batch_size
        grid = self.feats.new_zeros((B, *shp, self.feats.shape[1]))
        grid = grid.index_put((c[:, 0], idx[:, 0], idx[:, 1], idx[:, 2]), self.feats)
        return grid.permute(0, 4, 1, 2, 3).contiguous(), mc
