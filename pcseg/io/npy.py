"""NumPy files: ``.npy`` a structured array with named columns, ``.npz`` one 1-D array per
named column (or an (N, 3) ``xyz``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pcseg.io.atomic import atomic_save_with
from pcseg.io.point_file import PointFile, PointFileError, flat_columns, reason, xyz_from


def check_npy_header(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, shape) from the header of the ``.npy`` ``path``, checked against its size
    before numpy allocates the array (a header claiming 10^10 rows would otherwise reserve
    them); :class:`PointFileError` naming the file, the shape claimed and what the bytes
    after the header hold."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except Exception as e:
        raise PointFileError(f"{path}: not a readable .npy file: {reason(e)}") from e
    size = path.stat().st_size
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > size - offset:
        raise PointFileError(
            f"{path}: damaged .npy header: shape {shape} of {dtype.itemsize}-byte records "
            f"needs {need:,} bytes, but {size - offset:,} follow the header "
            f"(file size {size:,} bytes)"
        )
    return dtype, shape


def read_npy(path: str | Path) -> PointFile:
    """A structured ``.npy`` (named columns incl. x, y, z; the header checked first:
    :func:`check_npy_header`)."""
    path = Path(path)
    check_npy_header(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise PointFileError(f"{path}: not a readable .npy file: {reason(e)}") from e
    if arr.dtype.names is None:
        raise PointFileError(
            f"{path}: .npy must be a structured array with named columns "
            f"(x, y, z, ...); got a plain {arr.dtype} array of shape {arr.shape}"
        )
    cols = {n: np.asarray(arr[n]) for n in arr.dtype.names}
    return PointFile(path, "npy", xyz_from(path, cols), cols)


def read_npz(path: str | Path) -> PointFile:
    """An ``.npz`` with one array per column (x, y, z, or an (N, 3) ``xyz``)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            cols = {k: z[k] for k in z.files}
    except Exception as e:
        raise PointFileError(f"{path}: not a readable .npz file: {reason(e)}") from e
    if "xyz" in cols and not all(a in cols for a in "xyz"):
        xyz = np.asarray(cols["xyz"])
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise PointFileError(f"{path}: field 'xyz' must be (N, 3), got {xyz.shape}")
        xyz64 = xyz.astype(np.float64)
    else:
        xyz64 = xyz_from(path, cols)
    n = len(xyz64)
    for k, v in cols.items():
        if len(v) != n:
            raise PointFileError(f"{path}: field {k!r} has {len(v)} rows, the coordinates {n}")
    return PointFile(path, "npz", xyz64, cols)


def write_npy(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    """A structured ``.npy``: the input's columns (an input ``.npy`` keeps its dtype) + extra."""
    if pf.format == "npy":
        cols = {k: v for k, v in pf.fields.items() if k not in extra}
        cols.update(extra)
    else:
        cols = flat_columns(pf, extra)
    arr = np.empty(pf.num_points, dtype=[(k, v.dtype.str, v.shape[1:]) for k, v in cols.items()])
    for k, v in cols.items():
        arr[k] = v
    atomic_save_with(out, lambda p: np.save(p, arr), suffix=".npy")


def write_npz(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    """The input ``.npz`` arrays unchanged plus ``extra``."""
    cols: dict[str, Any] = {**pf.fields, **extra}
    atomic_save_with(out, lambda p: np.savez(p, **cols), suffix=".npz")
