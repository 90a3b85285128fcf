"""LAS / LAZ with ``laspy`` (LAZ through the ``lazrs`` backend): real coordinates = integer
record * scale + offset in float64; write-back keeps the integer X/Y/Z records, the header,
VLRs and every dimension incl. extra bytes. Fields are the dimensions as laspy names them
(``X``/``Y``/``Z`` integer records, ``intensity``, ``classification``, ``red``..., extra bytes
by name)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.io.atomic import atomic_save_with
from pcseg.io.point_file import PointFile, PointFileError

LAZ_HINT = "install the LAZ backend: pip install 'laspy[lazrs]' (or pip install lazrs)"


def laz_backend_available() -> bool:
    """Whether laspy has a LAZ backend (lazrs or laszip) installed."""
    import laspy  # type: ignore[import-untyped]

    return any(b.is_available() for b in laspy.LazBackend)


def read_las(path: str | Path) -> PointFile:
    """LAS/LAZ with ``laspy``: xyz = record * scale + offset (float64); every point
    dimension (incl. extra bytes) is a field; the integer records are kept for write-back."""
    try:
        import laspy
    except ImportError as e:  # pragma: no cover - laspy is a dependency
        raise PointFileError(f"{path}: reading LAS needs laspy: pip install 'laspy[lazrs]'") from e
    path = Path(path)
    if path.suffix.lower() == ".laz" and not laz_backend_available():
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
    import laspy

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
    if out.suffix.lower() == ".laz" and not laz_backend_available():
        raise PointFileError(f"{out}: writing LAZ needs a LAZ backend; {LAZ_HINT}")
    atomic_save_with(out, lambda p: las.write(str(p)), suffix=out.suffix)


def _new_las(pf: PointFile) -> Any:
    import laspy

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
