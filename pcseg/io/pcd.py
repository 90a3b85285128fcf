"""PCD with ``open3d.t.io`` (tensor API: keeps extra fields; ASCII / binary /
binary_compressed); open3d is the ``viz`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pcseg.io.atomic import atomic_save_with
from pcseg.io.point_file import PointFile, PointFileError


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
    atomic_save_with(out, lambda p: o3d.t.io.write_point_cloud(str(p), pcd), suffix=".pcd")
