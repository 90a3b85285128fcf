"""PLY (ASCII or binary) with ``plyfile``: every scalar vertex property is a field; other
elements (faces, ...) are kept on write-back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.io.atomic import atomic_save_with
from pcseg.io.point_file import PointFile, PointFileError, flat_columns, xyz_from


def read_ply(path: str | Path) -> PointFile:
    """PLY (ASCII or binary) with ``plyfile``: every vertex property is a field."""
    from plyfile import PlyData

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
    return PointFile(path, "ply", xyz_from(path, cols), cols, {"ply": ply})


def write_ply(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    """The input PLY again (same elements, comments, text/binary, byte order) with the
    vertex properties of ``extra`` added (replaced when they exist)."""
    from numpy.lib import recfunctions as rfn
    from plyfile import PlyData, PlyElement

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
    atomic_save_with(out, lambda p: outply.write(str(p)), suffix=out.suffix)


def _write_plain_ply(pf: PointFile, out: Path, extra: dict[str, np.ndarray]) -> None:
    from plyfile import PlyData, PlyElement

    cols = flat_columns(pf, extra)
    arr = np.empty(pf.num_points, dtype=[(k, v.dtype.str) for k, v in cols.items()])
    for k, v in cols.items():
        arr[k] = v
    el = PlyElement.describe(arr, "vertex")
    atomic_save_with(out, lambda p: PlyData([el], text=False).write(str(p)), suffix=out.suffix)
