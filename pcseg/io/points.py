"""Read and write any supported point file: the format from the suffix, one module per format.

:func:`read_points` returns a :class:`~pcseg.io.point_file.PointFile`; :func:`write_points`
writes it back (or converts it to one of :data:`OUTPUT_FORMATS`) with extra per-point fields,
atomically; :func:`output_path` / :func:`output_names` say where. The formats and their
libraries are listed in :mod:`pcseg.io`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pcseg.io.kitti_bin import read_kitti_bin, write_kitti_bin
from pcseg.io.las import read_las, write_las
from pcseg.io.npy import read_npy, read_npz, write_npy, write_npz
from pcseg.io.pcd import read_pcd, write_pcd
from pcseg.io.ply import read_ply, write_ply
from pcseg.io.point_file import PointFile, PointFileError, file_format
from pcseg.io.txt import read_txt, write_txt

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


def output_path(pf: PointFile, out_dir: Path, fmt: str = "same", stem: str | None = None) -> Path:
    """Where :func:`write_points` writes ``pf`` in ``out_dir``."""
    return out_dir / output_names(pf.path, fmt, stem)[0]


def output_names(src: str | Path, fmt: str = "same", stem: str | None = None) -> list[str]:
    """The names :func:`write_points` gives the labelled copy of the file ``src`` (format
    from its suffix), the main file first: ``<stem><suffix>`` (LAS/LAZ and TXT keep their
    own suffix under ``fmt='same'``), plus for a KITTI ``.bin`` its ``<stem>.label`` and the
    ``<stem>.<field>.npy`` of the predicted fields."""
    src = Path(src)
    stem = stem or src.stem
    target = file_format(src) if fmt == "same" else fmt
    if fmt != "same" and fmt not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be 'same' or one of {OUTPUT_FORMATS}, got {fmt!r}")
    keep = fmt == "same" and target in ("las", "txt")
    names = [f"{stem}{src.suffix.lower() if keep else OUTPUT_SUFFIX[target]}"]
    if target == "bin":
        names += [f"{stem}.label", f"{stem}.pred_class.npy", f"{stem}.confidence.npy"]
    return names


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
