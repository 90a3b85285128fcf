"""Your own scans: a folder of point-cloud files + ``CLASSES.yaml`` -> a processed folder.

``CLASSES.yaml`` (:class:`ClassesSpec`; unknown keys are errors)::

    names: [ground, low_vegetation, medium_vegetation, high_vegetation, building]  # index=position
    label_field: classification   # per-point field holding labels; omit for unlabelled scans
    map: {2: ground, 3: low_vegetation, 4: medium_vegetation, 5: high_vegetation, 6: building}
                                  # raw value -> class (name or index); omit when the raw
                                  # values are the class indices
    ignore: [0, 1, 7]             # raw values meaning "no label"
    features: [intensity]         # fields fed to the network: [] (geometry only), [rgb], or one
                                  # scalar field such as [intensity]
    voxel_size: 0.5               # metres
    splits: {train: "train/*", val: "val/*", test: "test/*"}  # globs under --raw (default: all
                                  # files in train)
    colors: {building: [220, 80, 60]}   # optional, for the viewer
    columns: [x, y, z, intensity, label]  # optional: names of headerless TXT/CSV columns

Files: every file under ``--raw`` whose suffix :mod:`pcseg.io` reads (PLY,
LAS/LAZ, PCD, NPY/NPZ, TXT/CSV, KITTI ``.bin``). Scene id = the path relative to ``--raw``
without its suffix, ``/`` written ``__`` (``tiles/a.las`` -> ``tiles__a``).

Coordinates: each file is shifted to its own origin (the centre of its bounding box,
rounded to whole metres) in float64 before it becomes float32; the origin is recorded in
the processed scene (``scenes/<id>.json`` ``extra.origin``), and ``pcseg predict`` writes
outputs from the file's own records (LAS integer X/Y/Z, PLY doubles, ...), so nothing
loses precision.

Labels: raw value -> class through ``map`` (or the raw value itself when ``map`` is
omitted); values in ``ignore`` become -1 (no label). Points whose label is set are the
weak labels of the spec ``given`` (what a user labelled in CloudCompare or another tool);
the sampled specs (``1%``, ``1pt``, ...) draw from them as for the benchmarks.

Features (:func:`point_features`): ``rgb`` = red/green/blue (or r/g/b, or PCD ``colors``)
scaled into [0, 1] (8-bit values: / 255; 16-bit: / 65535, except 16-bit fields that only
hold 8-bit values, / 255); a scalar field: integers / the dtype's maximum, floats as
stored; ``[]``: one constant channel (1.0). The processed format holds RGB (3 channels) or
one scalar channel, hence at most one entry (besides ``rgb`` alone).
"""

from __future__ import annotations

import fnmatch
import sys
import warnings
from pathlib import Path
from typing import Any

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
from pcseg.datasets.common import check_points, normalise_features
from pcseg.io.point_file import SUFFIXES, PointFile, PointFileError
from pcseg.io.points import read_points

DATASET = "custom"


class ClassesError(ValueError):
    """A ``CLASSES.yaml`` that cannot be used (message names the file and the key)."""


class ClassesSpec(BaseModel):
    """The contents of ``CLASSES.yaml`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    names: list[str] = Field(min_length=1)
    label_field: str | None = None
    map: dict[int, str | int] | None = None
    ignore: list[int] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)
    voxel_size: float = Field(gt=0)
    splits: dict[str, str | list[str]] | None = None
    colors: dict[str, list[int]] | None = None
    columns: list[str] | None = None

    @field_validator("names")
    @classmethod
    def _unique_names(cls, v: list[str]) -> list[str]:
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"class names must be unique; repeated: {dup}")
        return v

    @field_validator("features")
    @classmethod
    def _features(cls, v: list[str]) -> list[str]:
        if len(v) > 1:
            raise ValueError(
                f"at most one feature: [] (geometry only), [rgb] or one scalar field "
                f"such as [intensity]; got {v}"
            )
        return v

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
        for name, rgb in (self.colors or {}).items():
            if name not in self.names:
                raise ValueError(f"colors: {name!r} is not in names {self.names}")
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError(f"colors: {name}: expected [r, g, b] in 0..255, got {rgb}")
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


def load_classes(path: str | Path) -> ClassesSpec:
    """Read and check ``CLASSES.yaml``; :class:`ClassesError` names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ClassesError(f"classes file {path} does not exist")
    try:
        obj = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ClassesError(f"classes file {path} is not valid YAML: {e}") from e
    if not isinstance(obj, dict):
        raise ClassesError(
            f"classes file {path}: expected a mapping of keys (names, voxel_size, "
            f"...), got {type(obj).__name__}"
        )
    return classes_from_dict(obj, str(path))


def classes_from_dict(obj: dict[str, Any], source: str = "classes") -> ClassesSpec:
    """:class:`ClassesSpec` from a dict (e.g. the copy kept in a processed ``meta.json``)."""
    try:
        return ClassesSpec.model_validate(obj)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            parts.append(f"key {loc!r}: {err['msg']}")
        raise ClassesError(f"classes file {source}: " + "; ".join(parts)) from None


# ----------------------------------------------------------------------------- checks
def validate_points(pf: PointFile, nonfinite: str = "refuse") -> np.ndarray | None:
    """The read-time check of a file's points: :func:`pcseg.datasets.common.check_points`
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


def check_extent(pf: PointFile, voxel_size: float) -> None:
    """Raise :class:`PointFileError` when the file's extent does not fit the voxel key range
    (pcseg.sparse.keys: +-16383 voxels about the origin, i.e. 16383 * voxel_size metres
    of extent once rotations are allowed for) at ``voxel_size``."""
    from pcseg.sparse.keys import COORD_MAX

    ext = pf.xyz.max(axis=0) - pf.xyz.min(axis=0)
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

    Colours and intensity go through :func:`pcseg.datasets.common.normalise_features` (the
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


def feature_fields(spec: ClassesSpec) -> tuple[str, ...]:
    """The per-point fields :func:`point_features` may read for ``spec``."""
    if not spec.features:
        return ()
    if spec.features[0] == "rgb":
        return ("red", "green", "blue", "r", "g", "b", "colors")
    return (spec.features[0],)


def point_features(
    pf: PointFile, spec: ClassesSpec, seen_max: dict[str, float] | None = None
) -> np.ndarray:
    """(N, 3) float32 RGB in [0, 1] or (N, 1) float32 scalar / constant features.
    ``seen_max``: per-field maxima over the whole file when ``pf`` is one chunk of it."""
    n = pf.num_points
    mx = seen_max or {}
    if not spec.features:
        return np.ones((n, 1), dtype=np.float32)
    name = spec.features[0]
    if name == "rgb":
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
    v = pf.field(name)
    if v.ndim != 1:
        raise PointFileError(
            f"{pf.path}: feature field {name!r} has shape {v.shape}; a scalar per point is needed"
        )
    kind = f"intensity field {name!r}" if "intensity" in name.lower() else None
    out = _normalise_feature(pf, name, v, kind, mx.get(name))[:, None]
    if not np.isfinite(out).all():
        raise PointFileError(f"{pf.path}: feature field {name!r} has NaN/inf values")
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
) -> Scene:
    """The :class:`Scene` of one file (origin shift, features, labels; see module docstring).

    ``nonfinite``: points with NaN/inf coordinates ``'refuse'`` the file (the error names
    it), or ``'drop'``: they are left out (their count in ``extra['dropped_nonfinite']``).
    """
    keep = validate_points(pf, nonfinite)
    dropped = 0
    if keep is not None:
        dropped = int((~keep).sum())
        pf = PointFile(pf.path, pf.format, pf.xyz[keep], {k: v[keep] for k, v in pf.fields.items()})
    if check_range:
        check_extent(pf, spec.voxel_size)
    origin = scene_origin(pf.xyz)
    coords = (pf.xyz - origin).astype(np.float32)
    feats = point_features(pf, spec)
    semantic = point_labels(pf, spec, source)
    extra = {
        "origin": [float(o) for o in origin],
        "format": pf.format,
        "file": str(pf.path),
        "label_field": spec.label_field,
        "labelled_points": int((semantic >= 0).sum()),
        "dropped_nonfinite": dropped,
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
    """``tiles/a.las`` under ``raw`` -> ``tiles__a``."""
    rel = path.relative_to(raw).with_suffix("")
    return "__".join(rel.parts)


def list_files(raw: Path) -> dict[str, Path]:
    """{scene id: file} of every supported file under ``raw`` (ValueError on two files with
    the same id, e.g. ``a.las`` and ``a.ply``)."""
    raw = Path(raw)
    if not raw.is_dir():
        raise FileNotFoundError(f"raw folder {raw} does not exist")
    out: dict[str, Path] = {}
    for p in sorted(raw.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in SUFFIXES or p.name.startswith("."):
            continue
        sid = scene_id(raw, p)
        if sid in out:
            raise ValueError(f"{out[sid]} and {p} would both be scene {sid!r}; rename one")
        out[sid] = p
    return out


class CustomReader:
    """The reader of ``pcseg prepare custom`` (the interface of the benchmark reader modules:
    ``SPLITS``, ``list_scenes(raw, split)``, ``read_scene(raw, scene_id)``); picklable."""

    def __init__(self, spec: ClassesSpec, source: str = "CLASSES.yaml") -> None:
        self.spec = spec
        self.source = source
        self.SPLITS = {k: None for k in spec.split_patterns()}

    def list_scenes(self, raw: str | Path, split: str) -> list[str]:
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

    def read_scene(self, raw: str | Path, sid: str, nonfinite: str = "refuse") -> Scene:
        """Read, check and convert the file of scene ``sid`` (``nonfinite``: see
        :func:`to_scene`)."""
        files = list_files(Path(raw))
        if sid not in files:
            raise ValueError(f"no file for scene {sid!r} under {raw}")
        pf = read_points(files[sid], self.spec.columns)
        return to_scene(pf, self.spec, sid, self.source, nonfinite=nonfinite)


def prepare_custom(
    raw: str | Path,
    classes: str | Path,
    out: str | Path,
    labels: list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``pcseg prepare custom``: the processed folder of a folder of files.

    ``labels``: weak-label specs (default ``['given']`` when the files carry labels, none
    otherwise); ``options``: further :class:`pcseg.datasets.prepare.PrepareOptions` fields
    (``workers``, ``overwrite``, ``seed``, ``splits``). The class spec is kept in
    ``meta.json`` (key ``classes``) for ``pcseg predict``. Warns (and lists in the summary)
    every class with no labelled point at all.
    """
    from pcseg.datasets.prepare import PrepareOptions, prepare_dataset

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
        class_names=list(spec.names),
        meta_extra={
            "classes": spec.model_dump(mode="json"),
            "classes_file": str(Path(classes).resolve()),
        },
        **options,
    )
    summary = prepare_dataset(opts)
    if spec.label_field:
        empty = [n for n, c in summary["class_histogram"].items() if c == 0]
        if empty:
            msg = (
                f"{classes}: class(es) {empty} in 'names' have no labelled point in any "
                f"file of {raw} (label field {spec.label_field!r})"
            )
            warnings.warn(msg, stacklevel=2)
            print(f"warning: {msg}", file=sys.stderr)
            summary["empty_classes"] = empty
    return summary
