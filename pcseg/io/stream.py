"""Point files read and written chunk by chunk (the out-of-core path of ``pcseg predict``):
LAS/LAZ through ``laspy.open(...).chunk_iterator``, structured NPY and binary PLY read at
byte offsets (never mapped whole); written back with every original record byte for byte
plus extra per-point fields. Memory O(chunk)."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.io import las
from pcseg.io.atomic import atomic_save_with
from pcseg.io.ply import PLY_TYPES, check_ply_header, read_ply_header
from pcseg.io.point_file import PointFileError, file_format, reason

#: formats read and written chunk by chunk by :func:`iter_chunks` / :func:`write_streamed`
#: (the out-of-core path of ``pcseg predict``); the others are read whole
STREAM_FORMATS = ("las", "npy", "ply")

#: the PLY type name written for a numpy type code (the sized spelling)
PLY_TYPE_NAMES: dict[str, str] = {
    "i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16",
    "i4": "int32", "u4": "uint32", "f4": "float32", "f8": "float64",
}  # fmt: skip


@dataclass
class PlyLayout:
    """Where the vertices of a binary PLY are: ``header`` (its lines up to ``end_header``),
    ``dtype`` (one vertex record, in the file's byte order), ``rows``, ``offset`` (byte where
    the vertex data start) and ``props`` (index range of the vertex property lines in
    ``header``), ``byte_order`` (``'<'`` or ``'>'``)."""

    header: list[str]
    dtype: np.dtype
    rows: int
    offset: int
    props: tuple[int, int]
    byte_order: str


def ply_stream_layout(path: str | Path) -> PlyLayout | None:
    """The :class:`PlyLayout` of ``path`` when its vertices can be read chunk by chunk at
    offsets (binary, the vertex element first, scalar properties only), else None (ASCII,
    another element first, a list vertex property: read whole). Reads only the header;
    :class:`PointFileError` for a file that is not a PLY or whose element counts do not fit
    its size (:func:`pcseg.io.ply.check_ply_header`)."""
    header = read_ply_header(path)
    if header.format == "ascii":
        return None
    header = check_ply_header(path)  # the counts against the file size
    lines = header.lines
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}[header.format]
    elements = [i for i, ln in enumerate(lines) if ln.startswith("element ")]
    if not elements or lines[elements[0]].split()[1:2] != ["vertex"]:
        return None
    first = elements[0]
    last = elements[1] if len(elements) > 1 else len(lines) - 1
    props, descr = (first + 1, last), []
    for ln in lines[first + 1 : last]:
        tok = ln.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] != "property" or len(tok) != 3 or tok[1] not in PLY_TYPES:
            return None  # a list property (or one this reader does not know): read whole
        descr.append((tok[2], order + PLY_TYPES[tok[1]]))
    rows = header.elements[0].count
    return PlyLayout(lines, np.dtype(descr), rows, header.data_offset, props, order)


@dataclass
class PointChunk:
    """Points ``start .. start + len(xyz)`` of a file read in chunks.

    ``xyz``: (n, 3) float64 real coordinates; ``names``: every per-point field of the file;
    ``record``: the chunk as stored (laspy ``ScaleAwarePointRecord`` / structured ndarray).
    """

    start: int
    xyz: np.ndarray
    names: list[str]
    record: Any

    def fields(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The fields of ``names`` this file has (others are skipped)."""
        return {n: np.asarray(self.record[n]) for n in names if n in self.names}


def stream_count(path: str | Path) -> int:
    """Number of points of a LAS/LAZ (header) or NPY (array header) file, without reading
    the points; :class:`PointFileError` for other formats or a bad file."""
    path = Path(path)
    fmt = file_format(path)
    if fmt == "las":
        import laspy  # type: ignore[import-untyped]

        las.check_las_header(path)
        try:
            with laspy.open(str(path)) as r:
                return int(r.header.point_count)
        except Exception as e:
            raise PointFileError(f"{path}: not a readable LAS file: {reason(e)}") from e
    if fmt in ("npy", "ply"):
        return int(_record_layout(path)[1])
    raise PointFileError(f"{path}: format {fmt!r} is not streamed (only {STREAM_FORMATS})")


def _record_layout(path: Path) -> tuple[np.dtype, int, int]:
    """(record dtype, rows, data offset) of a structured NPY or a streamable binary PLY."""
    if file_format(path) == "npy":
        return _npy_layout(path)
    layout = _streamed_ply_layout(path)
    return layout.dtype, layout.rows, layout.offset


def _streamed_ply_layout(path: Path) -> PlyLayout:
    """:func:`ply_stream_layout`, or :class:`PointFileError` when the PLY is not streamed."""
    layout = ply_stream_layout(path)
    if layout is None:
        raise PointFileError(
            f"{path}: this PLY is not streamed (ASCII, or the vertex element is not first, "
            "or a vertex property is a list); it is read whole"
        )
    return layout


def _npy_layout(path: Path) -> tuple[np.dtype, int, int]:
    """(dtype, rows, data offset) of a structured 1-D ``.npy`` (memory-mapped header read)."""
    try:
        m = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        raise PointFileError(f"{path}: not a readable .npy file: {reason(e)}") from e
    if m.dtype.names is None or m.ndim != 1:
        raise PointFileError(
            f"{path}: .npy must be a structured array with named columns "
            f"(x, y, z, ...); got a plain {m.dtype} array of shape {m.shape}"
        )
    dtype, rows, offset = m.dtype, int(m.shape[0]), int(getattr(m, "offset", 0))
    del m
    return dtype, rows, offset


def iter_chunks(path: str | Path, chunk_points: int) -> Iterator[PointChunk]:
    """The points of a LAS/LAZ (``laspy.open(...).chunk_iterator``), a structured NPY or a
    binary PLY (both read at offsets, never mapped whole) in chunks of at most
    ``chunk_points``; memory O(chunk)."""
    path = Path(path)
    fmt = file_format(path)
    if fmt == "las":
        if path.suffix.lower() == ".laz" and not las.laz_backend_available():
            raise PointFileError(
                f"{path}: LAZ file but no LAZ backend is installed; {las.LAZ_HINT}"
            )
        las.check_las_header(path)
        yield from _las_chunks(path, chunk_points)
        return
    if fmt not in ("npy", "ply"):
        raise PointFileError(f"{path}: format {fmt!r} is not streamed (only {STREAM_FORMATS})")
    dtype, rows, offset = _record_layout(path)
    names = list(dtype.names or ())
    missing = [a for a in "xyz" if a not in names]
    if missing:
        raise PointFileError(
            f"{path}: no coordinate field(s) {missing}; the file has fields {sorted(names)}"
        )
    with open(path, "rb") as fh:
        for start in range(0, rows, chunk_points):
            n = min(chunk_points, rows - start)
            fh.seek(offset + start * dtype.itemsize)
            arr = np.fromfile(fh, dtype=dtype, count=n)
            if len(arr) < n:
                raise PointFileError(
                    f"{path}: truncated: {rows} points declared, the data end at point "
                    f"{start + len(arr)}"
                )
            xyz = np.stack([arr[a].astype(np.float64) for a in "xyz"], axis=1)
            yield PointChunk(start, xyz, names, arr)


def _las_chunks(path: Path, chunk_points: int) -> Iterator[PointChunk]:
    """The LAS/LAZ branch of :func:`iter_chunks`: a chunk laspy / lazrs cannot read (a
    truncated LAZ) is a :class:`PointFileError` naming the file and the first point lost."""
    import laspy

    try:
        reader = laspy.open(str(path))
    except Exception as e:
        raise PointFileError(f"{path}: not a readable LAS file: {reason(e)}") from e
    with reader as r:
        names = list(r.header.point_format.dimension_names)
        chunks, start = r.chunk_iterator(chunk_points), 0
        while True:
            try:
                rec = next(chunks)
            except StopIteration:
                return
            except Exception as e:
                raise PointFileError(
                    f"{path}: not a readable LAS file (truncated or damaged from point "
                    f"{start:,} on): {reason(e)}"
                ) from e
            xyz = np.stack(
                [
                    np.asarray(rec.x, dtype=np.float64),
                    np.asarray(rec.y, dtype=np.float64),
                    np.asarray(rec.z, dtype=np.float64),
                ],
                axis=1,
            )
            yield PointChunk(start, xyz, names, rec)
            start += len(xyz)


#: ``fill(chunk) -> (extra fields, classification codes or None)`` of :func:`write_streamed`
ChunkFill = Callable[[PointChunk], tuple[dict[str, np.ndarray], "np.ndarray | None"]]


def write_streamed(
    src: str | Path,
    out: str | Path,
    chunk_points: int,
    extra_dtypes: dict[str, Any],
    fill: ChunkFill,
) -> Path:
    """Write ``src`` again chunk by chunk with the per-point ``extra`` fields of
    ``fill(chunk)`` added (replaced when they exist), atomically (temporary file, then
    rename). LAS/LAZ: the header (scales, offsets, VLRs), the raw point records (integer
    X/Y/Z, bit fields, extra bytes) are copied byte for byte, ``extra`` become extra
    dimensions and the returned codes (when not None) set ``classification``. NPY: the
    input's columns with their dtypes, then the extra columns. PLY (binary): the header
    (comments, obj_info, other elements) with the extra vertex properties appended, the
    vertex records, then every byte after the vertices (faces, ...) as they were. Memory
    O(chunk)."""
    src, out = Path(src), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = file_format(src)
    if fmt == "las":
        _write_las_streamed(src, out, chunk_points, extra_dtypes, fill)
    elif fmt == "npy":
        _write_npy_streamed(src, out, chunk_points, extra_dtypes, fill)
    elif fmt == "ply":
        _write_ply_streamed(src, out, chunk_points, extra_dtypes, fill)
    else:
        raise PointFileError(f"{src}: format {fmt!r} is not streamed (only {STREAM_FORMATS})")
    return out


def _write_las_streamed(
    src: Path, out: Path, chunk_points: int, extra_dtypes: dict[str, Any], fill: ChunkFill
) -> None:
    import laspy

    if out.suffix.lower() == ".laz" and not las.laz_backend_available():
        raise PointFileError(f"{out}: writing LAZ needs a LAZ backend; {las.LAZ_HINT}")
    with laspy.open(str(src)) as r:
        header = las.without_copc(copy.deepcopy(r.header))
    have = set(header.point_format.dimension_names)
    new = [
        laspy.ExtraBytesParams(name=k, type=np.dtype(t))
        for k, t in extra_dtypes.items()
        if k not in have
    ]
    if new:
        header.add_extra_dims(new)

    def write(tmp: Path) -> None:
        with laspy.open(str(tmp), mode="w", header=header) as w:
            for chunk in iter_chunks(src, chunk_points):
                rec = chunk.record
                outrec = laspy.ScaleAwarePointRecord.zeros(len(rec), header=header)
                for name in rec.array.dtype.names:
                    outrec.array[name] = rec.array[name]
                extra, cls = fill(chunk)
                for k, v in extra.items():
                    outrec[k] = v
                if cls is not None:
                    outrec.classification = cls
                w.write_points(outrec)

    atomic_save_with(out, write, suffix=out.suffix)


def _write_npy_streamed(
    src: Path, out: Path, chunk_points: int, extra_dtypes: dict[str, Any], fill: ChunkFill
) -> None:
    from numpy.lib import format as npformat

    dtype, rows, _ = _npy_layout(src)
    keep = [n for n in dtype.names or () if n not in extra_dtypes]
    descr = [(n, dtype.fields[n][0]) for n in keep] if dtype.fields else []
    out_dtype = np.dtype(descr + [(k, np.dtype(t)) for k, t in extra_dtypes.items()])

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            hdr = {
                "descr": npformat.dtype_to_descr(out_dtype),
                "fortran_order": False,
                "shape": (rows,),
            }
            npformat.write_array_header_2_0(fh, hdr)
            for chunk in iter_chunks(src, chunk_points):
                fh.write(_fill_records(chunk, out_dtype, keep, fill).tobytes())

    atomic_save_with(out, write, suffix=".npy")


def _fill_records(
    chunk: PointChunk, out_dtype: np.dtype, keep: list[str], fill: ChunkFill
) -> np.ndarray:
    """One chunk of output records: the ``keep`` columns of the input, then ``fill``'s."""
    arr = np.empty(len(chunk.xyz), dtype=out_dtype)
    for n in keep:
        arr[n] = chunk.record[n]
    extra, _ = fill(chunk)
    for k, v in extra.items():
        arr[k] = v
    return arr


def _write_ply_streamed(
    src: Path, out: Path, chunk_points: int, extra_dtypes: dict[str, Any], fill: ChunkFill
) -> None:
    ply = _streamed_ply_layout(src)
    dtype, rows, offset, order = ply.dtype, ply.rows, ply.offset, ply.byte_order
    keep = [n for n in dtype.names or () if n not in extra_dtypes]
    new = [(k, order + np.dtype(t).newbyteorder("=").str[1:]) for k, t in extra_dtypes.items()]
    out_dtype = np.dtype([(n, dtype.fields[n][0]) for n in keep] + new)  # type: ignore[index]
    a, b = ply.props
    props = [ln for ln in ply.header[a:b] if ln.split()[0] != "property" or ln.split()[2] in keep]
    props += [f"property {PLY_TYPE_NAMES[np.dtype(t).str[1:]]} {k}" for k, t in new]
    header = "\n".join([*ply.header[:a], *props, *ply.header[b:]]) + "\n"

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(header.encode("ascii"))
            for chunk in iter_chunks(src, chunk_points):
                fh.write(_fill_records(chunk, out_dtype, keep, fill).tobytes())
            with open(src, "rb") as rest:  # other elements (faces, ...) byte for byte
                rest.seek(offset + rows * dtype.itemsize)
                shutil.copyfileobj(rest, fh, 1 << 24)

    atomic_save_with(out, write, suffix=".ply")
