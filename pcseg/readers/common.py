"""Helpers shared by the raw-dataset readers: the reader interface (:class:`Reader`) and the
base of their typed options (:class:`ReaderOptions`), warnings, split expressions, name
checks, the read-time point check (:func:`check_points`), feature units
(:func:`normalise_features`), the per-channel normalisation fitted on training files
(:class:`FeatureNormalisation`), a ground surface for height above ground
(:class:`GroundAccumulator`) and the voxel density check (:func:`isolated_voxel_share`)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from pcseg.utils.options import options_error_message

if TYPE_CHECKING:
    from pcseg.data.scene import Scene

SCENE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class DataWarning(UserWarning):
    """Raised (as a warning) for damaged or unexpected raw data that a reader survived."""


def warn(message: str) -> None:
    """Emit a :class:`DataWarning` attributed to the reader's caller."""
    warnings.warn(message, DataWarning, stacklevel=3)


def check_scene_name(name: str) -> str:
    """Return ``name`` if it is a file-stem safe scene id, else raise ``ValueError``."""
    if not SCENE_NAME_RE.match(name) or name in {".", ".."}:
        raise ValueError(
            f"scene id {name!r} is not file-stem safe (expected letters, digits, '_', '-', '.')"
        )
    return name


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded integers numerically (``office_2`` < ``office_10``)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def expand_split(split: str, splits: dict[str, tuple[str, ...]], what: str) -> tuple[str, ...]:
    """Resolve a split expression to a tuple of units (areas / sequences / list files).

    ``split`` is a key of ``splits`` or several keys joined with ``+`` (``"Area_1+Area_2"``);
    duplicates are removed, first occurrence kept. Raises ``ValueError`` naming the
    unknown part and the valid names.
    """
    out: list[str] = []
    for part in split.split("+"):
        part = part.strip()
        if part not in splits:
            raise ValueError(
                f"unknown {what} split {part!r} (in {split!r}); expected one of "
                f"{sorted(splits, key=natural_key)} or several joined with '+'"
            )
        for unit in splits[part]:
            if unit not in out:
                out.append(unit)
    return tuple(out)


def first_existing(candidates: Iterable[Path]) -> Path | None:
    """First path of ``candidates`` that exists, else ``None``."""
    for c in candidates:
        if c.exists():
            return c
    return None


# --------------------------------------------------------------------------- point checks

#: What a reader does with points whose coordinates (or features) are NaN / inf:
#: ``refuse`` (default) raises ``ValueError`` naming the file, the count and the first
#: indices, so the scene fails and is left out of the processed folder; ``drop`` removes
#: those points with a :class:`DataWarning` saying the same, and keeps the rest.
Nonfinite = Literal["refuse", "drop"]
NONFINITE_POLICIES: tuple[str, ...] = get_args(Nonfinite)


class ReaderOptions(BaseModel):
    """Base of the per-reader option models (``<reader>.Options``): typed, frozen, unknown
    names rejected. Every reader has ``nonfinite`` (see :data:`NONFINITE_POLICIES`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: options whose value here fails a scene rather than changing what it holds: a rerun
    #: that leaves it (``--nonfinite drop`` after a refused file) keeps the scenes written
    #: (pcseg.readers.prepare.existing_meta)
    FAILING_VALUES: ClassVar[dict[str, str]] = {"nonfinite": "refuse"}

    #: NaN / inf points: ``refuse`` (the scene fails) or ``drop`` (removed with a warning)
    nonfinite: Nonfinite = "refuse"


class Reader(Protocol):
    """What :func:`pcseg.readers.prepare.prepare_dataset` reads through: a reader module
    (``s3dis``, ``scannet``, ``semantickitti``) or object (:class:`pcseg.readers.custom.
    CustomReader`). ``options`` is an instance of the reader's ``Options`` (None: its
    defaults)."""

    @property
    def SPLITS(self) -> Mapping[str, Any]: ...  # noqa: N802 -- the modules' constant

    @property
    def Options(self) -> type[ReaderOptions]: ...  # noqa: N802 -- the modules' class

    def list_scenes(self, raw: Path, split: str, options: Any = None) -> list[str]: ...

    def read_scene(self, raw: Path, scene_id: str, options: Any = None) -> Scene: ...


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def validate_options(cls: type[OptionsT], who: str, values: Mapping[str, Any]) -> OptionsT:
    """``cls`` validated from ``values``; ``ValueError`` naming ``who`` (the reader), each bad
    option and what was expected (an unknown one with a did-you-mean and the accepted ones)."""
    try:
        return cls.model_validate(dict(values))
    except ValidationError as e:
        raise ValueError(options_error_message(cls, who, e)) from None


def check_points(
    coords: np.ndarray,
    source: str | Path,
    *,
    nonfinite: str = "refuse",
    feats: np.ndarray | None = None,
    positions: np.ndarray | None = None,
    position_name: str = "point index",
    max_listed: int = 5,
) -> np.ndarray | None:
    """The one read-time check of a reader's points (every reader calls it).

    Args:
        coords: (N, 3) coordinates in the file's own point order.
        source: the file the points come from (named in every message).
        nonfinite: :data:`NONFINITE_POLICIES` (``pcseg prepare --nonfinite``).
        feats: optional (N, C) per-point features checked together with ``coords``.
        positions: optional (N,) position of each row in the file (e.g. 1-based line
            numbers of a text file) reported instead of the 0-based row index.
        position_name: what ``positions`` are called in messages ("line", ...).

    Returns None when every point is finite, else the (N,) bool mask of points to keep
    (``nonfinite='drop'``). Raises ``ValueError`` naming ``source`` for an empty cloud
    (0 points, or none left after dropping), a wrong shape, or (``refuse``) non-finite
    values: count, first indices in file order, and the option that drops them.
    """
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {list(NONFINITE_POLICIES)}, got {nonfinite!r}")
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"{source}: coordinates must be (N, 3), got shape {coords.shape}")
    n = len(coords)
    if n == 0:
        raise ValueError(f"{source}: no points (empty scan); expected at least one point")
    bad = ~np.isfinite(coords).all(axis=1)
    if feats is not None:
        f = np.asarray(feats)
        if len(f) != n:
            raise ValueError(f"{source}: {len(f)} feature rows for {n} points")
        if np.issubdtype(f.dtype, np.floating):
            bad |= ~np.isfinite(f.reshape(n, -1)).all(axis=1)
    if not bad.any():
        return None
    idx = np.flatnonzero(bad)
    pos = idx if positions is None else np.asarray(positions)[idx]
    shown = ", ".join(str(int(p)) for p in pos[:max_listed])
    shown += ", ..." if len(idx) > max_listed else ""
    what = (
        f"{source}: {len(idx)} of {n} points have non-finite (NaN/inf) coordinates"
        f"{' or features' if feats is not None else ''} (first at {position_name} {shown})"
    )
    if nonfinite == "refuse":
        raise ValueError(
            f"{what}; expected finite numbers (`pcseg prepare --nonfinite drop` drops such points)"
        )
    if len(idx) == n:
        raise ValueError(f"{what}: no point left after dropping them")
    warn(f"{what}; dropped (--nonfinite drop)")
    return ~bad


#: Scales a colour / intensity field can be stored in: 0-1, 8-bit 0-255, 16-bit 0-65535.
FEATURE_SCALES: tuple[float, ...] = (1.0, 255.0, 65535.0)


def normalise_features(
    values: np.ndarray,
    source: str | Path,
    *,
    kind: str = "colour",
    expected: float = 255.0,
    hi: float | None = None,
) -> np.ndarray:
    """Detect the range of a colour or intensity field and return it as float32 in [0, 1].

    The one place every reader (and any future own-scan reader: LAS, PLY, PCD) brings
    colour and intensity to a common unit. Integer fields are divided by 255 when they
    fit 8 bits (uint8 always), else by 65535. Float fields: the smallest of
    :data:`FEATURE_SCALES` that holds the maximum (values that are all whole numbers
    <= 1 are taken as ``expected``, e.g. a very dark 0-255 scan). When the detected scale
    differs from ``expected`` (what the format documents: 255 for S3DIS text and PLY
    ``uchar`` colours, 1 for PLY float colours and KITTI remission) a
    :class:`DataWarning` notes it. Raises ``ValueError`` naming ``source`` for negative
    values or values above 65535 (expected 0-1, 0-255 or 0-65535). ``hi``: the field's
    maximum over the whole file when ``values`` is one chunk of it (a file read in chunks is
    then scaled exactly as when read whole).
    """
    v = np.asarray(values)
    if v.size == 0:
        return v.astype(np.float32)
    lo = float(np.min(v))
    hi = float(np.max(v)) if hi is None else max(float(hi), float(np.max(v)))
    if lo < 0 or hi > FEATURE_SCALES[-1]:
        raise ValueError(
            f"{source}: {kind} values range {lo:g}..{hi:g}; expected 0-1, 0-255 or 0-65535"
        )
    if np.issubdtype(v.dtype, np.integer):
        scale = 255.0 if (v.dtype.itemsize == 1 or hi <= 255) else 65535.0
    elif hi <= 1.0 and np.all(v == np.round(v)):
        scale = expected
    else:
        scale = next(s for s in FEATURE_SCALES if hi <= s)
    if scale != expected:
        warn(
            f"{source}: {kind} stored as {v.dtype} in 0-{scale:g} (range {lo:g}..{hi:g}), "
            f"expected 0-{expected:g}; divided by {scale:g} to 0-1"
        )
    return (v.astype(np.float64) / scale).astype(np.float32)


class SplitError(ValueError):
    """A split that exists but is unusable (e.g. a split list none of whose lines is a
    scene): always an error, never a split silently skipped."""


# --------------------------------------------------------------------------- fitted features
#: percentiles a scalar feature's normalisation is fitted to (robust to outliers)
NORM_PERCENTILES = (1.0, 99.0)
#: a normalised value above this (about 4x the 99th percentile for a field starting at 0)
#: or below ``-(NORM_FAR - 1)`` is "far outside the training range"
NORM_FAR = 4.0


@dataclass(frozen=True)
class FeatureNormalisation:
    """One affine normalisation per input channel, fitted once on the training files and
    applied unchanged at prediction: ``(raw - lo) / (hi - lo)`` (``lo`` / ``hi`` the
    :data:`NORM_PERCENTILES` of the training values, or a fixed range for a channel with
    a documented unit, e.g. (0, 1) for colours already in [0, 1])."""

    channels: tuple[str, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """(N, C) float32 normalised channels of ``raw`` (N, C) float64."""
        lo = np.asarray(self.lo, dtype=np.float64)
        span = np.asarray(self.hi, dtype=np.float64) - lo
        return ((np.asarray(raw, dtype=np.float64) - lo) / span).astype(np.float32)

    def far_outside(self, normalised: np.ndarray) -> dict[str, float]:
        """{channel: share of points far outside the training range (:data:`NORM_FAR`)}
        of ``normalised`` (N, C), for the channels where the share is above zero."""
        v = np.asarray(normalised, dtype=np.float64)
        far = (v > NORM_FAR) | (v < -(NORM_FAR - 1.0))
        share = far.mean(axis=0) if len(v) else np.zeros(len(self.channels))
        return {c: float(s) for c, s in zip(self.channels, share) if s > 0}

    def to_dict(self) -> dict[str, Any]:
        """JSON form (kept in ``meta.json`` and the checkpoint)."""
        return {"channels": list(self.channels), "lo": list(self.lo), "hi": list(self.hi)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureNormalisation:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(d["channels"]), tuple(map(float, d["lo"])), tuple(map(float, d["hi"])))


def fit_normalisation(
    channels: Sequence[str], samples: np.ndarray, fixed: Mapping[str, tuple[float, float]]
) -> FeatureNormalisation:
    """Fit :class:`FeatureNormalisation` to ``samples`` (M, C) raw training values:
    ``lo`` / ``hi`` = the :data:`NORM_PERCENTILES` per channel; when they are equal (a
    channel that is mostly one value, e.g. ``number_of_returns`` of single-return data)
    the channel's min / max, and ``hi = lo + 1`` for a constant channel. Channels in
    ``fixed`` ({name: (lo, hi)}) take those values (colours: (0, 1))."""
    s = np.asarray(samples, dtype=np.float64).reshape(len(samples), len(channels))
    lo_l, hi_l = [], []
    for i, c in enumerate(channels):
        if c in fixed:
            lo, hi = fixed[c]
        elif not len(s):
            lo, hi = 0.0, 1.0
        else:
            lo, hi = (float(x) for x in np.percentile(s[:, i], NORM_PERCENTILES))
            if hi <= lo:
                lo, hi = float(s[:, i].min()), float(s[:, i].max())
            if hi <= lo:
                hi = lo + 1.0
        lo_l.append(float(lo))
        hi_l.append(float(hi))
    return FeatureNormalisation(tuple(channels), tuple(lo_l), tuple(hi_l))


# --------------------------------------------------------------------------- ground surface
#: ASPRS ground; the noise codes a lowest-point ground estimate leaves out (7 low point,
#: 18 high noise)
GROUND_CODE = 2
NOISE_CODES = (7, 18)
#: cell side (metres) of the ground grid
GROUND_CELL_M = 2.0
#: window (metres) of the morphological opening of the lowest-point estimate: objects
#: narrower than this (buildings, trees) are removed from the ground surface
GROUND_WINDOW_M = 20.0


@dataclass
class GroundSurface:
    """A ground height grid: ``z[i, j]`` at the centre of cell (``i0 + i``, ``j0 + j``)
    of side ``cell`` metres (absolute coordinates), interpolated bilinearly
    (:meth:`height_above`); ``method`` says where it came from."""

    i0: int
    j0: int
    cell: float
    z: np.ndarray
    method: str

    def height_above(self, xyz: np.ndarray) -> np.ndarray:
        """(N,) float64 height of the points ``xyz`` (N, 3) absolute metres above the
        surface (bilinear between cell centres, the edge value beyond the grid)."""
        from scipy import ndimage

        xyz = np.asarray(xyz, dtype=np.float64)
        u = xyz[:, 0] / self.cell - 0.5 - self.i0
        v = xyz[:, 1] / self.cell - 0.5 - self.j0
        g = ndimage.map_coordinates(self.z, [u, v], order=1, mode="nearest")
        return xyz[:, 2] - g


class GroundAccumulator:
    """Builds a :class:`GroundSurface` from points added chunk by chunk (the same surface
    whether a file is added whole or in chunks): per :data:`GROUND_CELL_M` cell, the mean
    z of its ground points (ASPRS :data:`GROUND_CODE`) and the lowest z of its other
    non-noise points.

    :meth:`surface`: when the file has ground points, the cells' mean ground z (method
    ``'ground class 2'``); else a simple ground estimate: the lowest point per cell, then a
    morphological opening over :data:`GROUND_WINDOW_M` (removes buildings and trees
    narrower than that; method ``'lowest point per cell'``; on a plane it is exact farther
    than half a window from the grid's border, nearer the border a slope s lowers it by up
    to s * window / 2). Cells without points take the nearest cell's value.
    """

    def __init__(self, cell: float = GROUND_CELL_M) -> None:
        self.cell = float(cell)
        self.keys: np.ndarray = np.zeros(0, dtype=np.int64)
        self.low: np.ndarray = np.zeros(0)
        self.gsum: np.ndarray = np.zeros(0)
        self.gcount: np.ndarray = np.zeros(0, dtype=np.int64)

    def add(self, xyz: np.ndarray, classification: np.ndarray | None = None) -> None:
        """Add points ``xyz`` (N, 3) absolute metres with their ASPRS codes (or None)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        ij = np.floor(xyz[:, :2] / self.cell).astype(np.int64)
        keys = (ij[:, 0] << 32) + (ij[:, 1] & 0xFFFFFFFF)
        z = xyz[:, 2]
        ok = np.ones(len(z), dtype=bool)
        ground = np.zeros(len(z), dtype=bool)
        if classification is not None:
            c = np.asarray(classification)
            ok = ~np.isin(c, NOISE_CODES)
            ground = c == GROUND_CODE
        all_keys = np.concatenate([self.keys, keys])
        u, inv = np.unique(all_keys, return_inverse=True)
        low = np.full(len(u), np.inf)
        np.minimum.at(low, inv[: len(self.keys)], self.low)
        np.minimum.at(low, inv[len(self.keys) :][ok], z[ok])
        gsum = np.bincount(inv[: len(self.keys)], self.gsum, len(u)).astype(np.float64)
        gsum += np.bincount(inv[len(self.keys) :][ground], z[ground], len(u))
        gcount = np.bincount(inv[: len(self.keys)], self.gcount, len(u)).astype(np.int64)
        gcount += np.bincount(inv[len(self.keys) :][ground], minlength=len(u))
        self.keys, self.low, self.gsum = u, low, gsum
        self.gcount = gcount

    def surface(self) -> GroundSurface:
        """The :class:`GroundSurface` of the points added (ValueError when none were)."""
        from scipy import ndimage

        if not len(self.keys):
            raise ValueError("ground surface: no points")
        i, j = self.keys >> 32, (self.keys << 32) >> 32
        i0, j0 = int(i.min()), int(j.min())
        shape = (int(i.max()) - i0 + 1, int(j.max()) - j0 + 1)
        grid = np.full(shape, np.nan)
        if self.gcount.sum() > 0:
            has = self.gcount > 0
            grid[i[has] - i0, j[has] - j0] = self.gsum[has] / self.gcount[has]
            method = f"ground class {GROUND_CODE}"
        else:
            has = np.isfinite(self.low)
            grid[i[has] - i0, j[has] - j0] = self.low[has]
            method = "lowest point per cell"
        empty = np.isnan(grid)
        if empty.all():
            raise ValueError("ground surface: every point is noise")
        if empty.any():
            idx = ndimage.distance_transform_edt(empty, return_distances=False, return_indices=True)
            grid = grid[tuple(idx)]
        if method == "lowest point per cell":
            w = max(1, int(round(GROUND_WINDOW_M / self.cell)))
            grid = ndimage.grey_opening(grid, size=(w, w), mode="nearest")
        return GroundSurface(i0, j0, self.cell, grid, method)


def ground_surface(xyz: np.ndarray, classification: np.ndarray | None = None) -> GroundSurface:
    """:class:`GroundAccumulator` of one whole file (``xyz`` absolute metres)."""
    acc = GroundAccumulator()
    acc.add(xyz, classification)
    return acc.surface()


# --------------------------------------------------------------------------- voxel density
def isolated_voxel_share(coords: np.ndarray, voxel_size: float) -> tuple[float, int]:
    """(share of occupied voxels with no occupied neighbour in their 3x3x3 kernel, number of
    occupied voxels) of the points ``coords`` (N, 3) metres at ``voxel_size``."""
    v = np.floor(np.asarray(coords, dtype=np.float64) / voxel_size).astype(np.int64)
    v -= v.min(axis=0)
    span = v.max(axis=0) + 3
    key = np.unique((v[:, 0] + 1) * span[1] * span[2] + (v[:, 1] + 1) * span[2] + (v[:, 2] + 1))
    has = np.zeros(len(key), dtype=bool)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                if dx == dy == dz == 0:
                    continue
                q = key + dx * span[1] * span[2] + dy * span[2] + dz
                pos = np.clip(np.searchsorted(key, q), 0, len(key) - 1)
                has |= key[pos] == q
    return float((~has).mean()), int(len(key))


def median_spacing(coords: np.ndarray, sample: int = 20000, seed: int = 0) -> float:
    """Median distance (metres) from a point to its nearest other point, over a seeded
    sample of at most ``sample`` points of ``coords`` (N, 3)."""
    from scipy.spatial import cKDTree

    c = np.asarray(coords, dtype=np.float64)
    if len(c) < 2:
        return 0.0
    tree = cKDTree(c)
    pick = np.random.default_rng(seed).choice(len(c), min(sample, len(c)), replace=False)
    d, _ = tree.query(c[pick], k=2)
    return float(np.median(d[:, 1]))
