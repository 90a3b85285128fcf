"""Your own scans: a folder of point-cloud files + ``CLASSES.yaml`` -> a processed folder.

``CLASSES.yaml`` (:class:`ClassesSpec`; unknown keys are errors)::

    names: [ground, low_vegetation, medium_vegetation, high_vegetation, building]  # index=position
    label_field: classification   # per-point field holding labels; omit for unlabelled scans
    map: {2: ground, 3: low_vegetation, 4: medium_vegetation, 5: high_vegetation, 6: building}
                                  # raw value -> class (name or index); omit when the raw
                                  # values are the class indices
    ignore: [0, 1, 7]             # raw values meaning "no label"
    features: [intensity, return_number, number_of_returns, height_above_ground]
                                  # fields fed to the network, one channel each (rgb: three):
                                  # [] (geometry only), rgb, intensity, return_number,
                                  # number_of_returns, any other field / extra dimension,
                                  # height_above_ground (computed, see below)
    voxel_size: 0.5               # metres (whatever the file's unit)
    units: foot                   # metre | foot | us_survey_foot: the coordinates' unit for
                                  # files without a CRS (a LAS WKT / GeoTIFF unit wins)
    splits: {train: "train/*", val: "val/*", test: "test/*"}  # globs under --raw (default: all
                                  # files in train)
    colors: {building: [220, 80, 60]}   # optional, for the viewer
    columns: [x, y, z, intensity, label]  # optional: names of headerless TXT/CSV columns

Files: every file under ``--raw`` whose suffix :mod:`pcseg.io` reads (PLY,
LAS/LAZ, PCD, NPY/NPZ, TXT/CSV, KITTI ``.bin``). Scene id = the path relative to ``--raw``
without its suffix, ``/`` written ``__`` (``tiles/a.las`` -> ``tiles__a``); one stem in two
formats in one folder keeps the format (``t.las``, ``t.ply`` -> ``t_las``, ``t_ply``).

Units (:func:`file_units`): a LAS file's horizontal and vertical units come from its OGC WKT
VLR or GeoTIFF keys (:func:`pcseg.io.las.las_crs`; ``UNIT["foot",0.3048]``, US survey
foot 1200/3937 m), other files' from ``units:`` (default metre). Coordinates are converted
to metres as they are read, so ``voxel_size``, radii, overlaps and heights are metres; the
files themselves are never rescaled (write-back keeps their own integer records). A vertical
unit that the CRS does not give is taken to be the horizontal one.

Coordinates: each file is shifted to its own origin (the centre of its bounding box,
rounded to whole metres) in float64 before it becomes float32; the origin is recorded in
the processed scene (``scenes/<id>.json`` ``extra.origin``), and ``pcseg predict`` writes
outputs from the file's own records (LAS integer X/Y/Z, PLY doubles, ...), so nothing
loses precision.

Labels: raw value -> class through ``map`` (or the raw value itself when ``map`` is
omitted); values in ``ignore`` become -1 (no label). Points whose label is set are the
weak labels of the spec ``given`` (what a user labelled in CloudCompare or another tool);
the sampled specs (``1%``, ``1pt``, ...) draw from them as for the benchmarks.

Features (:func:`point_features`): one raw channel per entry of ``features``
(:func:`raw_channels`): ``rgb`` = red/green/blue (or r/g/b, or PCD ``colors``) in their
documented unit, [0, 1] (8-bit values: / 255; 16-bit: / 65535, except 16-bit fields that
only hold 8-bit values, / 255); any other field as stored (float64; booleans 0/1);
``height_above_ground`` = z minus a ground surface (:class:`pcseg.readers.common.
GroundAccumulator`: the mean z of the file's ground points (ASPRS 2) per 2 m cell when it
has any, else the lowest point per cell opened over 20 m), computed per file at prepare
and at predict time. Each scalar channel is then normalised by ONE affine map fitted at
prepare time on the training files (1st / 99th percentiles,
:class:`pcseg.readers.common.FeatureNormalisation`; colours keep [0, 1]), stored in
``meta.json`` (``inputs``) and the checkpoint and applied unchanged by ``pcseg predict``, so
a file's features never depend on that file's own range. ``[]``: one constant channel (1.0).
Processed folders made before the fitted normalisation (no ``inputs`` in their meta)
keep the per-file unit scaling of :func:`legacy_point_features` (one entry at most).
"""

from __future__ import annotations

import fnmatch
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pcseg.data.scene import Scene
from pcseg.io.las import las_crs, read_las_crs
from pcseg.io.point_file import PointFile, PointFileError, list_point_files
from pcseg.io.points import read_points
from pcseg.readers.common import (
    NORM_PERCENTILES,
    DataWarning,
    FeatureNormalisation,
    GroundAccumulator,
    GroundSurface,
    ReaderOptions,
    SplitError,
    check_points,
    fit_normalisation,
    isolated_voxel_share,
    median_spacing,
    normalise_features,
)

DATASET = "custom"

#: metres per unit of the ``units:`` values of CLASSES.yaml
UNIT_METRES: dict[str, float] = {"metre": 1.0, "foot": 0.3048, "us_survey_foot": 1200.0 / 3937.0}
#: the computed feature (not a field of the file)
HEIGHT_ABOVE_GROUND = "height_above_ground"
#: points per training file that the normalisation is fitted on (evenly strided)
FIT_SAMPLE_POINTS = 200_000
#: share of occupied voxels without a neighbour above which prepare warns
ISOLATED_VOXEL_WARN = 0.5
#: a file whose extent holds fewer voxels than this at voxel_size is warned about
MIN_FILE_VOXELS = 100
#: x/y extent (units) and point spacing (units) or LAS scale below which coordinates in
#: metres look like longitude / latitude degrees
DEGREES_EXTENT, DEGREES_SPACING, DEGREES_SCALE = 2.0, 1e-4, 1e-6


class ClassesError(ValueError):
    """A ``CLASSES.yaml`` that cannot be used (message names the file and the key)."""


def _no_repeats(values: list[str], message: str) -> list[str]:
    """``values`` unchanged; ValueError ``"<message>: [repeated names]"`` when one repeats."""
    dup = sorted({n for n in values if values.count(n) > 1})
    if dup:
        raise ValueError(f"{message}: {dup}")
    return values


class ClassNames(BaseModel):
    """The class list of a ``CLASSES.yaml``: ``names`` (class index = position, unique) and
    optional ``colors`` {name: [r, g, b] in 0..255}. Other keys are not looked at: this is
    what ``pcseg annotate`` reads; :class:`ClassesSpec` is the whole file."""

    model_config = ConfigDict(extra="ignore")

    names: list[str] = Field(min_length=1)
    colors: dict[str, list[int]] | None = None

    @field_validator("names")
    @classmethod
    def _unique_names(cls, v: list[str]) -> list[str]:
        return _no_repeats(v, "class names must be unique; repeated")

    @model_validator(mode="after")
    def _colors(self) -> ClassNames:
        unknown = sorted(set(self.colors or {}) - set(self.names))
        if unknown:
            raise ValueError(f"colors for unknown classes {unknown} (names: {self.names})")
        for name, rgb in (self.colors or {}).items():
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError(f"colors: {name}: expected [r, g, b] in 0..255, got {rgb}")
        return self


class ClassesSpec(ClassNames):
    """The contents of ``CLASSES.yaml`` (see the module docstring); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    label_field: str | None = None
    map: dict[int, str | int] | None = None
    ignore: list[int] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)
    voxel_size: float = Field(gt=0)
    splits: dict[str, str | list[str]] | None = None
    columns: list[str] | None = None
    units: Literal["metre", "foot", "us_survey_foot"] | None = None

    @field_validator("features")
    @classmethod
    def _features(cls, v: list[str]) -> list[str]:
        return _no_repeats(v, "features repeated")

    @model_validator(mode="after")
    def _cross(self) -> ClassesSpec:
        k = len(self.names)
        if self.map is not None:
            for raw, cls in self.map.items():
                if isinstance(cls, str) and cls not in self.names:
                    raise ValueError(f"map: {raw}: {cls!r} is not in names {self.names}")
                if isinstance(cls, int) and not 0 <= cls < k:
                    raise ValueError(f"map: {raw}: class index {cls} outside [0, {k})")
            both = sorted(set(self.map) & set(self.ignore))
            if both:
                raise ValueError(f"raw values {both} are in both map and ignore")
        if (self.map is not None or self.ignore) and self.label_field is None:
            raise ValueError("map / ignore are given but label_field is not")
        return self

    def class_index(self, raw: int | str) -> int:
        """Class index of a map target (name or index)."""
        return self.names.index(raw) if isinstance(raw, str) else int(raw)

    def reverse_map(self) -> np.ndarray | None:
        """(K,) int64 raw code of every class (the smallest raw value mapped to it; -1 when
        none), or None when ``map`` is omitted (raw values are the class indices)."""
        if self.map is None:
            return None
        rev = np.full(len(self.names), -1, dtype=np.int64)
        for raw in sorted(self.map, reverse=True):
            rev[self.class_index(self.map[raw])] = raw
        return rev

    def split_patterns(self) -> dict[str, list[str]]:
        """{split: glob patterns}; default {'train': ['**']} (every file)."""
        if not self.splits:
            return {"train": ["**"]}
        return {k: [v] if isinstance(v, str) else list(v) for k, v in self.splits.items()}


ClassesT = TypeVar("ClassesT", bound=ClassNames)


def read_classes_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a ``CLASSES.yaml`` file, unchecked beyond holding a non-empty
    ``names`` list; :class:`ClassesError` names the file when it is missing, not YAML or
    not such a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ClassesError(f"classes file {path} does not exist")
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ClassesError(f"classes file {path} is not valid YAML: {e}") from None
    if not isinstance(obj, dict) or "names" not in obj:
        got = type(obj).__name__ if not isinstance(obj, dict) else f"keys {sorted(obj)}"
        raise ClassesError(
            f"classes file {path}: expected a mapping with a non-empty list 'names: [..]' "
            f"(class index = position) and the other keys (voxel_size, ...), got {got}"
        )
    return obj


def load_classes(path: str | Path) -> ClassesSpec:
    """Read and check ``CLASSES.yaml``; :class:`ClassesError` names the file and the key."""
    return classes_from_dict(read_classes_file(path), str(path))


def load_class_names(path: str | Path) -> ClassNames:
    """Only the class list (names, colours) of ``CLASSES.yaml``, for a file that may hold
    nothing else (``pcseg annotate``); :class:`ClassesError` names the file and the key."""
    return _validate_classes(ClassNames, read_classes_file(path), str(path))


def classes_from_dict(obj: dict[str, Any], source: str = "classes") -> ClassesSpec:
    """:class:`ClassesSpec` from a dict (e.g. the copy kept in a processed ``meta.json``)."""
    return _validate_classes(ClassesSpec, obj, source)


def _validate_classes(cls: type[ClassesT], obj: dict[str, Any], source: str) -> ClassesT:
    try:
        return cls.model_validate(obj)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            loc = ".".join(str(x) for x in err["loc"])
            parts.append(f"key {loc!r}: {msg}" if loc else msg)
        raise ClassesError(f"classes file {source}: " + "; ".join(parts)) from None


# ----------------------------------------------------------------------------- checks
def validate_points(pf: PointFile, nonfinite: str = "refuse") -> np.ndarray | None:
    """The read-time check of a file's points: :func:`pcseg.readers.common.check_points`
    (the one shared check of every reader), with the coordinate field(s) named.

    Returns None, or the keep-mask under ``nonfinite='drop'``. Raises
    :class:`PointFileError` naming the file and the field.
    """
    xyz = np.asarray(pf.xyz)
    bad_axes = [
        a
        for i, a in enumerate("xyz")
        if xyz.ndim == 2 and xyz.shape[1] == 3 and not np.isfinite(xyz[:, i]).all()
    ]
    source = f"{pf.path}" + (f" (field(s) {bad_axes})" if bad_axes else "")
    try:
        return check_points(xyz, source, nonfinite=nonfinite)
    except ValueError as e:
        raise PointFileError(str(e)) from None


def check_extent(pf: PointFile, voxel_size: float, xyz_m: np.ndarray | None = None) -> None:
    """Raise :class:`PointFileError` when the file's extent does not fit the voxel key range
    (pcseg.sparse.keys: +-16383 voxels about the origin, i.e. 16383 * voxel_size metres
    of extent once rotations are allowed for) at ``voxel_size``. ``xyz_m``: the points in
    metres (default ``pf.xyz``)."""
    from pcseg.sparse.keys import COORD_MAX

    xyz = pf.xyz if xyz_m is None else xyz_m
    ext = xyz.max(axis=0) - xyz.min(axis=0)
    limit = COORD_MAX * float(voxel_size)
    axis = int(np.argmax(ext))
    if ext[axis] > limit:
        raise PointFileError(
            f"{pf.path}: coordinates too far apart: field {'xyz'[axis]!r} spans "
            f"{ext[axis]:,.2f} m, the voxel key range at voxel_size {voxel_size} m allows "
            f"{limit:,.2f} m; use a larger voxel_size or split the file (pcseg predict tiles "
            "large files by itself)"
        )


# ----------------------------------------------------------------------------- conversion
def scene_origin(xyz: np.ndarray) -> np.ndarray:
    """(3,) float64 origin of a file: its bounding-box centre rounded to whole metres."""
    return np.round((xyz.min(axis=0) + xyz.max(axis=0)) / 2.0)


def _expected_scale(v: np.ndarray) -> float:
    """The unit a format documents for a colour / intensity field of this dtype."""
    if np.issubdtype(v.dtype, np.integer):
        return 255.0 if v.dtype.itemsize == 1 else 65535.0
    return 1.0


def _normalise_feature(
    pf: PointFile, name: str, v: np.ndarray, kind: str | None, seen_max: float | None = None
) -> np.ndarray:
    """Scale one raw feature into the network's range (see the module docstring).

    Colours and intensity go through :func:`pcseg.readers.common.normalise_features` (the
    one shared range detection: 0-1, 0-255 or 0-65535, with a note when the range differs
    from the dtype's documented unit); other scalar fields: booleans as 0/1, integers over
    their dtype's maximum, floats as they are. ``seen_max``: the field's maximum over the
    whole file (default: over ``v``), so a file read in chunks is scaled as it is read whole.
    """
    v = np.asarray(v)
    if kind is not None:
        return normalise_features(v, pf.path, kind=kind, expected=_expected_scale(v), hi=seen_max)
    if v.dtype == bool:
        return v.astype(np.float32)
    if np.issubdtype(v.dtype, np.integer):
        return (v.astype(np.float64) / int(np.iinfo(v.dtype).max)).astype(np.float32)
    return v.astype(np.float32)


# ----------------------------------------------------------------------------- units
@dataclass(frozen=True)
class FileUnits:
    """The coordinate units of one file: metres per unit of x / y (``horizontal``) and of z
    (``vertical``), their names, where they came from (``source``: ``'LAS WKT'``,
    ``'LAS GeoTIFF keys'``, ``'CLASSES.yaml units'`` or ``'default'``) and the file's CRS
    name (None without one)."""

    horizontal: float = 1.0
    vertical: float = 1.0
    horizontal_name: str = "metre"
    vertical_name: str = "metre"
    source: str = "default"
    crs: str | None = None

    @property
    def factors(self) -> np.ndarray:
        """(3,) float64 metres per unit of x, y, z."""
        return np.array([self.horizontal, self.horizontal, self.vertical])

    def describe(self) -> str:
        """One line for the prepare / predict output, e.g. ``x/y foot (0.3048 m), z foot
        (0.3048 m), from the LAS WKT; CRS 'NAD83 / ...'``."""
        h = f"{self.horizontal_name} ({self.horizontal:.10g} m)"
        v = f"{self.vertical_name} ({self.vertical:.10g} m)"
        crs = f"; CRS {self.crs!r}" if self.crs else ""
        return f"x/y {h}, z {v}, from the {self.source}{crs}"

    def key(self) -> tuple[str | None, float, float]:
        """What two files must share to be in the same frame: CRS, units."""
        return (self.crs, round(self.horizontal, 12), round(self.vertical, 12))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (scene extra, meta.json, checkpoint)."""
        return {
            "horizontal": self.horizontal,
            "vertical": self.vertical,
            "horizontal_name": self.horizontal_name,
            "vertical_name": self.vertical_name,
            "source": self.source,
            "crs": self.crs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileUnits:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def units_from_crs(crs: dict[str, Any] | None, spec: ClassesSpec, path: Path | str) -> FileUnits:
    """:class:`FileUnits` from a CRS description (:func:`pcseg.io.las.las_crs`; None without
    one) and ``spec.units``: the CRS's units where it gives them (a ``units:`` that disagrees
    is a warning), else ``units:``, else metre. A vertical unit the CRS lacks is the
    horizontal one. :class:`PointFileError` for a geographic CRS (degrees: reproject it)."""
    name = spec.units or "metre"
    fallback = (name, UNIT_METRES[name])
    source = "CLASSES.yaml units" if spec.units else "default"
    if crs is None:
        return FileUnits(fallback[1], fallback[1], name, name, source)
    if crs.get("geographic"):
        raise PointFileError(
            f"{path}: geographic CRS {crs.get('crs')!r} (longitude / latitude in degrees); "
            "reproject it to a projected CRS in metres or feet (e.g. UTM) first"
        )
    hor = crs.get("horizontal")
    if hor is None:
        return FileUnits(fallback[1], fallback[1], name, name, source, crs.get("crs"))
    ver = crs.get("vertical") or hor
    if spec.units and abs(UNIT_METRES[spec.units] - hor[1]) > 1e-9:
        warnings.warn(
            f"{path}: CLASSES.yaml says units: {spec.units} but the file's {crs['source']} "
            f"says {hor[0]} ({hor[1]:.10g} m); the file's unit is used",
            stacklevel=3,
        )
    return FileUnits(hor[1], ver[1], hor[0], ver[0], str(crs["source"]), crs.get("crs"))


def file_units(pf: PointFile, spec: ClassesSpec) -> FileUnits:
    """:class:`FileUnits` of a file read whole (LAS: its WKT / GeoTIFF keys)."""
    las = pf.native.get("las")
    crs = las_crs(las.header) if las is not None else None
    return units_from_crs(crs, spec, pf.path)


def path_units(path: Path, spec: ClassesSpec) -> FileUnits:
    """:class:`FileUnits` of a file not read whole (LAS: its header only)."""
    from pcseg.io.point_file import file_format

    crs = read_las_crs(path) if file_format(path) == "las" else None
    return units_from_crs(crs, spec, path)


# ----------------------------------------------------------------------------- features
def feature_channels(spec: ClassesSpec) -> tuple[str, ...]:
    """The input channels of ``spec.features`` (``rgb`` is three: red, green, blue)."""
    out: list[str] = []
    for f in spec.features:
        out.extend(("red", "green", "blue") if f == "rgb" else (f,))
    return tuple(out)


def features_kind(spec: ClassesSpec) -> str:
    """The processed ``feat_kind`` of ``spec``'s features: ``'rgb'`` for ``[rgb]``,
    ``'remission'`` for one channel (or none: a constant), else ``'features'``."""
    if spec.features == ["rgb"]:
        return "rgb"
    return "remission" if len(feature_channels(spec)) <= 1 else "features"


def feature_fields(spec: ClassesSpec) -> tuple[str, ...]:
    """The per-point fields :func:`point_features` may read for ``spec`` (the ground
    estimate of ``height_above_ground`` also reads ``classification``)."""
    out: list[str] = []
    for f in spec.features:
        if f == "rgb":
            out.extend(("red", "green", "blue", "r", "g", "b", "colors"))
        elif f == HEIGHT_ABOVE_GROUND:
            out.append("classification")
        else:
            out.append(f)
    return tuple(dict.fromkeys(out))


def _rgb(pf: PointFile, mx: dict[str, float]) -> np.ndarray:
    """(N, 3) colours of ``pf`` in [0, 1] (:func:`normalise_features`)."""
    for trio in (("red", "green", "blue"), ("r", "g", "b")):
        if all(c in pf.fields for c in trio):
            rgb = np.stack([np.asarray(pf.fields[c]) for c in trio], axis=1)
            top = max((mx[c] for c in trio if c in mx), default=None)
            return _normalise_feature(pf, "rgb", rgb, f"colour fields {list(trio)}", top)
    if "colors" in pf.fields and np.ndim(pf.fields["colors"]) == 2:
        cols = np.asarray(pf.fields["colors"])[:, :3]
        return _normalise_feature(pf, "colors", cols, "colour field 'colors'", mx.get("colors"))
    raise PointFileError(
        f"{pf.path}: features [rgb] but no field 'red'/'green'/'blue' "
        f"(or r/g/b, colors); the file has fields {sorted(pf.fields)}"
    )


def _scalar(pf: PointFile, name: str) -> np.ndarray:
    v = pf.field(name)
    if v.ndim != 1:
        raise PointFileError(
            f"{pf.path}: feature field {name!r} has shape {v.shape}; a scalar per point is needed"
        )
    return v


def raw_channels(
    pf: PointFile,
    spec: ClassesSpec,
    xyz_m: np.ndarray | None = None,
    ground: GroundSurface | None = None,
    seen_max: dict[str, float] | None = None,
) -> np.ndarray:
    """(N, C) float64 raw channels of :func:`feature_channels` (module docstring): colours
    in [0, 1], other fields as stored, ``height_above_ground`` from ``ground`` at the
    points ``xyz_m`` (absolute metres; default: ``pf.xyz``). ``seen_max``: per-field
    maxima over the whole file when ``pf`` is one chunk of it (colour range detection)."""
    parts = []
    for f in spec.features:
        if f == "rgb":
            parts.append(_rgb(pf, seen_max or {}).astype(np.float64))
        elif f == HEIGHT_ABOVE_GROUND:
            if ground is None:
                raise ValueError("height_above_ground needs the file's ground surface")
            parts.append(ground.height_above(pf.xyz if xyz_m is None else xyz_m)[:, None])
        else:
            parts.append(_scalar(pf, f).astype(np.float64)[:, None])
    out = np.concatenate(parts, axis=1) if parts else np.zeros((pf.num_points, 0))
    bad = np.flatnonzero(~np.isfinite(out).all(axis=0))
    if len(bad):
        names = [feature_channels(spec)[int(i)] for i in bad]
        raise PointFileError(f"{pf.path}: feature field(s) {names} have NaN/inf values")
    return out


def check_feature_fields(pf: PointFile, spec: ClassesSpec) -> None:
    """:class:`PointFileError` (listing the file's fields) when a field ``spec.features``
    reads is missing or not one value per point."""
    for f in spec.features:
        if f == "rgb":
            _rgb(pf, {})
        elif f != HEIGHT_ABOVE_GROUND:
            _scalar(pf, f)


def needs_ground(spec: ClassesSpec) -> bool:
    """Whether ``spec``'s features include ``height_above_ground``."""
    return HEIGHT_ABOVE_GROUND in spec.features


def file_ground(pf: PointFile, xyz_m: np.ndarray) -> GroundSurface:
    """The ground surface of a file read whole (``xyz_m``: its points in metres)."""
    acc = GroundAccumulator()
    acc.add(xyz_m, pf.fields.get("classification"))
    return acc.surface()


def point_features(
    pf: PointFile,
    spec: ClassesSpec,
    seen_max: dict[str, float] | None = None,
    norm: FeatureNormalisation | None = None,
    xyz_m: np.ndarray | None = None,
    ground: GroundSurface | None = None,
) -> np.ndarray:
    """(N, C) float32 network features of ``pf``: :func:`raw_channels` through the fitted
    ``norm`` (one channel of 1.0 for ``features: []``); without ``norm`` (a folder prepared
    before it was fitted) :func:`legacy_point_features`. ``xyz_m`` / ``ground``: see
    :func:`raw_channels` (the ground is computed from ``pf`` when needed and not given)."""
    if not spec.features:
        return np.ones((pf.num_points, 1), dtype=np.float32)
    if norm is None:
        return legacy_point_features(pf, spec, seen_max)
    if list(norm.channels) != list(feature_channels(spec)):
        raise ValueError(
            f"the normalisation was fitted on channels {list(norm.channels)}, the class spec "
            f"has {list(feature_channels(spec))}"
        )
    xyz = pf.xyz if xyz_m is None else xyz_m
    if needs_ground(spec) and ground is None:
        ground = file_ground(pf, xyz)
    return norm.apply(raw_channels(pf, spec, xyz, ground, seen_max))


def legacy_point_features(
    pf: PointFile, spec: ClassesSpec, seen_max: dict[str, float] | None = None
) -> np.ndarray:
    """Features of a folder prepared before the fitted normalisation: (N, 3) float32 RGB in
    [0, 1] or (N, 1) one scalar field scaled per file (intensity: / 255 when the file's
    maximum fits 8 bits, else / 65535; other integers / the dtype's maximum).
    ``seen_max``: per-field maxima over the whole file when ``pf`` is one chunk of it."""
    mx = seen_max or {}
    if len(spec.features) != 1 or spec.features[0] == HEIGHT_ABOVE_GROUND:
        raise ValueError(
            f"features {spec.features} need the normalisation `pcseg prepare custom` fits "
            "(prepare the folder again)"
        )
    name = spec.features[0]
    if name == "rgb":
        return _rgb(pf, mx)
    v = _scalar(pf, name)
    kind = f"intensity field {name!r}" if "intensity" in name.lower() else None
    out = _normalise_feature(pf, name, v, kind, mx.get(name))[:, None]
    if not np.isfinite(out).all():
        raise PointFileError(f"{pf.path}: feature field {name!r} has NaN/inf values")
    return out


@dataclass(frozen=True)
class TrainingInputs:
    """What the training files' inputs were, kept in ``meta.json`` (``inputs``) and the
    checkpoint: the fitted normalisation, the units / CRS of the training files (a set:
    ``units``) and how each file's ground was found (``ground``: {method: files})."""

    norm: FeatureNormalisation
    units: tuple[FileUnits, ...] = ()
    ground: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "normalisation": self.norm.to_dict(),
            "units": [u.to_dict() for u in self.units],
            "ground": dict(self.ground),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingInputs:
        """Inverse of :meth:`to_dict`."""
        return cls(
            FeatureNormalisation.from_dict(d["normalisation"]),
            tuple(FileUnits.from_dict(u) for u in d.get("units", [])),
            tuple((str(k), int(v)) for k, v in (d.get("ground") or {}).items()),
        )

    def notes_for(self, units: FileUnits, normalised: np.ndarray | None = None) -> list[str]:
        """Warnings for a prediction file: another CRS or unit than the training files
        (naming both) and channels far outside the training range (> 1 % of the points
        beyond :data:`pcseg.readers.common.NORM_FAR`)."""
        notes = []
        if self.units and units.key() not in {u.key() for u in self.units}:
            train = "; ".join(sorted({u.describe() for u in self.units}))
            notes.append(f"this file is {units.describe()}, the training files were {train}")
        if normalised is not None:
            far = {c: s for c, s in self.norm.far_outside(normalised).items() if s > 0.01}
            notes.extend(far_outside_notes(self.norm, far))
        return notes


def units_notes(
    inputs: TrainingInputs | None, units: FileUnits, normalised: np.ndarray | None = None
) -> list[str]:
    """:meth:`TrainingInputs.notes_for` (no notes without fitted inputs)."""
    return [] if inputs is None else inputs.notes_for(units, normalised)


def far_outside_notes(norm: FeatureNormalisation, far: dict[str, float]) -> list[str]:
    """One note per channel of ``far`` ({channel: share of points}) naming the training
    range (1st..99th percentile)."""
    out = []
    for c, share in far.items():
        i = norm.channels.index(c)
        out.append(
            f"feature {c!r}: {100 * share:.1f}% of the points are far outside the training "
            f"range ({norm.lo[i]:.6g}..{norm.hi[i]:.6g}, 1st..99th percentile)"
        )
    return out


def point_labels(pf: PointFile, spec: ClassesSpec, source: str = "CLASSES.yaml") -> np.ndarray:
    """(N,) int64 class index per point, -1 for ``ignore`` values (all -1 without a label
    field). Raises :class:`PointFileError` naming the file and the field for values that are
    neither in ``map`` nor in ``ignore`` (with their counts) or not integers."""
    n = pf.num_points
    if spec.label_field is None:
        return np.full(n, -1, dtype=np.int64)
    f = spec.label_field
    raw = pf.field(f)
    if raw.ndim != 1:
        raise PointFileError(
            f"{pf.path}: label field {f!r} has shape {raw.shape}; one value per point is needed"
        )
    if not np.issubdtype(raw.dtype, np.integer):
        fr = np.asarray(raw, dtype=np.float64)
        if not np.all(np.isfinite(fr)) or not np.all(fr == np.round(fr)):
            raise PointFileError(f"{pf.path}: label field {f!r} holds non-integer values")
        raw = fr.astype(np.int64)
    raw = raw.astype(np.int64)
    ignored = np.isin(raw, np.asarray(spec.ignore, dtype=np.int64))
    out = np.full(n, -1, dtype=np.int64)
    if spec.map is None:
        ok = (raw >= 0) & (raw < len(spec.names))
        out[ok & ~ignored] = raw[ok & ~ignored]
        what = f"not a class index in [0, {len(spec.names)}) and not in ignore"
    else:
        keys = np.asarray(sorted(spec.map), dtype=np.int64)
        vals = np.asarray([spec.class_index(spec.map[k]) for k in keys], dtype=np.int64)
        ok = np.isin(raw, keys)
        pos = np.searchsorted(keys, raw[ok])
        out[ok] = vals[pos]
        what = "not in map and not in ignore"
    bad = ~ok & ~ignored
    if bad.any():
        u, c = np.unique(raw[bad], return_counts=True)
        listing = ", ".join(f"{int(a)} ({int(b)} points)" for a, b in list(zip(u, c))[:20])
        raise PointFileError(
            f"{pf.path}: field {f!r} has values {what}: {listing}; add them to "
            f"'map' or 'ignore' in {source}"
        )
    return out


def to_scene(
    pf: PointFile,
    spec: ClassesSpec,
    name: str,
    source: str = "CLASSES.yaml",
    check_range: bool = True,
    nonfinite: str = "refuse",
    inputs: TrainingInputs | None = None,
) -> Scene:
    """The :class:`Scene` of one file (units to metres, origin shift, features, labels; see
    the module docstring). ``inputs``: the fitted normalisation (None: the per-file
    :func:`legacy_point_features`). ``check_range``: refuse an extent the voxel keys cannot
    hold (:func:`check_extent`) and warn (:class:`DataWarning`) about coordinates that look
    like degrees (:func:`degrees_warning`) or an absurd voxel size (:func:`density_warning`).

    ``nonfinite``: points with NaN/inf coordinates ``'refuse'`` the file (the error names
    it), or ``'drop'``: they are left out (their count in ``extra['dropped_nonfinite']``).
    """
    keep = validate_points(pf, nonfinite)
    dropped = 0
    if keep is not None:
        dropped = int((~keep).sum())
        pf = PointFile(
            pf.path, pf.format, pf.xyz[keep], {k: v[keep] for k, v in pf.fields.items()}, pf.native
        )
    units = file_units(pf, spec)
    xyz_m = pf.xyz * units.factors
    if check_range:
        check_extent(pf, spec.voxel_size, xyz_m)
        for note in (degrees_warning(pf, units), density_warning(pf.path, xyz_m, spec.voxel_size)):
            if note:
                warnings.warn(DataWarning(note), stacklevel=2)
    origin = scene_origin(xyz_m)
    coords = (xyz_m - origin).astype(np.float32)
    ground = file_ground(pf, xyz_m) if needs_ground(spec) else None
    norm = None if inputs is None else inputs.norm
    feats = point_features(pf, spec, norm=norm, xyz_m=xyz_m, ground=ground)
    semantic = point_labels(pf, spec, source)
    extra = {
        "origin": [float(o) for o in origin],
        "format": pf.format,
        "file": str(pf.path),
        "label_field": spec.label_field,
        "labelled_points": int((semantic >= 0).sum()),
        "dropped_nonfinite": dropped,
        "units": units.to_dict(),
        "feat_kind": features_kind(spec),
        "feature_channels": list(feature_channels(spec)),
        "ground": None if ground is None else ground.method,
    }
    return Scene(
        name=name,
        dataset=DATASET,
        coords=coords,
        feats=feats,
        semantic=semantic,
        instance=np.full(pf.num_points, -1, dtype=np.int64),
        source=str(pf.path),
        extra=extra,
    )


# ----------------------------------------------------------------------------- the reader
def scene_id(raw: Path, path: Path) -> str:
    """``tiles/a.las`` under ``raw`` -> ``tiles__a`` (see :func:`list_files` for two files
    of one stem in one folder)."""
    rel = path.relative_to(raw).with_suffix("")
    return "__".join(rel.parts)


def list_files(raw: Path) -> dict[str, Path]:
    """{scene id: file} of every supported file under ``raw``: the id is the relative path
    without the suffix (:func:`scene_id`: ``a/tile.las`` and ``b/tile.las`` are ``a__tile``
    and ``b__tile``); files of one stem in one folder (``tile.las`` and ``tile.ply``) take
    their format too (``tile_las``, ``tile_ply``). :class:`SplitError` naming both files
    where two would still be one scene (``a__b.las`` and ``a/b.las``)."""
    raw = Path(raw)
    if not raw.is_dir():
        raise FileNotFoundError(f"raw folder {raw} does not exist")
    files = list_point_files(raw)
    ids = [scene_id(raw, p) for p in files]
    shared = {i for i, n in Counter(ids).items() if n > 1}
    out: dict[str, Path] = {}
    for p, sid in zip(files, ids):
        if sid in shared:
            sid = f"{sid}_{p.suffix.lower().lstrip('.')}"
        if sid in out:
            raise SplitError(
                f"{out[sid]} and {p} would both be scene {sid!r} (scenes/{sid}.npz); rename one"
            )
        out[sid] = p
    return out


class CustomOptions(ReaderOptions):
    """Options of :class:`CustomReader` (the class spec is the reader's own): ``nonfinite``
    (see :func:`to_scene`)."""


class CustomReader:
    """The reader of ``pcseg prepare custom`` (the interface of the benchmark reader modules,
    :class:`pcseg.readers.common.Reader`: ``SPLITS``, ``Options``, ``list_scenes``,
    ``read_scene``); picklable."""

    Options = CustomOptions

    def __init__(
        self, spec: ClassesSpec, source: str = "CLASSES.yaml", inputs: TrainingInputs | None = None
    ) -> None:
        self.spec = spec
        self.source = source
        self.inputs = inputs
        self.SPLITS = {k: None for k in spec.split_patterns()}

    def list_scenes(
        self, raw: str | Path, split: str, options: CustomOptions | None = None
    ) -> list[str]:
        """Scene ids of ``split`` (files matching its globs, relative to ``raw``)."""
        pats = self.spec.split_patterns()
        if split not in pats:
            raise ValueError(
                f"split {split!r} is not in the splits of {self.source} ({sorted(pats)})"
            )
        raw = Path(raw)
        ids = []
        for sid, p in list_files(raw).items():
            rel = p.relative_to(raw).as_posix()
            if any(pat == "**" or fnmatch.fnmatch(rel, pat) for pat in pats[split]):
                ids.append(sid)
        return ids

    def read_scene(self, raw: str | Path, sid: str, options: CustomOptions | None = None) -> Scene:
        """Read, check and convert the file of scene ``sid`` (``options.nonfinite``: see
        :func:`to_scene`)."""
        opts = CustomOptions() if options is None else options
        files = list_files(Path(raw))
        if sid not in files:
            raise ValueError(f"no file for scene {sid!r} under {raw}")
        pf = read_points(files[sid], self.spec.columns)
        return to_scene(
            pf, self.spec, sid, self.source, nonfinite=opts.nonfinite, inputs=self.inputs
        )


def _central_window(xyz: np.ndarray, points: int) -> np.ndarray:
    """The points of ``xyz`` in a central XY square holding about ``points`` of them
    (density figures of a large file without a KD-tree of all of it)."""
    if len(xyz) <= points:
        return xyz
    lo, hi = xyz[:, :2].min(axis=0), xyz[:, :2].max(axis=0)
    half = (hi - lo) / 2 * np.sqrt(points / len(xyz))
    c = (lo + hi) / 2
    inside = (np.abs(xyz[:, :2] - c) <= half).all(axis=1)
    return xyz[inside] if inside.sum() >= 2 else xyz[:points]


def _fit_file(
    path: Path, spec: ClassesSpec, nonfinite: str
) -> tuple[FileUnits, np.ndarray, GroundSurface | None, np.ndarray] | None:
    """(units, points in metres, ground, raw channels) of one training file, or None when it
    cannot be read (the prepare step reports it, so its warnings are silenced here)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pf = read_points(path, spec.columns)
            keep = validate_points(pf, nonfinite)
            if keep is not None:
                kept = {k: v[keep] for k, v in pf.fields.items()}
                pf = PointFile(pf.path, pf.format, pf.xyz[keep], kept, pf.native)
            u = file_units(pf, spec)
            xyz_m = pf.xyz * u.factors
            ground = file_ground(pf, xyz_m) if needs_ground(spec) else None
            return u, xyz_m, ground, raw_channels(pf, spec, xyz_m, ground)
    except (PointFileError, ValueError):
        return None


def fit_inputs(
    raw: Path, spec: ClassesSpec, reader: CustomReader, nonfinite: str = "refuse"
) -> tuple[TrainingInputs, dict[str, Any]]:
    """Fit the inputs of ``spec`` once on the training files under ``raw`` (split
    ``train``, else the first split): the per-channel normalisation
    (:func:`pcseg.readers.common.fit_normalisation` of at most :data:`FIT_SAMPLE_POINTS`
    evenly strided points per file; colours fixed to [0, 1]), the files' units / CRS and
    ground methods, and the voxel density at ``spec.voxel_size`` (``isolated_voxel_share``,
    ``median_spacing_m`` over a central window of each file). A file that cannot be read is
    left out here (the prepare step reports it). Returns (inputs, density)."""
    split = fit_split(spec)
    files = list_files(raw)
    channels = feature_channels(spec)
    samples: list[np.ndarray] = []
    units: dict[tuple[Any, ...], FileUnits] = {}
    grounds: dict[str, int] = {}
    iso = vox = 0.0
    spacing: list[float] = []
    for sid in reader.list_scenes(raw, split):
        got = _fit_file(files[sid], spec, nonfinite)
        if got is None:
            continue
        u, xyz_m, ground, rc = got
        units.setdefault(u.key(), u)
        if ground is not None:
            grounds[ground.method] = grounds.get(ground.method, 0) + 1
        samples.append(rc[:: max(1, len(rc) // FIT_SAMPLE_POINTS)])
        window = _central_window(xyz_m, FIT_SAMPLE_POINTS)
        share, n_vox = isolated_voxel_share(window, spec.voxel_size)
        iso, vox = iso + share * n_vox, vox + n_vox
        spacing.append(median_spacing(window))
    stacked = np.concatenate(samples) if samples else np.zeros((0, len(channels)))
    norm = fit_normalisation(channels, stacked, fixed_ranges(spec))
    density = {
        "voxel_size": spec.voxel_size,
        "isolated_voxel_share": iso / vox if vox else 0.0,
        "median_spacing_m": float(np.median(spacing)) if spacing else 0.0,
    }
    inputs = TrainingInputs(norm, tuple(units.values()), tuple(sorted(grounds.items())))
    return inputs, density


def spec_fingerprint(spec: ClassesSpec) -> dict[str, Any]:
    """The part of a processed folder's fingerprint (:mod:`pcseg.data.processed`) that
    ``spec`` gives: ``classes`` (:func:`classes_fingerprint`) and ``normalisation`` (how
    the features' normalisation is fitted: percentiles, fixed colour range, points per
    file, split)."""
    return {
        "classes": classes_fingerprint(spec),
        "normalisation": {
            "percentiles": list(NORM_PERCENTILES),
            "fixed": {c: list(r) for c, r in fixed_ranges(spec).items()},
            "fit_sample_points": FIT_SAMPLE_POINTS,
            "fit_split": fit_split(spec),
        },
    }


def fit_split(spec: ClassesSpec) -> str:
    """The split the inputs are fitted on: ``train``, else the first split."""
    pats = spec.split_patterns()
    return "train" if "train" in pats else next(iter(pats))


def fixed_ranges(spec: ClassesSpec) -> dict[str, tuple[float, float]]:
    """Channels whose normalisation range is fixed, not fitted: colours (0, 1)."""
    return {c: (0.0, 1.0) for c in ("red", "green", "blue")} if "rgb" in spec.features else {}


def classes_fingerprint(spec: ClassesSpec) -> dict[str, Any]:
    """What of ``spec`` decides a processed scene: ``names``, ``label_field``, ``map``
    ({raw code as a string: class name}, None without a map), ``ignore`` (sorted),
    ``features``, ``units`` and ``columns``. Colours and splits are left out (a view, and
    which scenes are processed)."""
    mapped = None
    if spec.map is not None:
        mapped = {str(k): spec.names[spec.class_index(v)] for k, v in sorted(spec.map.items())}
    return {
        "names": list(spec.names),
        "label_field": spec.label_field,
        "map": mapped,
        "ignore": sorted(spec.ignore),
        "features": list(spec.features),
        "units": spec.units,
        "columns": None if spec.columns is None else list(spec.columns),
    }


def _extent(xyz: np.ndarray, unit: str = "m") -> str:
    ext = xyz.max(axis=0) - xyz.min(axis=0)
    return " x ".join(f"{e:.3g}" for e in ext) + f" {unit}"


def density_warning(
    path: Path | str, xyz_m: np.ndarray, voxel_size: float, window: np.ndarray | None = None
) -> str | None:
    """The prepare-time warning for the file ``path`` (points ``xyz_m`` in metres) whose
    voxel size is absurd: its extent holds fewer than :data:`MIN_FILE_VOXELS` voxels, or
    more than :data:`ISOLATED_VOXEL_WARN` of its voxels have no neighbour in a 3x3x3 kernel
    (:func:`~pcseg.readers.common.isolated_voxel_share` on a central window of the file,
    ``window``). One line naming the file, its extent and its median point spacing, with a
    voxel size that suits it; None when the voxel size is sound."""
    window = _central_window(xyz_m, FIT_SAMPLE_POINTS) if window is None else window
    ext = xyz_m.max(axis=0) - xyz_m.min(axis=0)
    bound = int(np.prod(np.floor(ext / voxel_size) + 1))
    share, _ = isolated_voxel_share(window, voxel_size)
    if bound >= MIN_FILE_VOXELS and share <= ISOLATED_VOXEL_WARN:
        return None
    sp = max(median_spacing(window), 1e-3)
    what = (
        f"its extent holds at most {bound} voxel(s) (the network sees almost nothing)"
        if bound < MIN_FILE_VOXELS
        else f"{100 * share:.1f}% of its voxels have no neighbour in a 3x3x3 kernel (the "
        "network sees isolated points)"
    )
    return (
        f"{path}: voxel_size {voxel_size} m: {what}; extent {_extent(xyz_m)}, median point "
        f"spacing {sp:.3g} m: a voxel_size of about {sp:.2g}-{2 * sp:.2g} m suits it "
        "(coordinates are in metres whatever the file's unit)"
    )


def degrees_warning(pf: PointFile, units: FileUnits) -> str | None:
    """The prepare-time warning for a file whose coordinates look like longitude / latitude
    degrees while its CRS or ``units:`` say metres (or nothing): x/y within +-180 / +-90
    with an extent of at most :data:`DEGREES_EXTENT` units, and a LAS scale below
    :data:`DEGREES_SCALE` or a median point spacing below :data:`DEGREES_SPACING` units. One
    line naming the file, its extent and its median point spacing; None otherwise."""
    xy = pf.xyz[:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    in_range = np.all(np.abs(np.concatenate([lo, hi]).reshape(2, 2)) <= [180.0, 90.0])
    if units.horizontal != 1.0 or not in_range or (hi - lo).max() > DEGREES_EXTENT:
        return None
    las = pf.native.get("las")
    scale = float(np.max(las.header.scales[:2])) if las is not None else None
    sp = median_spacing(_central_window(pf.xyz, FIT_SAMPLE_POINTS)[:, :2])
    if (scale is None or scale >= DEGREES_SCALE) and sp >= DEGREES_SPACING:
        return None
    scale_note = f", LAS scale {scale:g}" if scale is not None else ""
    said = (
        "no CRS and no units: in CLASSES.yaml (metres assumed)"
        if units.source == "default"
        else f"the {units.source} saying metres"
    )
    return (
        f"{pf.path}: the coordinates look like longitude / latitude degrees, not metres: "
        f"x {lo[0]:.7g}..{hi[0]:.7g}, y {lo[1]:.7g}..{hi[1]:.7g}; extent "
        f"{_extent(pf.xyz, 'units')}, median point spacing {sp:.3g} units{scale_note}, with "
        f"{said}; reproject the file to a projected CRS in metres (e.g. UTM) first"
    )


def prepare_custom(
    raw: str | Path,
    classes: str | Path,
    out: str | Path,
    labels: list[str] | None = None,
    reader_options: CustomOptions | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """``pcseg prepare custom``: the processed folder of a folder of files.

    ``labels``: weak-label specs (default ``['given']`` when the files carry labels, none
    otherwise); ``reader_options``: the reader's :class:`CustomOptions` (None: defaults);
    ``fields``: further :class:`pcseg.readers.prepare.PrepareOptions` fields (``workers``,
    ``force``, ``seed``, ``splits``). The class spec is kept in ``meta.json`` (key
    ``classes``) for ``pcseg predict``, and what of it makes the scenes in the folder's
    fingerprint (:func:`spec_fingerprint`): a rerun with a changed CLASSES.yaml is refused
    naming the change, ``force`` rebuilds. The inputs are fitted on the training files
    (key ``inputs``: :func:`fit_inputs`) by the run that makes the folder; a rerun that
    adds files keeps them, so every scene is normalised alike (``force`` fits them anew).
    Prints the files' units (and how height above ground was found); warns (and lists in
    the summary) for every class with no labelled point at all, and per file
    (:func:`to_scene`) for an absurd voxel size (:func:`density_warning`) and for
    coordinates that look like degrees (:func:`degrees_warning`).
    """
    from pcseg.readers.prepare import (
        PrepareOptions,
        check_out_folder,
        prepare_dataset,
        reusable_meta,
    )

    check_out_folder(Path(out))  # before the training files are read

    spec = load_classes(classes)
    if labels is None or not labels:
        labels = ["given"] if spec.label_field else []
    opts = PrepareOptions(
        dataset=DATASET,
        raw=Path(raw),
        out=Path(out),
        labels=list(labels),
        voxel_size=spec.voxel_size,
        reader=CustomReader(spec, str(classes)),
        reader_options=reader_options,
        class_names=list(spec.names),
        fingerprint_extra=spec_fingerprint(spec),
        **fields,
    )
    old = reusable_meta(opts)  # refuses a folder made otherwise before anything is read
    inputs, density = _run_inputs(opts, spec, old)
    opts.reader = CustomReader(spec, str(classes), inputs)
    opts.meta_extra = {
        "classes": spec.model_dump(mode="json"),
        "classes_file": str(Path(classes).resolve()),
        "inputs": inputs.to_dict(),
        "voxel_density": density,
    }
    summary = prepare_dataset(opts)
    summary["inputs"] = inputs.to_dict()
    summary["voxel_density"] = density
    if spec.label_field:
        empty = [n for n, c in summary["class_histogram"].items() if c == 0]
        if empty:
            msg = (
                f"{classes}: class(es) {empty} in 'names' have no labelled point in any "
                f"file of {raw} (label field {spec.label_field!r})"
            )
            print(f"warning: {msg}", file=sys.stderr)  # once; no Python source line
            summary["empty_classes"] = empty
    return summary


def _run_inputs(
    opts: Any, spec: ClassesSpec, old: dict[str, Any] | None
) -> tuple[TrainingInputs, dict[str, Any]]:
    """(inputs, voxel density) of a prepare run: those of ``old`` (the
    folder's meta.json, same fingerprint) when it has them, else :func:`fit_inputs` on
    the training files; the units / ground notes are printed."""
    if old is not None and isinstance(old.get("inputs"), dict):
        inputs = TrainingInputs.from_dict(old["inputs"])
        density = dict(old.get("voxel_density") or {})
        print(
            f"[prepare] {opts.out} has inputs fitted by an earlier run (meta.json); they are "
            "kept so every scene is normalised alike (--force fits them anew)",
            file=sys.stderr,
        )
        return inputs, density
    nonfinite = opts.reader_options.nonfinite if opts.reader_options is not None else "refuse"
    inputs, density = fit_inputs(Path(opts.raw), spec, opts.reader, nonfinite)
    notes = [f"units: {u.describe()}; converted to metres" for u in inputs.units]
    notes += [f"height above ground: {m} ({n} file(s))" for m, n in inputs.ground]
    for line in notes:
        print(f"[prepare] {line}", file=sys.stderr)
    return inputs, density
