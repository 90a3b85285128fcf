"""LAS / LAZ with ``laspy`` (LAZ through the ``lazrs`` backend): real coordinates = integer
record * scale + offset in float64; write-back keeps the integer X/Y/Z records, the header,
VLRs and every dimension incl. extra bytes. Fields are the dimensions as laspy names them
(``X``/``Y``/``Z`` integer records, ``intensity``, ``classification``, ``red``..., extra bytes
by name)."""

from __future__ import annotations

import copy
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.io.atomic import atomic_save_with
from pcseg.io.point_file import PointFile, PointFileError, reason

LAZ_HINT = "install the LAZ backend: pip install 'laspy[lazrs]' (or pip install lazrs)"


def laz_backend_available() -> bool:
    """Whether laspy has a LAZ backend (lazrs or laszip) installed."""
    import laspy  # type: ignore[import-untyped]

    return any(b.is_available() for b in laspy.LazBackend)


#: LAS public header: the smallest header (LAS 1.0-1.2), a VLR header and an EVLR header
_MIN_HEADER, _VLR_HEADER, _EVLR_HEADER = 227, 54, 60


def check_las_header(path: str | Path) -> None:
    """Sanity-check the counts and offsets of the LAS/LAZ public header of ``path`` against
    its size before laspy reads anything (a hostile header claiming 1e9 VLRs or points would
    otherwise stall the reader and exhaust memory). Reads 375 bytes; :class:`PointFileError`
    naming the file, the field, the claimed value and what the file size allows."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(375)
    except OSError as e:
        raise PointFileError(f"{path}: not a readable LAS file: {reason(e)}") from e

    def bad(field: str, claimed: int, allows: str) -> PointFileError:
        return PointFileError(
            f"{path}: damaged LAS header: {field} claims {claimed:,}, but {allows} "
            f"(file size {size:,} bytes)"
        )

    if len(head) < _MIN_HEADER or head[:4] != b"LASF":
        raise PointFileError(
            f"{path}: not a readable LAS file: {size:,} bytes without a 'LASF' signature "
            f"and a {_MIN_HEADER}-byte header"
        )
    minor = head[25]
    header_size, point_offset, n_vlrs = struct.unpack_from("<HII", head, 94)
    point_format, record_length, legacy_count = struct.unpack_from("<BHI", head, 104)
    if header_size < _MIN_HEADER or header_size > size:
        raise bad("header size", header_size, f"it must lie in [{_MIN_HEADER}, file size]")
    if point_offset < header_size or point_offset > size:
        raise bad(
            "offset to point data", point_offset, f"it must lie in [{header_size:,}, {size:,}]"
        )
    max_vlrs = (point_offset - header_size) // _VLR_HEADER
    if n_vlrs > max_vlrs:
        raise bad(
            "number of VLRs",
            n_vlrs,
            f"the {point_offset - header_size:,} bytes between the header and the point data "
            f"hold at most {max_vlrs:,} ({_VLR_HEADER} bytes each at least)",
        )
    count = legacy_count
    if minor >= 4 and len(head) >= 255:
        evlr_start, n_evlrs, count64 = struct.unpack_from("<QIQ", head, 235)
        count = count64 or legacy_count
        if n_evlrs:
            if evlr_start < point_offset or evlr_start > size:
                raise bad(
                    "start of the first EVLR",
                    evlr_start,
                    f"it must lie in [{point_offset:,}, {size:,}]",
                )
            max_evlrs = (size - evlr_start) // _EVLR_HEADER
            if n_evlrs > max_evlrs:
                raise bad(
                    "number of EVLRs",
                    n_evlrs,
                    f"the {size - evlr_start:,} bytes after the first EVLR hold at most "
                    f"{max_evlrs:,} ({_EVLR_HEADER} bytes each at least)",
                )
    compressed = bool(point_format & 0xC0) or path.suffix.lower() == ".laz"
    if not compressed and count and record_length:
        max_points = (size - point_offset) // record_length
        if count > max_points:
            raise bad(
                "number of point records",
                count,
                f"the {size - point_offset:,} bytes after the point data offset hold at "
                f"most {max_points:,} records of {record_length} bytes",
            )


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
    check_las_header(path)
    try:
        las = laspy.read(str(path))
    except laspy.errors.LaspyException as e:
        msg = reason(e)
        if "LazBackend" in msg or "laz" in msg.lower():
            raise PointFileError(f"{path}: cannot decompress LAZ ({msg}); {LAZ_HINT}") from e
        raise PointFileError(f"{path}: not a readable LAS file: {msg}") from e
    except Exception as e:
        raise PointFileError(f"{path}: not a readable LAS file: {reason(e)}") from e
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


def without_copc(header: Any) -> Any:
    """``header`` (a laspy ``LasHeader``, changed in place) without the COPC VLR and
    EVLR (user id ``copc``): laspy cannot write them, so the labelled copy of ``a.copc.laz``
    is a plain LAZ under the same name (every point and other VLR kept, no COPC octree)."""
    header.vlrs = type(header.vlrs)([v for v in header.vlrs if v.user_id != "copc"])
    if getattr(header, "evlrs", None):
        header.evlrs = type(header.evlrs)([v for v in header.evlrs if v.user_id != "copc"])
    return header


def write_las(
    pf: PointFile, out: Path, extra: dict[str, np.ndarray], classification: np.ndarray | None = None
) -> None:
    """The input LAS again — header, VLRs, integer X/Y/Z records and every dimension
    unchanged — with ``classification`` set (when given) and the fields of ``extra`` as extra
    dimensions (replaced when they exist); a COPC file becomes a plain LAZ
    (:func:`without_copc`). From another format: a LAS 1.4 file, point format 6 (7 with
    RGB), scale 1 mm, offset = the floor of the minimum."""
    import laspy

    las = pf.native.get("las")
    if las is None:
        las = _new_las(pf)
    else:
        las = laspy.LasData(without_copc(copy.deepcopy(las.header)), points=las.points.copy())
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


# ----------------------------------------------------------------------------- CRS and units
#: metres per unit of the GeoTIFF linear-unit codes (ProjLinearUnitsGeoKey 3076,
#: VerticalUnitsGeoKey 4099): 9001 metre, 9002 foot, 9003 US survey foot
GEOTIFF_UNITS: dict[int, tuple[str, float]] = {
    9001: ("metre", 1.0),
    9002: ("foot", 0.3048),
    9003: ("US survey foot", 1200.0 / 3937.0),
}
_PROJ_LINEAR_UNITS, _VERTICAL_UNITS = 3076, 4099
_PROJECTED_CS, _GEOGRAPHIC_TYPE, _MODEL_TYPE = 3072, 2048, 1024
_HORIZONTAL = ("PROJCS", "PROJCRS", "PROJECTEDCRS", "GEOGCS", "GEOGCRS", "GEODCRS", "GEOGRAPHICCRS")
_GEOGRAPHIC = ("GEOGCS", "GEOGCRS", "GEODCRS", "GEOGRAPHICCRS")
_VERTICAL = ("VERT_CS", "VERTCRS", "VERTICALCRS")
_UNIT = ("UNIT", "LENGTHUNIT")

#: a WKT node: (KEYWORD, [arguments]); an argument is a string, a number or a node
WktNode = tuple[str, list[Any]]


def parse_wkt(text: str) -> WktNode:
    """The tree of an OGC WKT string (WKT1 or WKT2): ``KEYWORD[arg, ...]`` nodes whose
    arguments are quoted strings, numbers, bare words or nodes. ValueError on bad syntax."""
    s, pos = text.strip().rstrip("\x00"), 0
    word = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*[\[(]")

    def node() -> WktNode:
        nonlocal pos
        m = word.match(s, pos)
        if m is None:
            raise ValueError(f"WKT: expected KEYWORD[ at {pos}: {s[pos : pos + 30]!r}")
        args: list[Any] = []
        name, pos = m.group(1).upper(), m.end()
        while True:
            while pos < len(s) and s[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(s):
                raise ValueError(f"WKT: unclosed {name}[")
            c = s[pos]
            if c in "])":
                pos += 1
                return name, args
            if c == '"':
                end = pos + 1
                while True:
                    end = s.find('"', end)
                    if end < 0:
                        raise ValueError("WKT: unclosed string")
                    if s[end + 1 : end + 2] == '"':
                        end += 2
                        continue
                    break
                args.append(s[pos + 1 : end].replace('""', '"'))
                pos = end + 1
            elif word.match(s, pos):
                args.append(node())
            else:
                m2 = re.compile(r"[^,\])]+").match(s, pos)
                assert m2 is not None
                tok = m2.group(0).strip()
                pos = m2.end()
                try:
                    args.append(float(tok))
                except ValueError:
                    args.append(tok)

    return node()


def _children(n: WktNode, names: tuple[str, ...]) -> list[WktNode]:
    return [a for a in n[1] if isinstance(a, tuple) and a[0] in names]


def _find(n: WktNode, names: tuple[str, ...]) -> WktNode | None:
    """The first node named one of ``names`` in ``n`` (itself included), depth first."""
    if n[0] in names:
        return n
    for a in n[1]:
        if isinstance(a, tuple):
            hit = _find(a, names)
            if hit is not None:
                return hit
    return None


def _linear_unit(n: WktNode) -> tuple[str, float] | None:
    """(name, metres per unit) of a CRS node: its own UNIT / LENGTHUNIT, else that of its
    first AXIS (WKT2 may put it there); None when it has none."""
    units = _children(n, _UNIT)
    if not units:
        for ax in _children(n, ("AXIS",)):
            units = _children(ax, _UNIT)
            if units:
                break
    if not units or len(units[0][1]) < 2 or not isinstance(units[0][1][1], float):
        return None
    return str(units[0][1][0]), float(units[0][1][1])


def wkt_units(wkt: str) -> dict[str, Any]:
    """CRS name and linear units of a WKT string: ``{"crs": name, "geographic": bool,
    "horizontal": (name, metres) | None, "vertical": (name, metres) | None}``. A
    projected CRS's own UNIT is its horizontal unit (the UNIT of the GEOGCS inside it is an
    angle); a VERT_CS / VERTCRS (in a compound CRS) gives the vertical one."""
    tree = parse_wkt(wkt)
    hor = _find(tree, _HORIZONTAL)
    ver = _find(tree, _VERTICAL)
    name = tree[1][0] if tree[1] and isinstance(tree[1][0], str) else tree[0]
    geographic = hor is not None and hor[0] in _GEOGRAPHIC
    return {
        "crs": str(name),
        "geographic": geographic,
        "horizontal": None if hor is None or geographic else _linear_unit(hor),
        "vertical": None if ver is None else _linear_unit(ver),
    }


def geotiff_units(keys: dict[int, int]) -> dict[str, Any]:
    """CRS name and linear units of GeoTIFF keys ({key id: value}), as :func:`wkt_units`:
    ProjLinearUnitsGeoKey (3076) / VerticalUnitsGeoKey (4099) through
    :data:`GEOTIFF_UNITS`; the CRS as ``EPSG:<ProjectedCSTypeGeoKey>`` (or the geographic
    type). An unknown unit code is None."""
    crs = None
    if keys.get(_PROJECTED_CS, 0) not in (0, 32767):
        crs = f"EPSG:{keys[_PROJECTED_CS]}"
    elif keys.get(_GEOGRAPHIC_TYPE, 0) not in (0, 32767):
        crs = f"EPSG:{keys[_GEOGRAPHIC_TYPE]}"
    geographic = keys.get(_MODEL_TYPE) == 2
    return {
        "crs": crs,
        "geographic": geographic,
        "horizontal": None if geographic else GEOTIFF_UNITS.get(keys.get(_PROJ_LINEAR_UNITS, -1)),
        "vertical": GEOTIFF_UNITS.get(keys.get(_VERTICAL_UNITS, -1)),
    }


def las_crs(header: Any) -> dict[str, Any] | None:
    """The CRS name and linear units of a laspy header (:func:`wkt_units` keys plus
    ``source``: ``'LAS WKT'`` or ``'LAS GeoTIFF keys'``), from its OGC WKT (E)VLR when it
    has one, else its GeoTIFF key directory; None without either. Needs no pyproj."""
    from laspy.vlrs import known  # type: ignore[import-untyped]

    vlrs = list(header.vlrs) + list(getattr(header, "evlrs", None) or [])
    for v in vlrs:
        if isinstance(v, known.WktCoordinateSystemVlr) and v.string.strip("\x00 "):
            try:
                return {**wkt_units(v.string), "source": "LAS WKT"}
            except ValueError:
                continue  # an unreadable WKT: try the GeoTIFF keys
    for v in vlrs:
        if isinstance(v, known.GeoKeyDirectoryVlr):
            keys = {int(k.id): int(k.value_offset) for k in v.geo_keys if k.tiff_tag_location == 0}
            return {**geotiff_units(keys), "source": "LAS GeoTIFF keys"}
    return None


def read_las_crs(path: str | Path) -> dict[str, Any] | None:
    """:func:`las_crs` of the file ``path`` (reads only its header and VLRs)."""
    import laspy

    check_las_header(path)
    with laspy.open(str(path)) as r:
        return las_crs(r.header)
