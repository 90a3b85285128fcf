"""Inputs of the sparse benchmark: a synthetic S3DIS room and a real SemanticKITTI scan.

The real scan is read from a folder given explicitly (``--real-data DIR``, default the
environment variable ``PCSEG_REAL_DATA``); without one, the case that needs it is skipped.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

#: environment variable naming the real-data folder (default of ``--real-data``)
REAL_DATA_ENV = "PCSEG_REAL_DATA"
#: the SemanticKITTI scan of case c, relative to the real-data folder
KITTI_SCAN = Path("semantickitti/dataset/sequences/00/velodyne/000000.bin")


def default_real_data() -> Path | None:
    """``$PCSEG_REAL_DATA`` as a path, or None when unset or empty."""
    value = os.environ.get(REAL_DATA_ENV, "")
    return Path(value) if value else None


def kitti_scan_path(real_data: Path | None, kitti: Path | None = None) -> Path | None:
    """The scan of case c: ``kitti`` when given, else ``real_data / KITTI_SCAN``; None when
    neither is given."""
    if kitti is not None:
        return Path(kitti)
    return None if real_data is None else Path(real_data) / KITTI_SCAN


def missing_scan_reason(scan: Path | None) -> str | None:
    """Why case c cannot run on ``scan`` (no folder given, file absent), or None when it can."""
    if scan is None:
        return f"no real-data folder (--real-data DIR or ${REAL_DATA_ENV})"
    if not scan.is_file():
        return f"{scan} not found"
    return None


def room_scene(spacing: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Case a / b input: one synthetic S3DIS room (pcseg.readers.synthetic) read back with
    pcseg.readers.s3dis.read_scene and voxelized at 2 cm (pcseg.data.voxelize, 'test' mode).
    Returns voxel coords (M, 3) int32, RGB feats (M, 3) float32, a description."""
    from pcseg.data.voxelize import voxelize
    from pcseg.readers import s3dis, synthetic

    with tempfile.TemporaryDirectory(prefix="pcseg_bench_room_") as tmp:
        synthetic.write_synthetic_s3dis(Path(tmp), num_areas=1, rooms_per_area=1, spacing=spacing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sid = s3dis.list_scenes(Path(tmp), "Area_1")[0]
        sc = s3dis.read_scene(Path(tmp), sid)
    pts, rgb = sc.coords, sc.feats
    src = (
        f"pcseg.readers.synthetic S3DIS room {sid} (surface spacing {spacing} m, "
        f"{len(pts):,} points)"
    )
    v = voxelize(pts, 0.02, "test", feats=rgb)
    assert v.feats is not None
    return v.voxel_coords.astype(np.int32), v.feats.astype(np.float32), src


def kitti_scene(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Case c input: a SemanticKITTI scan voxelized at 5 cm; feats = remission (M, 1)."""
    from pcseg.data.voxelize import voxelize
    from pcseg.readers.semantickitti import read_bin

    scan = read_bin(path)
    v = voxelize(scan[:, :3], 0.05, "test", feats=scan[:, 3:4])
    assert v.feats is not None
    return (
        v.voxel_coords.astype(np.int32),
        v.feats.astype(np.float32),
        f"{path} ({len(scan):,} points)",
    )


def with_batch_column(coords: np.ndarray) -> np.ndarray:
    """(M, 3) voxel coords -> (M, 4) int32 with a leading batch index 0."""
    return np.concatenate([np.zeros((len(coords), 1), np.int32), coords], 1)
