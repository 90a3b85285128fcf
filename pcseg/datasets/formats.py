"""Point-cloud files in the formats people have, each read with the library made for it.

One reader per format returns a :class:`PointFile`: float64 coordinates, every per-point
field under its own name in its ORIGINAL dtype, and what is needed to write the file back
(:func:`write_points`) with all its fields and its own precision:

========  ==========================  ==================================================
format    suffixes                    library / notes
========  ==========================  ==================================================
ply       .ply                        ``plyfile``: any vertex properties, ASCII or binary;
                                      other elements (faces) are kept on write-back
las       .las, .laz                  ``laspy`` (LAZ through the ``lazrs`` backend): real
                                      coordinates = integer record * scale + offset in
                                      float64; write-back keeps the integer X/Y/Z records,
                                      the header, VLRs and every dimension incl. extra bytes
pcd       .pcd                        ``open3d.t.io`` (tensor API: keeps extra fields, ASCII
                                      / binary / binary_compressed); open3d is the ``viz``
                                      extra
npy       .npy                        numpy structured array with named columns
npz       .npz                        one 1-D array per named column (or ``xyz`` (N, 3))
txt       .txt, .csv, .xyz, .pts      numpy; columns from a header line or a column spec;
                                      write-back appends columns to the original lines
bin       .bin                        KITTI velodyne: float32 x, y, z, intensity
========  ==========================  ==================================================

Field names: LAS dimensions as laspy names them (``X``/``Y``/``Z`` integer records,
``intensity``, ``return_number``, ``classification``, ``red``..., extra bytes by name);
PLY / PCD / NPY / TXT columns by their own names. ``x``, ``y``, ``z`` of the formats that
store float coordinates are also fields (their original dtype is kept there).

Errors are :class:`PointFileError` (a ``ValueError``) naming the file and, where one is at
fault, the field.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SUFFIXES: dict[str, str] = {
    ".ply": "ply",
    ".las": "las",
    ".laz": "las",
    ".pcd": "pcd",
    ".npy": "npy",
    ".npz": "npz",
    ".txt": "txt",
    ".csv": "txt",
    ".xyz": "txt",
    ".pts": "txt",
    ".bin": "bin",
}
#: the formats ``pcseg predict --format`` can convert to (besides ``same``)
OUTPUT_FORMATS = ("ply", "las", "npy")
#: suffix written for each output format
OUTPUT_SUFFIX = {
    "ply": ".ply",
    "las": ".las",
    "npy": ".npy",
    "npz": ".npz",
    "pcd": ".pcd",
    "txt": ".txt",
    "bin": ".bin",
}


class PointFileError(ValueError):
    """A point file that cannot be read or written (message names the file and the field)."""


@dataclass
class PointFile:
    """One point-cloud file in memory.

    Attributes:
        path: the file read.
        format: 'ply' | 'las' | 'pcd' | 'npy' | 'npz' | 'txt' | 'bin'.
        xyz: (N, 3) float64 real-world coordinates.
        fields: every per-point field, (N,) or (N, C), in its original dtype.
        native: what the writer needs (the ``plyfile.PlyData``, the ``laspy.LasData``, the
            text lines, ...); format-specific.
    """

    path: Path
    format: str
    xyz: np.ndarray
    fields: dict[str, np.ndarray]
    native: dict[str, Any] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return len(self.xyz)

    def field(self, name: str) -> np.ndarray:
        """The field ``name``; :class:`PointFileError` listing the fields the file has."""
        if name not in self.fields:
            raise PointFileError(
                f"{self.path}: no field {name!r}; the file has fields {sorted(self.fields)}"
            )
        return self.fields[name]


def file_format(path: str | Path) -> str:
    """The format of ``path`` from its suffix (PointFileError for an unknown one)."""
    suf = Path(path).suffix.lower()
    if suf not in SUFFIXES:
        raise PointFileError(
            f"{path}: unknown point-cloud suffix {suf!r}; known {sorted(SUFFIXES)}"
        )
    return SUFFIXES[suf]


def read_points(path: str | Path, columns: Sequence[str] | None = None) -> PointFile:
    """Read any supported file (format from the suffix).

    ``columns``: names of the columns of a headerless TXT/CSV file (ignored otherwise).
    Raises :class:`PointFileError` naming the file (empty file, unreadable, missing x/y/z).
    """
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise PointFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise PointFileError(f"{path}: empty file (0 bytes)")
    readers: dict[str, Callable[..., PointFile]] = {
        "ply": read_ply,
        "las": read_las,
        "pcd": read_pcd,
        "npy": read_npy,
        "npz": read_npz,
        "bin": read_kitti_bin,
    }
    if fmt == "txt":
        pf = read_txt(path, columns)
    else:
        pf = readers[fmt](path)
    if pf.num_points == 0:
        raise PointFileError(f"{path}: the file holds no points")
    return pf


def _xyz_from(path: Path, cols: dict[str, np.ndarray]) -> np.ndarray:
    missing = [a for a in "xyz" if a not in cols]
    if missing:
        raise PointFileError(
            f"{path}: no coordinate field(s) {missing}; the file has fields {sorted(cols)}"
        )
    return np.stack([np.asarray(cols[a], dtype=np.float64) for a in "xyz"], axis=1)


# ----------------------------------------------------------------------------- PLY
def read_ply(path: str | Path) -> PointFile:
    """PLY (ASCII or binary) with ``plyfile``: every vertex property is a field."""
    from plyfile import PlyData  # type: ignore[import-untyped]

    path = Path(path)
    try:
        ply = PlyData.read(str(path))
    except Exception as e:
        raise PointFileError(f"{path}: not a readable PLY file: {e}") from e
    if "vertex" not in [el.name for el in ply.elements]:
        raise PointFileError(
            f"{path}: PLY has no 'vertex' element (elements: {[el.name for el in ply.elements]})"
        )
    data = ply["vertex"].data
    cols = {name: np.asarray(data[name]) for name in data.dtype.names or ()}
    for name, arr in cols.items():
        if arr.dtype == object:
            raise PointFileError(
                f"{path}: vertex property {name!r} is a list property; "
                "only scalar vertex properties are supported"
            )
    return PointFile(path, "ply", _xyz_from(path, cols), cols, {"ply": ply})


def _ply_dtype(arr: np.ndarray) -> str:
    return np.dtype(arr.dtype).newbyteorder("=").str.lstrip("<>=|")


def write_ply(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    """The input PLY again (same elements, comments, text/binary, byte order) with the
    vertex properties of ``extra`` added (replaced when they exist)."""
    from numpy.lib import recfunctions as rfn
    from plyfile import PlyData, PlyElement  # type: ignore[import-untyped]

    ply = pf.native.get("ply")
    if ply is None:  # conversion from another format
        _write_plain_ply(pf, out, extra)
        return
    vert = ply["vertex"].data
    keep = [n for n in vert.dtype.names if n not in extra]
    base = rfn.repack_fields(vert[keep])
    new = np.empty(len(vert), dtype=base.dtype.descr + [(k, v.dtype.str) for k, v in extra.items()])
    for n in keep:
        new[n] = base[n]
    for k, v in extra.items():
        new[k] = v
    elements = [
        PlyElement.describe(new, "vertex") if el.name == "vertex" else el for el in ply.elements
    ]
    outply = PlyData(
        elements,
        text=ply.text,
        byte_order=ply.byte_order,
        comments=list(ply.comments),
        obj_info=list(ply.obj_info),
    )
    _atomic(out, lambda p: outply.write(str(p)))


def _write_plain_ply(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    from plyfile import PlyData, PlyElement  # type: ignore[import-untyped]

    cols = _flat_columns(pf, extra)
    arr = np.empty(pf.num_points, dtype=[(k, v.dtype.str) for k, v in cols.items()])
    for k, v in cols.items():
        arr[k] = v
    el = PlyElement.describe(arr, "vertex")
    _atomic(out, lambda p: PlyData([el], text=False).write(str(p)))


# ----------------------------------------------------------------------------- LAS / LAZ
LAZ_HINT = "install the LAZ backend: pip install 'laspy[lazrs]' (or pip install lazrs)"


def _laz_backend_available() -> bool:
    import laspy  # type: ignore[import-untyped]

    return any(b.is_available() for b in laspy.LazBackend)


def read_las(path: str | Path) -> PointFile:
    """LAS/LAZ with ``laspy``: xyz = record * scale + offset (float64); every point
    dimension (incl. extra bytes) is a field; the integer records are kept for write-back."""
    try:
        import laspy  # type: ignore[import-untyped]
    except ImportError as e:  # pragma: no cover - laspy is a dependency
        raise PointFileError(f"{path}: reading LAS needs laspy: pip install 'laspy[lazrs]'") from e
    path = Path(path)
    if path.suffix.lower() == ".laz" and not _laz_backend_available():
        raise PointFileError(f"{path}: LAZ file but no LAZ backend is installed; {LAZ_HINT}")
    try:
        las = laspy.read(str(path))
    except laspy.errors.LaspyException as e:
        msg = str(e)
        if "LazBackend" in msg or "laz" in msg.lower():
            raise PointFileError(f"{path}: cannot decompress LAZ ({msg}); {LAZ_HINT}") from e
        raise PointFileError(f"{path}: not a readable LAS file: {msg}") from e
    except Exception as e:
        raise PointFileError(f"{path}: not a readable LAS file: {e}") from e
    names = list(las.point_format.dimension_names)
    cols = {n: np.asarray(las[n]) for n in names}
    xyz = np.stack(
        [
            np.asarray(las.x, dtype=np.float64),
            np.asarray(las.y, dtype=np.float64),
            np.asarray(las.z, dtype=np.float64),
        ],
        axis=1,
    )
    return PointFile(path, "las", xyz, cols, {"las": las})


def _extra_dim_type(v: np.ndarray) -> np.dtype:
    return np.dtype(v.dtype)


def write_las(
    pf: PointFile, out: Path, extra: dict[str, np.ndarray], classification: np.ndarray | None = None
) -> None:
    """The input LAS again — header, VLRs, integer X/Y/Z records and every dimension
    unchanged — with ``classification`` set (when given) and the fields of ``extra`` as extra
    dimensions (replaced when they exist). From another format: a LAS 1.4 file, point format
    6 (7 with RGB), scale 1 mm, offset = the floor of the minimum."""
    import laspy  # type: ignore[import-untyped]

    las = pf.native.get("las")
    if las is None:
        las = _new_las(pf)
    else:
        las = laspy.LasData(copy.deepcopy(las.header), points=las.points.copy())
    have = set(las.point_format.dimension_names)
    for k, v in extra.items():
        if k not in have:
            las.add_extra_dim(laspy.ExtraBytesParams(name=k, type=_extra_dim_type(v)))
        las[k] = v
    if classification is not None:
        las.classification = classification
    if out.suffix.lower() == ".laz" and not _laz_backend_available():
        raise PointFileError(f"{out}: writing LAZ needs a LAZ backend; {LAZ_HINT}")
    _atomic(out, lambda p: las.write(str(p)))


def _new_las(pf: PointFile) -> Any:
    import laspy  # type: ignore[import-untyped]

    has_rgb = all(c in pf.fields for c in ("red", "green", "blue"))
    header = laspy.LasHeader(point_format=7 if has_rgb else 6, version="1.4")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.floor(pf.xyz.min(axis=0))
    las = laspy.LasData(header)
    las.x, las.y, las.z = pf.xyz[:, 0], pf.xyz[:, 1], pf.xyz[:, 2]
    if has_rgb:
        for c in ("red", "green", "blue"):
            v = np.asarray(pf.fields[c])
            las[c] = (v.astype(np.uint16) * 257) if v.dtype == np.uint8 else v.astype(np.uint16)
    if "intensity" in pf.fields:
        v = np.asarray(pf.fields["intensity"], dtype=np.float64)
        las.intensity = (
            np.clip(v, 0, 1) * 65535 if v.max(initial=0) <= 1 else np.clip(v, 0, 65535)
        ).astype(np.uint16)
    return las


# ----------------------------------------------------------------------------- PCD
def read_pcd(path: str | Path) -> PointFile:
    """PCD with open3d's tensor reader (keeps every field, unlike the legacy reader)."""
    path = Path(path)
    try:
        import open3d as o3d_mod
    except ImportError as e:
        raise PointFileError(
            f"{path}: reading PCD needs open3d: pip install 'pcseg[viz]' (or open3d / open3d-cpu)"
        ) from e
    o3d: Any = o3d_mod
    try:
        pcd = o3d.t.io.read_point_cloud(str(path))
    except Exception as e:
        raise PointFileError(f"{path}: not a readable PCD file: {e}") from e
    cols: dict[str, np.ndarray] = {}
    for k in pcd.point:
        v = pcd.point[k].numpy()
        cols[k] = v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v
    if "positions" not in cols:
        raise PointFileError(f"{path}: PCD has no x/y/z fields (fields: {sorted(cols)})")
    pos = cols.pop("positions")
    xyz = np.asarray(pos, dtype=np.float64)
    for i, a in enumerate("xyz"):
        cols[a] = pos[:, i]
    return PointFile(path, "pcd", xyz, cols, {"position_dtype": pos.dtype})


def write_pcd(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    """A binary PCD with every field of the input plus ``extra`` (open3d tensor writer)."""
    import open3d

    o3d: Any = open3d
    pcd = o3d.t.geometry.PointCloud()
    pos_dtype = pf.native.get("position_dtype", np.float64)
    pcd.point.positions = o3d.core.Tensor(pf.xyz.astype(pos_dtype))
    for k, v in {**pf.fields, **extra}.items():
        if k in ("x", "y", "z"):
            continue
        arr = np.ascontiguousarray(v.reshape(len(v), -1))
        pcd.point[k] = o3d.core.Tensor(arr)
    _atomic(out, lambda p: o3d.t.io.write_point_cloud(str(p), pcd), suffix=".pcd")


# ----------------------------------------------------------------------------- NPY / NPZ
def read_npy(path: str | Path) -> PointFile:
    """A structured ``.npy`` (named columns incl. x, y, z)."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise PointFileError(f"{path}: not a readable .npy file: {e}") from e
    if arr.dtype.names is None:
        raise PointFileError(
            f"{path}: .npy must be a structured array with named columns "
            f"(x, y, z, ...); got a plain {arr.dtype} array of shape {arr.shape}"
        )
    cols = {n: np.asarray(arr[n]) for n in arr.dtype.names}
    return PointFile(path, "npy", _xyz_from(path, cols), cols)


def read_npz(path: str | Path) -> PointFile:
    """An ``.npz`` with one array per column (x, y, z, or an (N, 3) ``xyz``)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            cols = {k: z[k] for k in z.files}
    except Exception as e:
        raise PointFileError(f"{path}: not a readable .npz file: {e}") from e
    if "xyz" in cols and not all(a in cols for a in "xyz"):
        xyz = np.asarray(cols["xyz"])
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise PointFileError(f"{path}: field 'xyz' must be (N, 3), got {xyz.shape}")
        xyz64 = xyz.astype(np.float64)
    else:
        xyz64 = _xyz_from(path, cols)
    n = len(xyz64)
    for k, v in cols.items():
        if len(v) != n:
            raise PointFileError(f"{path}: field {k!r} has {len(v)} rows, the coordinates {n}")
    return PointFile(path, "npz", xyz64, cols)


def _flat_columns(pf: PointFile, extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """x, y, z (float64) + every 1-D field (multi-column fields split as NAME_i) + extra."""
    cols: dict[str, np.ndarray] = {a: pf.xyz[:, i] for i, a in enumerate("xyz")}
    skip = {"X", "Y", "Z", "x", "y", "z", "xyz"}
    for k, v in {**pf.fields, **extra}.items():
        if k in skip:
            continue
        v = np.asarray(v)
        if v.dtype == bool:
            v = v.astype(np.uint8)
        if v.ndim == 1:
            cols[k] = v
        else:
            for i in range(v.reshape(len(v), -1).shape[1]):
                cols[f"{k}_{i}"] = v.reshape(len(v), -1)[:, i]
    return cols


def write_npy(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    """A structured ``.npy``: the input's columns (an input ``.npy`` keeps its dtype) + extra."""
    if pf.format == "npy":
        cols = {k: v for k, v in pf.fields.items() if k not in extra}
        cols.update(extra)
    else:
        cols = _flat_columns(pf, extra)
    arr = np.empty(pf.num_points, dtype=[(k, v.dtype.str, v.shape[1:]) for k, v in cols.items()])
    for k, v in cols.items():
        arr[k] = v
    _atomic(out, lambda p: np.save(p, arr), suffix=".npy")


def write_npz(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    """The input ``.npz`` arrays unchanged plus ``extra``."""
    cols: dict[str, Any] = {**pf.fields, **extra}
    _atomic(out, lambda p: np.savez(p, **cols), suffix=".npz")


# ----------------------------------------------------------------------------- TXT / CSV
def _split(line: str, delim: str | None) -> list[str]:
    return [t for t in (line.split(delim) if delim else line.split())]


def read_txt(path: str | Path, columns: Sequence[str] | None = None) -> PointFile:
    """Whitespace- or comma-separated text. Column names: the first line when it is not
    numeric (a header, e.g. ``x,y,z,intensity,label`` or ``//X Y Z`` as CloudCompare
    writes), else ``columns``, else ``x y z`` + ``f3``, ``f4``... Values are float64
    (integer-valued columns become int64)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise PointFileError(f"{path}: not a readable text file: {e}") from e
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise PointFileError(f"{path}: empty file (no lines)")
    delim = "," if "," in lines[0] else (";" if ";" in lines[0] else None)
    first = [t.strip() for t in _split(lines[0].lstrip("/#"), delim)]
    header = None
    try:
        [float(t) for t in first]
    except ValueError:
        header = first
    body = lines[1:] if header else lines
    if not body:
        raise PointFileError(f"{path}: the file holds no points (header only)")
    try:
        vals = np.array([[float(t) for t in _split(ln, delim)] for ln in body], dtype=np.float64)
    except ValueError as e:
        raise PointFileError(f"{path}: non-numeric value or ragged rows: {e}") from e
    ncol = vals.shape[1]
    names = list(header or columns or ["x", "y", "z"] + [f"f{i}" for i in range(3, ncol)])
    if len(names) != ncol:
        raise PointFileError(
            f"{path}: {ncol} columns but the column names are {names} "
            f"({'header' if header else 'columns spec'})"
        )
    names = [n.lower() if n.lower() in ("x", "y", "z") else n for n in names]
    cols: dict[str, np.ndarray] = {}
    for i, n in enumerate(names):
        c = vals[:, i]
        cols[n] = c.astype(np.int64) if n not in "xyz" and np.all(c == np.round(c)) else c
    return PointFile(
        path,
        "txt",
        _xyz_from(path, cols),
        cols,
        {"lines": body, "header": lines[0] if header else None, "delim": delim},
    )


def write_txt(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    """The original lines, byte for byte, with the ``extra`` columns appended."""
    delim = pf.native.get("delim")
    sep = delim or " "
    fmts = {
        k: ("{:d}" if np.issubdtype(v.dtype, np.integer) else "{:.6g}") for k, v in extra.items()
    }
    lines = list(pf.native.get("lines") or [])
    if not lines:  # conversion from another format
        cols = _flat_columns(pf, extra)
        arr = np.stack([np.asarray(v, dtype=np.float64) for v in cols.values()], axis=1)
        _atomic(
            out, lambda p: np.savetxt(p, arr, fmt="%.17g", header=" ".join(cols), comments="//")
        )
        return
    keys = list(extra)
    body = [
        ln + sep + sep.join(fmts[k].format(extra[k][i].item()) for k in keys)
        for i, ln in enumerate(lines)
    ]
    head = pf.native.get("header")
    if head is not None:
        body.insert(0, head + sep + sep.join(keys))
    _atomic(out, lambda p: Path(p).write_text("\n".join(body) + "\n"))


# ----------------------------------------------------------------------------- KITTI .bin
def read_kitti_bin(path: str | Path) -> PointFile:
    """KITTI velodyne ``.bin``: float32 records (x, y, z, intensity)."""
    path = Path(path)
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % 4:
        raise PointFileError(
            f"{path}: size {path.stat().st_size} bytes is not a multiple of 16 "
            "(KITTI .bin = float32 x, y, z, intensity per point)"
        )
    pts = raw.reshape(-1, 4)
    cols = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "intensity": pts[:, 3]}
    return PointFile(path, "bin", pts[:, :3].astype(np.float64), cols)


def write_kitti_bin(
    pf: PointFile, out: Path, extra: dict[str, np.ndarray], label_codes: np.ndarray | None = None
) -> None:
    """``.bin`` has no room for more fields: the input is copied unchanged, with
    ``<stem>.label`` (uint32 class codes, SemanticKITTI style) and ``<stem>.<name>.npy``
    for every extra field next to it."""
    _atomic(out, lambda p: shutil.copyfile(pf.path, p), suffix=".bin")
    codes = label_codes if label_codes is not None else extra.get("pred_class")
    if codes is not None:
        data = np.asarray(codes).astype("<u4").tobytes()
        _atomic(out.with_suffix(".label"), lambda p: Path(p).write_bytes(data))
    for k, v in extra.items():
        _atomic(out.with_name(f"{out.stem}.{k}.npy"), _saver(v), suffix=".npy")


def _saver(v: np.ndarray) -> Callable[[Path], None]:
    return lambda p: np.save(p, v)


# ----------------------------------------------------------------------------- dispatch
def output_path(pf: PointFile, out_dir: Path, fmt: str = "same", stem: str | None = None) -> Path:
    """Where :func:`write_points` writes ``pf`` in ``out_dir``."""
    stem = stem or pf.path.stem
    if fmt == "same":
        suffix = pf.path.suffix.lower() if pf.format in ("las", "txt") else OUTPUT_SUFFIX[pf.format]
        return out_dir / f"{stem}{suffix}"
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be 'same' or one of {OUTPUT_FORMATS}, got {fmt!r}")
    return out_dir / f"{stem}{OUTPUT_SUFFIX[fmt]}"


def write_points(
    pf: PointFile,
    out: str | Path,
    extra: dict[str, np.ndarray],
    fmt: str = "same",
    classification: np.ndarray | None = None,
) -> Path:
    """Write ``pf`` with its original fields plus the per-point ``extra`` fields to ``out``
    (atomically: a failed write leaves nothing). ``fmt``: 'same' (the input's format) or one
    of :data:`OUTPUT_FORMATS`. ``classification``: LAS classification codes to set (LAS
    outputs), or the codes of the ``.label`` file of a KITTI ``.bin``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    target = pf.format if fmt == "same" else fmt
    extra = {k: np.asarray(v) for k, v in extra.items()}
    if target == "ply":
        write_ply(pf if pf.format == "ply" else _plain(pf), out, extra)
    elif target == "las":
        write_las(pf if pf.format == "las" else _plain(pf), out, extra, classification)
    elif target == "npy":
        write_npy(pf, out, extra)
    elif target == "npz":
        write_npz(pf, out, extra)
    elif target == "pcd":
        write_pcd(pf, out, extra)
    elif target == "txt":
        write_txt(pf, out, extra)
    elif target == "bin":
        write_kitti_bin(pf, out, extra, classification)
    else:
        raise ValueError(f"unknown output format {target!r}")
    return out


def _plain(pf: PointFile) -> PointFile:
    """``pf`` without its native handle (so a writer converts from the fields)."""
    return PointFile(pf.path, pf.format, pf.xyz, pf.fields, {})


def _atomic(out: Path, write: Callable[[Path], Any], suffix: str | None = None) -> None:
    """Run ``write(tmp)`` on a temporary file in ``out``'s folder, then rename it to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=suffix or out.suffix, dir=out.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- streaming
#: formats read and written chunk by chunk by :func:`iter_chunks` / :func:`write_streamed`
#: (the out-of-core path of ``pcseg predict``); the others are read whole
STREAM_FORMATS = ("las", "npy", "ply")

#: PLY scalar property types (both spellings of the PLY format) -> numpy type codes
PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
#: the PLY type name written for a numpy type code (the sized spelling)
PLY_TYPE_NAMES: dict[str, str] = {
    "i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16",
    "i4": "int32", "u4": "uint32", "f4": "float32", "f8": "float64",
}  # fmt: skip
#: a PLY header longer than this is not a header
PLY_MAX_HEADER_BYTES = 1 << 20


@dataclass
class PlyLayout:
    """Where the vertices of a binary PLY are: ``header`` (its lines up to ``end_header``),
    ``dtype`` (one vertex record, in the file's byte order), ``rows``, ``offset`` (byte where
    the vertex data start) and ``props`` (index range of the vertex property lines in
    ``header``), ``byte_order`` (``'<'`` or ``'>'``)."""

    header: list[str]
    dtype: np.dtype
    rows: int
    offset: int
    props: tuple[int, int]
    byte_order: str


def ply_stream_layout(path: str | Path) -> PlyLayout | None:
    """The :class:`PlyLayout` of ``path`` when its vertices can be read chunk by chunk at
    offsets (binary, the vertex element first, scalar properties only), else None (ASCII,
    another element first, a list vertex property: read whole). Reads only the header;
    :class:`PointFileError` for a file that is not a PLY."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(PLY_MAX_HEADER_BYTES)
    end = head.find(b"end_header")
    nl = head.find(b"\n", end) if end >= 0 else -1
    if not head.startswith(b"ply") or nl < 0:
        raise PointFileError(f"{path}: not a readable PLY file (no 'ply' ... 'end_header')")
    lines = head[: nl + 1].decode("ascii", errors="replace").splitlines()
    fmt = next((ln.split() for ln in lines if ln.startswith("format ")), [])
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(
        fmt[1] if len(fmt) > 1 else ""
    )
    elements = [i for i, ln in enumerate(lines) if ln.startswith("element ")]
    if order is None or not elements or lines[elements[0]].split()[1:2] != ["vertex"]:
        return None
    first = elements[0]
    last = elements[1] if len(elements) > 1 else len(lines) - 1
    props, descr = (first + 1, last), []
    for ln in lines[first + 1 : last]:
        tok = ln.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] != "property" or len(tok) != 3 or tok[1] not in PLY_TYPES:
            return None  # a list property (or one this reader does not know): read whole
        descr.append((tok[2], order + PLY_TYPES[tok[1]]))
    try:
        rows = int(lines[first].split()[2])
    except (IndexError, ValueError):
        raise PointFileError(f"{path}: bad PLY header line {lines[first]!r}") from None
    return PlyLayout(lines, np.dtype(descr), rows, nl + 1, props, order)


@dataclass
class PointChunk:
    """Points ``start .. start + len(xyz)`` of a file read in chunks.

    ``xyz``: (n, 3) float64 real coordinates; ``names``: every per-point field of the file;
    ``record``: the chunk as stored (laspy ``ScaleAwarePointRecord`` / structured ndarray).
    """

    start: int
    xyz: np.ndarray
    names: list[str]
    record: Any

    def fields(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The fields of ``names`` this file has (others are skipped)."""
        return {n: np.asarray(self.record[n]) for n in names if n in self.names}


def stream_count(path: str | Path) -> int:
    """Number of points of a LAS/LAZ (header) or NPY (array header) file, without reading
    the points; :class:`PointFileError` for other formats or a bad file."""
    path = Path(path)
    fmt = file_format(path)
    if fmt == "las":
        import laspy  # type: ignore[import-untyped]

        try:
            with laspy.open(str(path)) as r:
                return int(r.header.point_count)
        except Exception as e:
            raise PointFileError(f"{path}: not a readable LAS file: {e}") from e
    if fmt in ("npy", "ply"):
        return int(_record_layout(path)[1])
    raise PointFileError(f"{path}: format {fmt!r} is not streamed (only {STREAM_FORMATS})")


def _record_layout(path: Path) -> tuple[np.dtype, int, int]:
    """(record dtype, rows, data offset) of a structured NPY or a streamable binary PLY."""
    if file_format(path) == "npy":
        return _npy_layout(path)
    layout = _streamed_ply_layout(path)
    return layout.dtype, layout.rows, layout.offset


def _streamed_ply_layout(path: Path) -> PlyLayout:
    """:func:`ply_stream_layout`, or :class:`PointFileError` when the PLY is not streamed."""
    layout = ply_stream_layout(path)
    if layout is None:
        raise PointFileError(
            f"{path}: this PLY is not streamed (ASCII, or the vertex element is not first, "
            "or a vertex property is a list); it is read whole"
        )
    return layout


def _npy_layout(path: Path) -> tuple[np.dtype, int, int]:
    """(dtype, rows, data offset) of a structured 1-D ``.npy`` (memory-mapped header read)."""
    try:
        m = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        raise PointFileError(f"{path}: not a readable .npy file: {e}") from e
    if m.dtype.names is None or m.ndim != 1:
        raise PointFileError(
            f"{path}: .npy must be a structured array with named columns "
            f"(x, y, z, ...); got a plain {m.dtype} array of shape {m.shape}"
        )
    dtype, rows, offset = m.dtype, int(m.shape[0]), int(getattr(m, "offset", 0))
    del m
    return dtype, rows, offset


def iter_chunks(path: str | Path, chunk_points: int) -> Iterator[PointChunk]:
    """The points of a LAS/LAZ (``laspy.open(...).chunk_iterator``), a structured NPY or a
    binary PLY (both read at offsets, never mapped whole) in chunks of at most
    ``chunk_points``; memory O(chunk)."""
    path = Path(path)
    fmt = file_format(path)
    if fmt == "las":
        import laspy  # type: ignore[import-untyped]

        if path.suffix.lower() == ".laz" and not _laz_backend_available():
            raise PointFileError(f"{path}: LAZ file but no LAZ backend is installed; {LAZ_HINT}")
        with laspy.open(str(path)) as r:
            names = list(r.header.point_format.dimension_names)
            start = 0
            for rec in r.chunk_iterator(chunk_points):
                xyz = np.stack(
                    [
                        np.asarray(rec.x, dtype=np.float64),
                        np.asarray(rec.y, dtype=np.float64),
                        np.asarray(rec.z, dtype=np.float64),
                    ],
                    axis=1,
                )
                yield PointChunk(start, xyz, names, rec)
                start += len(xyz)
        return
    if fmt not in ("npy", "ply"):
        raise PointFileError(f"{path}: format {fmt!r} is not streamed (only {STREAM_FORMATS})")
    dtype, rows, offset = _record_layout(path)
    names = list(dtype.names or ())
    missing = [a for a in "xyz" if a not in names]
    if missing:
        raise PointFileError(
            f"{path}: no coordinate field(s) {missing}; the file has fields {sorted(names)}"
        )
    with open(path, "rb") as fh:
        for start in range(0, rows, chunk_points):
            n = min(chunk_points, rows - start)
            fh.seek(offset + start * dtype.itemsize)
            arr = np.fromfile(fh, dtype=dtype, count=n)
            if len(arr) < n:
                raise PointFileError(
                    f"{path}: truncated: {rows} points declared, the data end at point "
                    f"{start + len(arr)}"
                )
            xyz = np.stack([arr[a].astype(np.float64) for a in "xyz"], axis=1)
            yield PointChunk(start, xyz, names, arr)


#: ``fill(chunk) -> (extra fields, classification codes or None)`` of :func:`write_streamed`
ChunkFill = Callable[[PointChunk], tuple[dict[str, np.ndarray], "np.ndarray | None"]]


def write_streamed(
    src: str | Path,
    out: str | Path,
    chunk_points: int,
    extra_dtypes: dict[str, Any],
    fill: ChunkFill,
) -> Path:
    """Write ``src`` again chunk by chunk with the per-point ``extra`` fields of
    ``fill(chunk)`` added (replaced when they exist), atomically (temporary file, then
    rename). LAS/LAZ: the header (scales, offsets, VLRs), the raw point records (integer
    X/Y/Z, bit fields, extra bytes) are copied byte for byte, ``extra`` become extra
    dimensions and the returned codes (when not None) set ``classification``. NPY: the
    input's columns with their dtypes, then the extra columns. PLY (binary): the header
    (comments, obj_info, other elements) with the extra vertex properties appended, the
    vertex records, then every byte after the vertices (faces, ...) as they were. Memory
    O(chunk)."""
    src, out = Path(src), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = file_format(src)
    if fmt == "las":
        _write_las_streamed(src, out, chunk_points, extra_dtypes, fill)
    elif fmt == "npy":
        _write_npy_streamed(src, out, chunk_points, extra_dtypes, fill)
    elif fmt == "ply":
        _write_ply_streamed(src, out, chunk_points, extra_dtypes, fill)
    else:
        raise PointFileError(f"{src}: format {fmt!r} is not streamed (only {STREAM_FORMATS})")
    return out


def _write_las_streamed(
    src: Path, out: Path, chunk_points: int, extra_dtypes: dict[str, Any], fill: ChunkFill
) -> None:
    import laspy  # type: ignore[import-untyped]

    if out.suffix.lower() == ".laz" and not _laz_backend_available():
        raise PointFileError(f"{out}: writing LAZ needs a LAZ backend; {LAZ_HINT}")
    with laspy.open(str(src)) as r:
        header = copy.deepcopy(r.header)
    have = set(header.point_format.dimension_names)
    new = [
        laspy.ExtraBytesParams(name=k, type=np.dtype(t))
        for k, t in extra_dtypes.items()
        if k not in have
    ]
    if new:
        header.add_extra_dims(new)

    def write(tmp: Path) -> None:
        with laspy.open(str(tmp), mode="w", header=header) as w:
            for chunk in iter_chunks(src, chunk_points):
                rec = chunk.record
                outrec = laspy.ScaleAwarePointRecord.zeros(len(rec), header=header)
                for name in rec.array.dtype.names:
                    outrec.array[name] = rec.array[name]
                extra, cls = fill(chunk)
                for k, v in extra.items():
                    outrec[k] = v
                if cls is not None:
                    outrec.classification = cls
                w.write_points(outrec)

    _atomic(out, write)


def _write_npy_streamed(
    src: Path, out: Path, chunk_points: int, extra_dtypes: dict[str, Any], fill: ChunkFill
) -> None:
    from numpy.lib import format as npformat

    dtype, rows, _ = _npy_layout(src)
    keep = [n for n in dtype.names or () if n not in extra_dtypes]
    descr = [(n, dtype.fields[n][0]) for n in keep] if dtype.fields else []
    out_dtype = np.dtype(descr + [(k, np.dtype(t)) for k, t in extra_dtypes.items()])

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            hdr = {
                "descr": npformat.dtype_to_descr(out_dtype),
                "fortran_order": False,
                "shape": (rows,),
            }
            npformat.write_array_header_2_0(fh, hdr)
            for chunk in iter_chunks(src, chunk_points):
                fh.write(_fill_records(chunk, out_dtype, keep, fill).tobytes())

    _atomic(out, write, suffix=".npy")


def _fill_records(
    chunk: PointChunk, out_dtype: np.dtype, keep: list[str], fill: ChunkFill
) -> np.ndarray:
    """One chunk of output records: the ``keep`` columns of the input, then ``fill``'s."""
    arr = np.empty(len(chunk.xyz), dtype=out_dtype)
    for n in keep:
        arr[n] = chunk.record[n]
    extra, _ = fill(chunk)
    for k, v in extra.items():
        arr[k] = v
    return arr


def _write_ply_streamed(
    src: Path, out: Path, chunk_points: int, extra_dtypes: dict[str, Any], fill: ChunkFill
) -> None:
    ply = _streamed_ply_layout(src)
    dtype, rows, offset, order = ply.dtype, ply.rows, ply.offset, ply.byte_order
    keep = [n for n in dtype.names or () if n not in extra_dtypes]
    new = [(k, order + np.dtype(t).newbyteorder("=").str[1:]) for k, t in extra_dtypes.items()]
    out_dtype = np.dtype([(n, dtype.fields[n][0]) for n in keep] + new)  # type: ignore[index]
    a, b = ply.props
    props = [ln for ln in ply.header[a:b] if ln.split()[0] != "property" or ln.split()[2] in keep]
    props += [f"property {PLY_TYPE_NAMES[np.dtype(t).str[1:]]} {k}" for k, t in new]
    header = "\n".join([*ply.header[:a], *props, *ply.header[b:]]) + "\n"

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(header.encode("ascii"))
            for chunk in iter_chunks(src, chunk_points):
                fh.write(_fill_records(chunk, out_dtype, keep, fill).tobytes())
            with open(src, "rb") as rest:  # other elements (faces, ...) byte for byte
                rest.seek(offset + rows * dtype.itemsize)
                shutil.copyfileobj(rest, fh, 1 << 24)

    _atomic(out, write, suffix=".ply")
