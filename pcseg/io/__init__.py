"""Point-cloud files in the formats people have, each read with the library made for it
(one module per format, as ``torch_geometric.io``).

One reader per format returns a :class:`PointFile`: float64 coordinates, every per-point
field under its own name in its ORIGINAL dtype, and what is needed to write the file back
(:func:`write_points`) with all its fields and its own precision:

========  ==========================  ==================================================
format    suffixes                    library / notes
========  ==========================  ==================================================
ply       .ply                        ``plyfile``: any vertex properties, ASCII or binary;
                                      other elements (faces) are kept on write-back
las       .las, .laz                  ``laspy`` (LAZ through the ``lazrs`` backend): real
                                      coordinates = integer record * scale + offset in
                                      float64; write-back keeps the integer X/Y/Z records,
                                      the header, VLRs and every dimension incl. extra bytes
pcd       .pcd                        ``open3d.t.io`` (tensor API: keeps extra fields, ASCII
                                      / binary / binary_compressed); open3d is the ``viz``
                                      extra
npy       .npy                        numpy structured array with named columns
npz       .npz                        one 1-D array per named column (or ``xyz`` (N, 3))
txt       .txt, .csv, .xyz, .pts      numpy; columns from a header line or a column spec;
                                      write-back appends columns to the original lines
bin       .bin                        KITTI velodyne: float32 x, y, z, intensity
========  ==========================  ==================================================

Field names: LAS dimensions as laspy names them (``X``/``Y``/``Z`` integer records,
``intensity``, ``return_number``, ``classification``, ``red``..., extra bytes by name);
PLY / PCD / NPY / TXT columns by their own names. ``x``, ``y``, ``z`` of the formats that
store float coordinates are also fields (their original dtype is kept there).

Errors are :class:`PointFileError` (a ``ValueError``) naming the file and, where one is at
fault, the field.

Modules: :mod:`~pcseg.io.point_file` (:class:`PointFile`, :class:`PointFileError`,
:data:`SUFFIXES`), one per format (:mod:`~pcseg.io.ply`, :mod:`~pcseg.io.las`,
:mod:`~pcseg.io.pcd`, :mod:`~pcseg.io.npy`, :mod:`~pcseg.io.txt`, :mod:`~pcseg.io.kitti_bin`),
:mod:`~pcseg.io.points` (read / write any of them by suffix), :mod:`~pcseg.io.stream`
(LAS/LAZ, NPY and binary PLY chunk by chunk) and :mod:`~pcseg.io.atomic` (the atomic
writes every file of the package goes through).
"""

from pcseg.io.point_file import SUFFIXES, PointFile, PointFileError, file_format
from pcseg.io.points import OUTPUT_FORMATS, output_path, read_points, write_points
from pcseg.io.stream import STREAM_FORMATS, PointChunk, iter_chunks, stream_count, write_streamed

__all__ = [
    "OUTPUT_FORMATS",
    "STREAM_FORMATS",
    "SUFFIXES",
    "PointChunk",
    "PointFile",
    "PointFileError",
    "file_format",
    "iter_chunks",
    "output_path",
    "read_points",
    "stream_count",
    "write_points",
    "write_streamed",
]
