"""The in-memory point file every format reader returns, its error, and the suffix table.

:class:`PointFile`: float64 coordinates, every per-point field under its own name in its
ORIGINAL dtype, and what the writer of its format needs to write it back. Errors are
:class:`PointFileError` (a ``ValueError``) naming the file and, where one is at fault, the
field.
"""

from __future__ import annotations

import os
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


def is_processed_folder(folder: str | Path) -> bool:
    """True for a pcseg processed folder (``meta.json`` and ``scenes/``): what ``pcseg
    prepare`` writes and ``pcseg annotate`` works in (its ``scenes/*.npz`` and
    ``labels/**/*.npy`` are pcseg's own files, not scans)."""
    folder = Path(folder)
    return (folder / "meta.json").is_file() and (folder / "scenes").is_dir()


def list_point_files(root: str | Path) -> list[Path]:
    """Every file under the folder ``root`` (recursively, sorted) whose suffix is in
    :data:`SUFFIXES`, skipping hidden files and folders (a name starting with ``.``: pcseg's
    own atomic-write temporaries ``.NAME.*`` and streamed-predict folders
    ``.STEM.stream.*``, editor and OS files), temporary files (``*.tmp``) and pcseg processed
    folders below ``root`` (:func:`is_processed_folder`: a ``pcseg prepare --out`` or a
    ``pcseg annotate`` working folder kept among the scans), whose contents are not scans."""
    root = Path(root)
    out = []
    for here, dirs, files in os.walk(root):  # symlinked folders not entered, as rglob
        base = Path(here)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not is_processed_folder(base / d)]
        for name in files:
            p = base / name
            if name.startswith(".") or name.lower().endswith(".tmp"):
                continue
            if p.suffix.lower() in SUFFIXES and p.is_file():
                out.append(p)
    return sorted(out)


def reason(e: BaseException) -> str:
    """The text of ``e`` for a failure message, never empty (its type when it has none:
    some libraries raise with an empty message)."""
    return " ".join(str(e).split()) or type(e).__name__


def count_lines(path: Path, start: int, enough: int) -> int:
    """Lines from byte ``start`` of ``path`` (a last line without its newline counts),
    counted in 1 MiB blocks until ``enough`` are seen (a valid file is read once, a
    hostile count stops at the end of the file)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        fh.seek(start)
        while lines < enough:
            block = fh.read(1 << 20)
            if not block:
                return lines + (last != b"\n")
            lines += block.count(b"\n")
            last = block[-1:]
    return lines


def xyz_from(path: Path, cols: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 3) float64 of the ``x``, ``y``, ``z`` columns of ``cols``; PointFileError naming
    the missing ones and the fields the file has."""
    missing = [a for a in "xyz" if a not in cols]
    if missing:
        raise PointFileError(
            f"{path}: no coordinate field(s) {missing}; the file has fields {sorted(cols)}"
        )
    return np.stack([np.asarray(cols[a], dtype=np.float64) for a in "xyz"], axis=1)


def flat_columns(pf: PointFile, extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The columns of a conversion to another format: x, y, z (float64) + every 1-D field
    (multi-column fields split as NAME_i, booleans as uint8) + extra."""
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
