"""Out-of-core ``pcseg predict`` for LAS/LAZ, NPY and binary PLY: peak memory set by the chunk
size and the voxel budget, not by the file.

The in-memory path (:mod:`pcseg.inference.memory`) reads a file whole; this one never
holds more than one chunk of the file, one tile's points and one network input:

1. **pass 1** streams the file (:func:`pcseg.io.stream.iter_chunks`, ``chunk_points``
   at a time; coordinates in metres, :func:`~pcseg.readers.custom.path_units`) for the
   point count, the bounds (the origin is the same
   :func:`~pcseg.readers.custom.scene_origin` as in memory), the per-field maxima the
   colour scaling needs, the ground grid of ``height_above_ground`` (the same
   :class:`~pcseg.readers.common.GroundAccumulator` as in memory, fed chunk by chunk) and
   a histogram of points per coarse XY cell
   (:data:`COARSE_CELL_VOXELS` voxels a side; memory O(area / cell^2), a few MB even for
   km^2 tiles);
2. **plan**: a regular XY grid of tile cores (square, a whole number of coarse cells a side,
   aligned at the scene's lowest voxel), the largest whose every tile -- core plus
   ``overlap`` on every side, all of Z -- is estimated (from the histogram, rounded up to
   whole cells) to hold at most ``tile_points`` points (default: ``chunk_points``);
3. **pass 2** streams the file again: each point's voxel (exactly as
   :func:`pcseg.data.voxelize.voxelize` computes it on the float32 local coordinates) decides
   the tiles it goes to -- the one whose core holds it and every neighbour whose overlap
   does -- and it is appended, in file order, to that tile's buffer on disk (a temporary
   folder next to the output: file index int64, local xyz float32, features float32);
4. **per tile**: its buffer is loaded and voxelized (test mode: the first point of a voxel
   in file order represents it, as in memory); if the tile holds more than ``voxel_budget``
   voxels its core is split further by :func:`pcseg.inference.tiling.make_tiles` (median splits,
   overlap taken from the buffer around the core); every sub-tile runs through the same
   :func:`pcseg.inference.tiling.run_tiles` as in memory, and the CORE points' class (int16) and
   confidence (float32) are appended to per-chunk result files (``bucket`` =
   file index // chunk_points) -- no array of length N anywhere, and no memory map
   (the resident pages of a written map count in the RSS, growing with N);
5. **pass 3** streams the file a third time and writes it out chunk by chunk
   (:func:`pcseg.io.stream.write_streamed`: every original record byte for byte,
   plus ``pred_class`` / ``confidence``, and ``classification`` through the reverse of
   ``map`` as in memory), into a temporary file renamed at the end.

Stitching: as in memory, by ownership -- every voxel lies in exactly one core, and the
overlap only gives context. The overlap is in whole voxels, so a voxel is never cut by a
tile border. Results: with the same tile cores (:func:`pcseg.inference.tiling.tiles_from_boxes` of
``result["boxes"]``), equal to the in-memory tiled prediction (classes equal, confidences
within float summation order, 1e-5); against the untiled prediction the border tolerance of
:mod:`pcseg.inference.tiling` holds (and exact equality once the overlap reaches the receptive
field). Tested in tests/inference/test_streamed.py.

Memory bound: O(chunk_points) for a chunk (its records, float64 xyz, voxel keys, features),
O(tile_points) for a tile's buffer (24 bytes a point with one feature, plus voxelization
scratch), and the network on at most ``voxel_budget`` voxels; a tile can exceed
``tile_points`` only where one coarse cell plus its overlap already does. Disk: about
``(24 + 4 C) * N * (1 + overlap share)`` bytes of tile buffers plus 14 bytes a point of
results, removed at the end.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.data.voxelize import floor_coords, voxelize
from pcseg.inference.las_codes import (
    EVERY_POINT,
    CodePolicy,
    classification_codes,
    classification_notes,
    las_limit,
)
from pcseg.inference.predictor import Predictor
from pcseg.inference.tiling import MAX_SPAN, make_tiles, margin_voxels, run_tiles, tile_progress
from pcseg.io.point_file import PointFile, PointFileError, file_format
from pcseg.io.points import output_names
from pcseg.io.stream import (
    STREAM_FORMATS,
    PointChunk,
    iter_chunks,
    ply_stream_layout,
    write_streamed,
)
from pcseg.readers.common import GroundAccumulator, GroundSurface
from pcseg.readers.custom import (
    FileUnits,
    check_feature_fields,
    far_outside_notes,
    feature_fields,
    needs_ground,
    path_units,
    point_features,
    scene_origin,
    units_notes,
)

#: points per chunk of the out-of-core path
DEFAULT_CHUNK_POINTS = 1_000_000

#: side of the cells of the pass-1 point histogram, in voxels
COARSE_CELL_VOXELS = 8
#: most cells of the dense pass-1 histogram over a file's extent (int64: 128 MiB); a file
#: whose points spread further (outlying points of a damaged file) is refused
MAX_HISTOGRAM_CELLS = 1 << 24
_RESULT = np.dtype([("i", "<i8"), ("pred", "<i2"), ("conf", "<f4")])


@dataclass
class Scan:
    """What pass 1 learns about a file."""

    points: int
    lo: np.ndarray  # (3,) float64 bounds
    hi: np.ndarray
    field_max: dict[str, float]
    cell_keys: np.ndarray  # (M, 2) int64 absolute coarse cells (floor(xy / cell metres))
    cell_counts: np.ndarray  # (M,) int64 points per cell
    names: list[str]
    units: FileUnits = FileUnits()
    ground: GroundSurface | None = None


@dataclass
class GridPlan:
    """A regular XY grid of tile cores in voxel units: tile (i, j) has the core
    ``[x0 + i * side, x0 + (i + 1) * side) x [y0 + j * side, ...)``, all of Z."""

    x0: int
    y0: int
    side: int
    nx: int
    ny: int
    margin: int
    est_max_points: int

    @property
    def tiles(self) -> int:
        return self.nx * self.ny

    def core_box(self, t: int) -> tuple[int, int, int, int]:
        """(x_lo, x_hi, y_lo, y_hi) of tile ``t`` (= i * ny + j)."""
        i, j = divmod(t, self.ny)
        return (
            self.x0 + i * self.side,
            self.x0 + (i + 1) * self.side,
            self.y0 + j * self.side,
            self.y0 + (j + 1) * self.side,
        )


def _libc() -> Any:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


_LIBC = _libc()


def release_memory() -> None:
    """Hand the freed heap back to the OS (glibc ``malloc_trim``; no-op without glibc).
    Called after every chunk of every pass and after every tile: without it the freed
    chunk / tile arrays fragment the heap and the peak RSS crept up with the number of
    chunks, i.e. with the file (measured at 6M points: 650 MiB without, 577 MiB with)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _chunks(path: Path, chunk_points: int, units: FileUnits) -> Iterator[PointChunk]:
    """The chunks of ``path`` with ``xyz`` in metres."""
    factors = units.factors
    for chunk in iter_chunks(path, chunk_points):
        if (factors != 1.0).any():
            chunk.xyz = chunk.xyz * factors
        yield chunk
        release_memory()


def _check_chunk(path: Path, chunk: PointChunk) -> None:
    bad = ~np.isfinite(chunk.xyz)
    if bad.any():
        axis = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, axis])
        raise PointFileError(
            f"{path}: field {'xyz'[axis]!r} has NaN/inf value(s) (first at "
            f"point {chunk.start + int(rows[0])})"
        )


def scan(path: Path, predictor: Predictor, chunk_points: int) -> Scan:
    """Pass 1 (see the module docstring)."""
    spec = predictor.spec
    units = path_units(path, spec)
    acc = GroundAccumulator() if needs_ground(spec) else None
    cell_m = COARSE_CELL_VOXELS * predictor.voxel_size
    n = 0
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    fmax: dict[str, float] = {}
    keys = np.zeros(0, dtype=np.int64)
    counts = np.zeros(0, dtype=np.int64)
    names: list[str] = []
    for chunk in _chunks(path, chunk_points, units):
        if not len(chunk.xyz):
            continue
        _check_chunk(path, chunk)
        if acc is not None:
            acc.add(chunk.xyz, chunk.fields(["classification"]).get("classification"))
        if n == 0:  # the feature fields exist (error lists every field of the file)
            names = chunk.names
            pf = PointFile(
                path,
                file_format(path),
                chunk.xyz[:1],
                {k: np.asarray(chunk.record[k])[:1] for k in chunk.names},
            )
            check_feature_fields(pf, spec)
        n += len(chunk.xyz)
        lo = np.minimum(lo, chunk.xyz.min(axis=0))
        hi = np.maximum(hi, chunk.xyz.max(axis=0))
        for k, v in chunk.fields(feature_fields(spec)).items():
            if v.size and v.dtype != bool:
                fmax[k] = max(fmax.get(k, -np.inf), float(v.max()))
        c = np.floor(chunk.xyz[:, :2] / cell_m).astype(np.int64)
        u, cnt = np.unique((c[:, 0] << 32) + c[:, 1], return_counts=True)
        keys, counts = _merge_counts(np.concatenate([keys, u]), np.concatenate([counts, cnt]))
    if n == 0:
        raise PointFileError(f"{path}: the file holds no points")
    cells = np.stack([keys >> 32, (keys << 32) >> 32], axis=1)  # undo the packing
    ground = acc.surface() if acc is not None else None
    return Scan(n, lo, hi, fmax, cells, counts, names, units, ground)


def _merge_counts(keys: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, inv = np.unique(keys, return_inverse=True)
    return u, np.bincount(inv.ravel(), weights=w, minlength=len(u)).astype(np.int64)


def check_spread(path: Path, sc: Scan, voxel_size: float) -> None:
    """:class:`PointFileError` naming the file and its extent when the dense histogram of
    :func:`plan_grid` over its points would exceed :data:`MAX_HISTOGRAM_CELLS` (points
    thousands of kilometres apart: outliers of a damaged file, or mixed CRSs)."""
    shape = sc.cell_keys.max(axis=0) - sc.cell_keys.min(axis=0) + 1
    cells = int(shape[0]) * int(shape[1])
    if cells > MAX_HISTOGRAM_CELLS:
        ext = sc.hi - sc.lo
        raise PointFileError(
            f"{path}: the points spread over {ext[0]:,.0f} x {ext[1]:,.0f} m, "
            f"{cells:,} cells of {COARSE_CELL_VOXELS * voxel_size:g} m for the streamed path "
            f"(at most {MAX_HISTOGRAM_CELLS:,}): outlying points or mixed coordinate systems? "
            "Remove them, or predict it in memory (--stream never)"
        )


def plan_grid(
    sc: Scan, origin: np.ndarray, voxel_size: float, margin: int, tile_points: int
) -> GridPlan:
    """The largest square grid whose tiles (core + margin) are estimated to hold at most
    ``tile_points`` points (never below one coarse cell a side, never above MAX_SPAN)."""
    c = COARSE_CELL_VOXELS
    local_lo = (sc.lo - origin).astype(np.float32).astype(np.float64) / voxel_size
    local_hi = (sc.hi - origin).astype(np.float32).astype(np.float64) / voxel_size
    vlo = np.floor(local_lo).astype(np.int64)
    vhi = np.floor(local_hi).astype(np.int64) + 1
    # coarse cell a (absolute metres / cell) covers local voxels ~ [a c - off, (a + 1) c - off)
    off = origin[:2] / voxel_size
    cmin = sc.cell_keys.min(axis=0)
    shape = sc.cell_keys.max(axis=0) - cmin + 1
    hist = np.zeros(tuple(int(s) for s in shape), dtype=np.int64)
    hist[sc.cell_keys[:, 0] - cmin[0], sc.cell_keys[:, 1] - cmin[1]] = sc.cell_counts
    sat = np.zeros((hist.shape[0] + 1, hist.shape[1] + 1), dtype=np.int64)
    sat[1:, 1:] = hist.cumsum(0).cumsum(1)

    def cells(v_lo: np.ndarray, v_hi: np.ndarray, a: int) -> tuple[np.ndarray, np.ndarray]:
        # coarse cells (histogram rows) touched by local voxels [v_lo, v_hi), one cell slack
        c0 = np.floor((v_lo + off[a]) / c).astype(np.int64) - 1 - cmin[a]
        c1 = np.floor((v_hi - 1 + off[a]) / c).astype(np.int64) + 2 - cmin[a]
        n_ = hist.shape[a]
        return np.clip(c0, 0, n_), np.clip(c1, 0, n_)

    def estimate(side: int) -> tuple[int, int, int]:
        nx = max(1, math.ceil((vhi[0] - vlo[0]) / side))
        ny = max(1, math.ceil((vhi[1] - vlo[1]) / side))
        xs = vlo[0] + np.arange(nx) * side
        ys = vlo[1] + np.arange(ny) * side
        x0, x1 = cells(xs - margin, xs + side + margin, 0)
        y0, y1 = cells(ys - margin, ys + side + margin, 1)
        tot = (
            sat[x1[:, None], y1[None, :]]
            - sat[x0[:, None], y1[None, :]]
            - sat[x1[:, None], y0[None, :]]
            + sat[x0[:, None], y0[None, :]]
        )
        return int(tot.max()), nx, ny

    span = int(max(vhi[0] - vlo[0], vhi[1] - vlo[1]))
    top = max(c, min(span, MAX_SPAN - 2 * margin))
    lo_s, hi_s = 1, max(1, math.ceil(top / c))  # sides in coarse cells
    if estimate(hi_s * c)[0] > tile_points:
        while lo_s < hi_s:  # largest side whose estimate fits (estimate grows with the side)
            mid = (lo_s + hi_s + 1) // 2
            if estimate(mid * c)[0] <= tile_points:
                lo_s = mid
            else:
                hi_s = mid - 1
        hi_s = lo_s
    side = hi_s * c
    est, nx, ny = estimate(side)
    return GridPlan(int(vlo[0]), int(vlo[1]), side, nx, ny, margin, est)


def _feats(path: Path, chunk: PointChunk, predictor: Predictor, sc: Scan) -> np.ndarray:
    """The features of one chunk (``chunk.xyz`` in metres), as in memory."""
    pf = PointFile(path, file_format(path), chunk.xyz, chunk.fields(feature_fields(predictor.spec)))
    norm = predictor.inputs.norm if predictor.inputs is not None else None
    return point_features(
        pf, predictor.spec, sc.field_max, norm=norm, xyz_m=chunk.xyz, ground=sc.ground
    )


def _buffer_dtype(channels: int) -> np.dtype:
    return np.dtype([("i", "<i8"), ("p", "<f4", (3,)), ("f", "<f4", (channels,))])


def distribute(
    path: Path,
    predictor: Predictor,
    sc: Scan,
    origin: np.ndarray,
    plan: GridPlan,
    chunk_points: int,
    tmp: Path,
    far: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.dtype]:
    """Pass 2: every point into the buffer file ``tmp/tile_<t>.bin`` of each tile whose core
    or overlap holds its voxel, in file order. Returns points per tile and the record dtype;
    ``far`` (when given) accumulates {channel: points far outside the training range}."""
    per_tile = np.zeros(plan.tiles, dtype=np.int64)
    dt: np.dtype | None = None
    r = max(1, math.ceil(plan.margin / plan.side))
    for chunk in _chunks(path, chunk_points, sc.units):
        n = len(chunk.xyz)
        if not n:
            continue
        coords = (chunk.xyz - origin).astype(np.float32)
        f = _feats(path, chunk, predictor, sc)
        if far is not None and predictor.inputs is not None:
            for c, share in predictor.inputs.norm.far_outside(f).items():
                far[c] = far.get(c, 0.0) + share * n
        if dt is None:
            dt = _buffer_dtype(f.shape[1])
        vox = floor_coords(coords, predictor.voxel_size)
        ix = np.clip((vox[:, 0] - plan.x0) // plan.side, 0, plan.nx - 1)
        iy = np.clip((vox[:, 1] - plan.y0) // plan.side, 0, plan.ny - 1)
        pts_l, tiles_l = [], []
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                tx, ty = ix + dx, iy + dy
                ok = (tx >= 0) & (tx < plan.nx) & (ty >= 0) & (ty < plan.ny)
                if dx or dy:
                    bx = plan.x0 + tx * plan.side
                    by = plan.y0 + ty * plan.side
                    ok &= (
                        (vox[:, 0] >= bx - plan.margin)
                        & (vox[:, 0] < bx + plan.side + plan.margin)
                        & (vox[:, 1] >= by - plan.margin)
                        & (vox[:, 1] < by + plan.side + plan.margin)
                    )
                sel = np.flatnonzero(ok)
                pts_l.append(sel)
                tiles_l.append(tx[sel] * plan.ny + ty[sel])
        sel = np.concatenate(pts_l)
        tid = np.concatenate(tiles_l)
        order = np.lexsort((sel, tid))  # by tile, then file order
        sel, tid = sel[order], tid[order]
        rec = np.empty(len(sel), dtype=dt)
        rec["i"] = chunk.start + sel
        rec["p"] = coords[sel]
        rec["f"] = f[sel]
        bounds = np.flatnonzero(np.diff(tid)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(tid)]])
        for a, b in zip(starts, ends):
            t = int(tid[a])
            with open(tmp / f"tile_{t}.bin", "ab") as fh:
                fh.write(rec[a:b].tobytes())
            per_tile[t] += b - a
    assert dt is not None
    return per_tile, dt


def predict_tiles(
    predictor: Predictor,
    plan: GridPlan,
    per_tile: np.ndarray,
    dt: np.dtype,
    voxel_budget: int,
    chunk_points: int,
    tmp: Path,
    progress: bool = False,
    desc: str = "",
) -> dict[str, Any]:
    """Predict every tile buffer; the core points' results go to ``tmp/res_<bucket>.bin``.
    Returns voxels, visits, sub-tiles, class counts, the core boxes (global voxel units) of
    every (sub-)tile run and the largest tile (points, voxels)."""
    k = len(predictor.class_names)
    class_counts = np.zeros(k, dtype=np.int64)
    voxels = visits = 0
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    max_pts = max_vox = max_net = 0
    order = [t for t in range(plan.tiles) if per_tile[t]]
    bar = tile_progress(order, desc, progress)
    for t in bar:
        path = tmp / f"tile_{t}.bin"
        buf = np.fromfile(path, dtype=dt)
        path.unlink()
        x_lo, x_hi, y_lo, y_hi = plan.core_box(t)
        vr = voxelize(buf["p"], predictor.voxel_size, mode="test")
        vox = vr.voxel_coords.astype(np.int64)
        core_v = (vox[:, 0] >= x_lo) & (vox[:, 0] < x_hi) & (vox[:, 1] >= y_lo) & (vox[:, 1] < y_hi)
        max_pts, max_vox = max(max_pts, len(buf)), max(max_vox, len(vox))
        if not core_v.any():
            continue
        z_lo, z_hi = int(vox[:, 2].min()), int(vox[:, 2].max()) + 1
        lo = np.array([x_lo, y_lo, z_lo], dtype=np.int64)
        hi = np.array([x_hi, y_hi, z_hi], dtype=np.int64)
        # within a tile: its core split at the median until each part fits the budget
        subs = make_tiles(vox, max(int(voxel_budget), 1), plan.margin, MAX_SPAN, box=(lo, hi))
        rep = vr.point_index
        v_pred, v_conf, _, vis = run_tiles(predictor, vox, buf["p"][rep], buf["f"][rep], subs)
        boxes.extend((s.lo, s.hi) for s in subs)
        max_net = max([max_net] + [len(s.index) for s in subs])
        voxels += int(core_v.sum())
        visits += vis
        core_p = core_v[vr.inverse]
        res = np.empty(int(core_p.sum()), dtype=_RESULT)
        res["i"] = buf["i"][core_p]
        res["pred"] = v_pred[vr.inverse[core_p]]
        res["conf"] = v_conf[vr.inverse[core_p]]
        class_counts += np.bincount(res["pred"], minlength=k)
        bucket = res["i"] // chunk_points
        cut = np.flatnonzero(np.diff(bucket)) + 1
        for part in np.split(res, cut):
            with open(tmp / f"res_{int(part['i'][0]) // chunk_points}.bin", "ab") as fh:
                fh.write(part.tobytes())
        del buf, vr, vox, res, v_pred, v_conf, subs
        release_memory()
    bar.close()
    return {
        "voxels": voxels,
        "visits": visits,
        "tiles": len(boxes),
        "boxes": boxes,
        "class_counts": class_counts,
        "max_tile_points": max_pts,
        "max_tile_voxels": max_net,
        "max_grid_tile_voxels": max_vox,
    }


class _Results:
    """Pass 3's view of the result buckets: class / confidence of a chunk's points."""

    def __init__(self, tmp: Path, chunk_points: int) -> None:
        self.tmp, self.chunk_points = tmp, chunk_points
        self.cache: dict[int, np.ndarray] = {}
        self.conf_sum = 0.0

    def _bucket(self, b: int) -> np.ndarray:
        if b not in self.cache:
            self.cache = {k: v for k, v in self.cache.items() if k >= b - 1}
            p = self.tmp / f"res_{b}.bin"
            self.cache[b] = (
                np.fromfile(p, dtype=_RESULT) if p.exists() else np.zeros(0, dtype=_RESULT)
            )
        return self.cache[b]

    def get(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        pred = np.full(n, -1, dtype=np.int64)
        conf = np.zeros(n, dtype=np.float32)
        for b in range(start // self.chunk_points, (start + n - 1) // self.chunk_points + 1):
            r = self._bucket(b)
            m = (r["i"] >= start) & (r["i"] < start + n)
            pred[r["i"][m] - start] = r["pred"][m]
            conf[r["i"][m] - start] = r["conf"][m]
        if (pred < 0).any():
            raise RuntimeError(
                f"streamed predict: {int((pred < 0).sum())} point(s) of chunk "
                f"{start} got no prediction (a tiling bug)"
            )
        self.conf_sum += float(conf.sum(dtype=np.float64))
        return pred, conf


def stream_supported(path: Path, fmt: str = "same") -> bool:
    """Whether ``path`` can take the streaming path (LAS/LAZ, NPY or binary PLY written in its
    own format)."""
    try:
        src = file_format(path)
        if src == "ply" and ply_stream_layout(path) is None:
            return False
    except (PointFileError, OSError):
        return False
    return src in STREAM_FORMATS and (fmt == "same" or fmt == src)


def predict_file_streamed(
    predictor: Predictor,
    path: str | Path,
    out_dir: str | Path,
    voxel_budget: int,
    overlap: float | None = None,
    chunk_points: int = DEFAULT_CHUNK_POINTS,
    tile_points: int | None = None,
    progress: bool = False,
    policy: CodePolicy = EVERY_POINT,
) -> dict[str, Any]:
    """Predict one LAS/LAZ/NPY/binary-PLY file out of core (see the module docstring) and write
    its labelled copy into ``out_dir`` (same format; ``policy``: which points' LAS codes are
    replaced); returns the summary entry of
    :func:`pcseg.inference.memory.predict_file_in_memory` plus the streaming figures."""
    t0 = time.perf_counter()
    path, out_dir = Path(path), Path(out_dir)
    if not stream_supported(path):
        raise PointFileError(f"{path}: only {STREAM_FORMATS} files are streamed")
    if chunk_points < 1 or voxel_budget < 1:
        raise ValueError("chunk_points and voxel_budget must be >= 1")
    spec, k = predictor.spec, len(predictor.class_names)
    sc = scan(path, predictor, chunk_points)
    check_spread(path, sc, predictor.voxel_size)
    origin = scene_origin(np.stack([sc.lo, sc.hi]))
    margin = margin_voxels(predictor.voxel_size, overlap)
    plan = plan_grid(sc, origin, predictor.voxel_size, margin, tile_points or chunk_points)
    out = out_dir / output_names(path)[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.stream.", dir=out_dir))
    try:
        far: dict[str, float] = {}
        per_tile, dt = distribute(path, predictor, sc, origin, plan, chunk_points, tmp, far)
        res = predict_tiles(
            predictor, plan, per_tile, dt, voxel_budget, chunk_points, tmp, progress, desc=path.name
        )
        classes = np.flatnonzero(res["class_counts"])
        is_las = file_format(path) == "las"
        notes = units_notes(predictor.inputs, sc.units)
        if predictor.inputs is not None:
            big = {c: v / sc.points for c, v in far.items() if v / sc.points > 0.01}
            notes += far_outside_notes(predictor.inputs.norm, big)
        set_cls = False
        if is_las and spec.label_field == "classification":
            notes += classification_notes(spec, classes, las_limit(path))
            set_cls = not any("left unchanged" in n for n in notes)
        results = _Results(tmp, chunk_points)
        pdt = np.uint8 if k <= 255 else np.uint16

        def fill(chunk: PointChunk) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
            release_memory()  # the previous chunk's records
            pred, conf = results.get(chunk.start, len(chunk.xyz))
            cls = None
            if set_cls:
                old = chunk.fields(["classification"]).get("classification")
                cls = classification_codes(spec, pred, old, policy)
            return {"pred_class": pred.astype(pdt), "confidence": conf}, cls

        write_streamed(path, out, chunk_points, {"pred_class": pdt, "confidence": np.float32}, fill)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n, counts = sc.points, res["class_counts"]
    buffered = int(per_tile.sum())
    return {
        "file": str(path),
        "output": str(out),
        "points": n,
        "streamed": True,
        "origin": [float(o) for o in origin],
        "units": sc.units.describe(),
        "voxels": res["voxels"],
        "tiles": res["tiles"],
        "grid_tiles": int((per_tile > 0).sum()),
        "grid_side_voxels": plan.side,
        "overlap_cost": round((res["visits"] - res["voxels"]) / max(res["voxels"], 1), 4),
        "buffered_points_per_point": round(buffered / max(n, 1), 4),
        "max_tile_points": res["max_tile_points"],
        "max_tile_voxels": res["max_tile_voxels"],
        "boxes": [[lo.tolist(), hi.tolist()] for lo, hi in res["boxes"]],
        "margin_voxels": margin,
        "chunk_points": chunk_points,
        "class_shares": {nm: float(c) / max(n, 1) for nm, c in zip(predictor.class_names, counts)},
        "class_counts": {nm: int(c) for nm, c in zip(predictor.class_names, counts)},
        "mean_confidence": results.conf_sum / max(n, 1),
        "seconds": round(time.perf_counter() - t0, 3),
        "notes": notes,
    }
