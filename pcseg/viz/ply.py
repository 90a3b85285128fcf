"""PLY export of a coloured point cloud (any colour mode), readable by MeshLab / CloudCompare."""

from __future__ import annotations

import os

import numpy as np

from pcseg.io.atomic import atomic_path


def export_ply(
    path: str | os.PathLike,
    coords: np.ndarray,
    colors: np.ndarray,
    labels: np.ndarray | None = None,
    binary: bool = True,
) -> None:
    """Write a PLY point cloud atomically.

    Args:
        path: output ``.ply``.
        coords: (N, 3) float, written as float32 ``x y z``.
        colors: (N, 3) uint8 RGB, or float in [0, 1] (scaled by 255 and rounded), written as
            uchar ``red green blue``.
        labels: optional (N,) integers written as int32 ``label``.
        binary: binary little-endian (default) or ASCII.
    """
    from plyfile import PlyData, PlyElement

    coords = np.asarray(coords)
    colors = np.asarray(colors)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must be (N, 3), got {coords.shape}")
    n = len(coords)
    if colors.shape != (n, 3):
        raise ValueError(f"colors must be ({n}, 3), got {colors.shape}")
    if colors.dtype != np.uint8:
        if np.issubdtype(colors.dtype, np.floating):
            if colors.size and (np.nanmin(colors) < 0.0 or np.nanmax(colors) > 1.0):
                raise ValueError("float colors must lie in [0, 1]")
            colors = np.round(colors * 255.0).astype(np.uint8)
        elif np.issubdtype(colors.dtype, np.integer):
            if colors.size and (colors.min() < 0 or colors.max() > 255):
                raise ValueError("integer colors must lie in [0, 255]")
            colors = colors.astype(np.uint8)
        else:
            raise ValueError(f"colors dtype {colors.dtype} not supported")
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise ValueError(f"labels must be ({n},) integers, got {labels.shape} {labels.dtype}")
        fields.append(("label", "i4"))
    vertex = np.empty(n, dtype=fields)
    for i, k in enumerate("xyz"):
        vertex[k] = coords[:, i]
    for i, k in enumerate(("red", "green", "blue")):
        vertex[k] = colors[:, i]
    if labels is not None:
        vertex["label"] = labels
    ply = PlyData(
        [PlyElement.describe(vertex, "vertex")], text=not binary, byte_order="<" if binary else "="
    )
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            ply.write(f)
