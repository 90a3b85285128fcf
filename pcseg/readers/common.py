"""Helpers shared by the raw-dataset readers: the reader interface (:class:`Reader`) and the
base of their typed options (:class:`ReaderOptions`), warnings, split expressions, name
checks, the read-time point check (:func:`check_points`) and feature units
(:func:`normalise_features`)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, get_args

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
