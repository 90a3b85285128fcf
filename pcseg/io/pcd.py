"""PCD with ``open3d.t.io`` (tensor API: keeps extra fields; ASCII / binary /
binary_compressed); open3d is the ``viz`` extra. :func:`check_pcd_header` checks the
header's ``POINTS`` / ``WIDTH`` x ``HEIGHT`` and ``DATA`` against the file size first."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.io.atomic import atomic_save_with
from pcseg.io.point_file import PointFile, PointFileError, count_lines, reason

#: a PCD header longer than this is not a header
PCD_MAX_HEADER_BYTES = 1 << 16
#: the keys a PCD header must have, and the ``DATA`` kinds
PCD_KEYS = ("FIELDS", "SIZE", "TYPE", "WIDTH", "HEIGHT", "DATA")
PCD_DATA = ("ascii", "binary", "binary_compressed")


def _pcd_header(path: Path) -> tuple[dict[str, list[str]], int, int]:
    """({key: values} of the header of the PCD ``path`` up to its ``DATA`` line, data offset,
    file size); :class:`PointFileError` when there is no ``DATA`` line in the first
    :data:`PCD_MAX_HEADER_BYTES` or a required key is missing."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(PCD_MAX_HEADER_BYTES)
    except OSError as e:
        raise PointFileError(f"{path}: not a readable PCD file: {reason(e)}") from e
    keys: dict[str, list[str]] = {}
    pos = 0
    while "DATA" not in keys:
        nl = head.find(b"\n", pos)
        if nl < 0:
            raise PointFileError(
                f"{path}: not a readable PCD file: no DATA line in its first "
                f"{min(len(head), PCD_MAX_HEADER_BYTES):,} bytes"
            )
        tok = head[pos:nl].decode("ascii", errors="replace").split()
        pos = nl + 1
        if tok and not tok[0].startswith("#"):
            keys[tok[0].upper()] = tok[1:]
    missing = [k for k in PCD_KEYS if k not in keys]
    if missing:
        raise PointFileError(f"{path}: damaged PCD header: no {' / '.join(missing)} line")
    return keys, pos, size


def _ints(path: Path, keys: dict[str, list[str]], key: str) -> list[int]:
    try:
        vals = [int(v) for v in keys[key]]
    except ValueError:
        vals = [-1]
    if not vals or min(vals) < 0:
        raise PointFileError(
            f"{path}: damaged PCD header: {key} {' '.join(keys[key])!r} is not a list of "
            "non-negative integers"
        )
    return vals


def check_pcd_header(path: str | Path) -> int:
    """Sanity-check the header of the PCD ``path`` before anything is allocated (a hostile
    ``POINTS`` would otherwise exhaust memory): ``FIELDS`` / ``SIZE`` / ``TYPE`` / ``COUNT``
    of one length, ``POINTS`` = ``WIDTH`` x ``HEIGHT``, and the data the file holds:
    ``binary`` ``POINTS`` x record size bytes, ``binary_compressed`` its two size words
    (compressed within the file, uncompressed = ``POINTS`` x record size), ``ascii`` a line
    per point (counted lazily). Returns the number of points; :class:`PointFileError` naming
    the file, the key, the claimed value and what the file allows."""
    path = Path(path)
    keys, offset, size = _pcd_header(path)
    data = size - offset
    fields, sizes = keys["FIELDS"], _ints(path, keys, "SIZE")
    counts = _ints(path, keys, "COUNT") if "COUNT" in keys else [1] * len(fields)
    if not (len(fields) == len(sizes) == len(keys["TYPE"]) == len(counts)):
        raise PointFileError(
            f"{path}: damaged PCD header: FIELDS ({len(fields)}), SIZE ({len(sizes)}), TYPE "
            f"({len(keys['TYPE'])}) and COUNT ({len(counts)}) differ in length"
        )
    (width,), (height,) = _ints(path, keys, "WIDTH")[:1], _ints(path, keys, "HEIGHT")[:1]
    points = _ints(path, keys, "POINTS")[0] if "POINTS" in keys else width * height
    if points != width * height:
        raise PointFileError(
            f"{path}: damaged PCD header: POINTS {points:,} but WIDTH x HEIGHT = "
            f"{width:,} x {height:,} = {width * height:,}"
        )
    record = sum(s * c for s, c in zip(sizes, counts))
    kind = (keys["DATA"] or [""])[0].lower()
    if kind not in PCD_DATA:
        raise PointFileError(f"{path}: damaged PCD header: DATA {kind!r} is none of {PCD_DATA}")

    def bad(what: str) -> PointFileError:
        return PointFileError(
            f"{path}: damaged PCD header: POINTS {points:,} (records of {record} bytes) but "
            f"{what} (file size {size:,} bytes)"
        )

    if kind == "binary" and points * record > data:
        raise bad(f"the {data:,} bytes after the header hold at most {data // max(record, 1):,}")
    if kind == "binary_compressed" and points:
        if data < 8:
            raise bad(f"only {data} bytes follow the header (8 of sizes needed)")
        with open(path, "rb") as fh:
            fh.seek(offset)
            packed, unpacked = struct.unpack("<II", fh.read(8))
        if packed > data - 8 or unpacked != points * record:
            raise bad(
                f"the compressed block claims {packed:,} bytes ({data - 8:,} follow) that "
                f"unpack to {unpacked:,} ({points * record:,} needed)"
            )
    if kind == "ascii":
        have = count_lines(path, offset, points)
        if have < points:
            raise bad(f"the file has {have:,} lines after the header, one per point")
    return points


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
    check_pcd_header(path)
    try:
        pcd = o3d.t.io.read_point_cloud(str(path))
    except Exception as e:
        raise PointFileError(f"{path}: not a readable PCD file: {reason(e)}") from e
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
    atomic_save_with(out, lambda p: o3d.t.io.write_point_cloud(str(p), pcd), suffix=".pcd")
