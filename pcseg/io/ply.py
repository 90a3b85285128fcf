"""PLY (ASCII or binary) with ``plyfile``: every scalar vertex property is a field; other
elements (faces, ...) are kept on write-back. :func:`check_ply_header` checks the header's
element counts against the file size before plyfile allocates anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcseg.io.atomic import atomic_save_with
from pcseg.io.point_file import (
    PointFile,
    PointFileError,
    count_lines,
    flat_columns,
    reason,
    xyz_from,
)

#: PLY scalar property types (both spellings of the PLY format) -> numpy type codes
PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
#: a PLY header longer than this is not a header
PLY_MAX_HEADER_BYTES = 1 << 20
#: the formats of a PLY ``format`` line
PLY_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")


@dataclass
class PlyElementHeader:
    """One ``element NAME COUNT`` of a PLY header: ``count`` records of at least
    ``min_bytes`` bytes each in a binary file (a list property counts as its length field:
    an empty list); ``fixed`` when every property is a scalar (records of exactly
    ``min_bytes``)."""

    name: str
    count: int
    min_bytes: int = 0
    fixed: bool = True


@dataclass
class PlyHeader:
    """What a PLY header says: ``format`` (one of :data:`PLY_FORMATS`), its ``elements`` in
    order, ``lines`` (the header's lines up to ``end_header``) and ``data_offset`` (the byte
    where the data start)."""

    format: str
    elements: list[PlyElementHeader] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    data_offset: int = 0


def read_ply_header(path: str | Path) -> PlyHeader:
    """Parse the header of the PLY ``path`` (reads at most :data:`PLY_MAX_HEADER_BYTES`);
    :class:`PointFileError` naming the file and the line for a header that is not PLY."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(PLY_MAX_HEADER_BYTES)
    except OSError as e:
        raise PointFileError(f"{path}: not a readable PLY file: {reason(e)}") from e
    end = head.find(b"end_header")
    nl = head.find(b"\n", end) if end >= 0 else -1
    if not head.startswith(b"ply") or nl < 0:
        raise PointFileError(
            f"{path}: not a readable PLY file: no 'ply' ... 'end_header' in its first "
            f"{min(len(head), PLY_MAX_HEADER_BYTES):,} bytes"
        )
    lines = head[: nl + 1].decode("ascii", errors="replace").splitlines()
    fmt = next((ln.split() for ln in lines if ln.startswith("format ")), [])
    if len(fmt) < 2 or fmt[1] not in PLY_FORMATS:
        raise PointFileError(
            f"{path}: damaged PLY header: format line {' '.join(fmt)!r} is none of {PLY_FORMATS}"
        )
    header = PlyHeader(fmt[1], [], lines, nl + 1)
    for n, ln in enumerate(lines, start=1):
        tok = ln.split()
        if not tok or tok[0] not in ("element", "property"):
            continue
        if tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise PointFileError(f"{path}: damaged PLY header line {n}: {ln.strip()!r}")
            header.elements.append(PlyElementHeader(tok[1], int(tok[2])))
            continue
        if not header.elements:
            raise PointFileError(f"{path}: damaged PLY header line {n}: property before element")
        el = header.elements[-1]
        if len(tok) == 3 and tok[1] in PLY_TYPES:
            el.min_bytes += int(PLY_TYPES[tok[1]][1])
        elif len(tok) == 5 and tok[1] == "list" and tok[2] in PLY_TYPES and tok[3] in PLY_TYPES:
            el.min_bytes, el.fixed = el.min_bytes + int(PLY_TYPES[tok[2]][1]), False
        else:
            raise PointFileError(f"{path}: damaged PLY header line {n}: {ln.strip()!r}")
    return header


def check_ply_header(path: str | Path) -> PlyHeader:
    """Sanity-check the element counts of the PLY ``path`` against its size before anything
    is allocated (a hostile header claiming 1e12 vertices would otherwise exhaust memory):
    binary, every element's ``count x record size`` (at least, with list properties) must
    fit the bytes after the header; ASCII, the file must hold a line per record (counted
    lazily). Returns the parsed header; :class:`PointFileError` naming the file, the
    element, the claimed count and what the file allows."""
    path = Path(path)
    header = read_ply_header(path)
    size = path.stat().st_size
    data = size - header.data_offset
    if header.format != "ascii":
        need = 0
        for el in header.elements:
            need += el.count * el.min_bytes
            if need > data:
                allows = data // el.min_bytes if el.min_bytes else 0
                kind = "of" if el.fixed else "of at least"
                raise PointFileError(
                    f"{path}: damaged PLY header: element {el.name!r} claims {el.count:,} "
                    f"records {kind} {el.min_bytes} bytes, but the {data:,} bytes after the "
                    f"header hold at most {allows:,} (file size {size:,} bytes)"
                )
        return header
    records = sum(el.count for el in header.elements)
    if records * 2 > data or count_lines(path, header.data_offset, records) < records:
        have = count_lines(path, header.data_offset, records)
        counts = ", ".join(f"{el.name} {el.count:,}" for el in header.elements)
        raise PointFileError(
            f"{path}: damaged ASCII PLY: the header claims {records:,} records ({counts}), "
            f"one per line, but the file has {have:,} lines after the header "
            f"(file size {size:,} bytes)"
        )
    return header


def read_ply(path: str | Path) -> PointFile:
    """PLY (ASCII or binary) with ``plyfile``: every vertex property is a field (the header
    checked first: :func:`check_ply_header`)."""
    from plyfile import PlyData

    path = Path(path)
    check_ply_header(path)
    try:
        ply = PlyData.read(str(path))
    except Exception as e:
        raise PointFileError(f"{path}: not a readable PLY file: {reason(e)}") from e
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
