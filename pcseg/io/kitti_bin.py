"""KITTI velodyne ``.bin``: float32 x, y, z, intensity per point; labels go to a ``.label``
file next to it (SemanticKITTI style)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pcseg.io.atomic import atomic_save_with
from pcseg.io.point_file import PointFile, PointFileError


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
    atomic_save_with(out, lambda p: shutil.copyfile(pf.path, p), suffix=".bin")
    codes = label_codes if label_codes is not None else extra.get("pred_class")
    if codes is not None:
        data = np.asarray(codes).astype("<u4").tobytes()
        atomic_save_with(
            out.with_suffix(".label"), lambda p: Path(p).write_bytes(data), suffix=".label"
        )
    for k, v in extra.items():
        atomic_save_with(out.with_name(f"{out.stem}.{k}.npy"), _saver(v), suffix=".npy")


def _saver(v: np.ndarray) -> Callable[[Path], None]:
    return lambda p: np.save(p, v)
