"""The in-memory path of ``pcseg predict``: a file read whole, voxelized once, predicted
tile by tile (:mod:`pcseg.inference.tiling`) and written in its own format (or converted)
with all its fields kept.

Pipeline per file: read (float64) -> coordinates in metres (the file's own unit,
:func:`pcseg.readers.custom.file_units`) -> shift to the file's origin -> features exactly as
``pcseg prepare custom`` computes them (:func:`pcseg.readers.custom.point_features`, with the
normalisation fitted on the training files) ->
voxelize the whole file once (test mode: the first point of a voxel represents it, as
``pcseg test``) -> tiles -> network -> each point takes its voxel's prediction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.data.voxelize import voxelize
from pcseg.inference.las_codes import EVERY_POINT, CodePolicy, las_classification
from pcseg.inference.predictor import Predictor
from pcseg.inference.tiling import (
    DEFAULT_VOXEL_BUDGET,
    make_tiles,
    margin_voxels,
    run_tiles,
    tiles_from_boxes,
)
from pcseg.io.points import output_path, read_points, write_points
from pcseg.readers.custom import (
    file_units,
    point_features,
    scene_origin,
    units_notes,
    validate_points,
)


def predict_points(
    predictor: Predictor,
    coords: np.ndarray,
    feats: np.ndarray,
    voxel_budget: int | None = DEFAULT_VOXEL_BUDGET,
    overlap: float | None = None,
    progress: bool = False,
    desc: str = "",
    return_probs: bool = False,
    boxes: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Predict every point of ``coords`` (N, 3) float32 local metres / ``feats`` (N, C)
    with ``predictor``.

    ``voxel_budget``: most voxels per tile (None: one tile, untiled); ``overlap``:
    metres of context around each tile core (None: 16 voxels). Returns ``pred`` (N,)
    int64, ``confidence`` (N,) float32, ``tiles``, ``voxels``, ``margin_voxels``,
    ``overlap_cost`` (voxel visits beyond one per voxel / voxels), ``max_tile_voxels``, and
    with ``return_probs`` the voxel probabilities ``probs`` (V, K), ``inverse`` (N,),
    ``voxel_coords`` (V, 3) and ``tile_list``. ``boxes``: use these tile cores
    (:func:`tiles_from_boxes`) instead of splitting by the budget.
    """
    vr = voxelize(np.asarray(coords, dtype=np.float32), predictor.voxel_size, mode="test")
    vox = vr.voxel_coords.astype(np.int64)
    rep = vr.point_index
    pts, f = np.asarray(coords, dtype=np.float32)[rep], np.asarray(feats, dtype=np.float32)[rep]
    margin = margin_voxels(predictor.voxel_size, overlap)
    budget = len(vox) if voxel_budget is None else int(voxel_budget)
    if boxes is not None:
        tiles = tiles_from_boxes(vox, boxes, margin)
    else:
        tiles = make_tiles(vox, max(budget, 1), margin if voxel_budget is not None else 0)
    v_pred, v_conf, probs, visits = run_tiles(
        predictor, vox, pts, f, tiles, progress, desc, return_probs
    )
    out: dict[str, Any] = {
        "pred": v_pred[vr.inverse],
        "confidence": v_conf[vr.inverse],
        "tiles": len(tiles),
        "voxels": len(vox),
        "margin_voxels": margin if len(tiles) > 1 else 0,
        "overlap_cost": (visits - len(vox)) / max(len(vox), 1),
        "max_tile_voxels": max((len(t.index) for t in tiles), default=0),
    }
    if return_probs:
        out.update(probs=probs, inverse=vr.inverse, voxel_coords=vox, tile_list=tiles)
    return out


def predict_file_in_memory(
    predictor: Predictor,
    path: Path,
    out_dir: Path,
    fmt: str = "same",
    voxel_budget: int | None = DEFAULT_VOXEL_BUDGET,
    overlap: float | None = None,
    progress: bool = False,
    policy: CodePolicy = EVERY_POINT,
) -> dict[str, Any]:
    """Predict the file ``path`` read whole and write its labelled copy into ``out_dir``
    (``fmt``: 'same' or an output format; ``policy``: which points' LAS codes are
    replaced); returns its summary entry (``notes``: another CRS / unit than the training
    files, features far outside the training range, classification limits)."""
    path = Path(path)
    t0 = time.perf_counter()
    spec = predictor.spec
    pf = read_points(path, spec.columns)
    validate_points(pf)
    units = file_units(pf, spec)
    xyz_m = pf.xyz * units.factors
    origin = scene_origin(xyz_m)
    coords = (xyz_m - origin).astype(np.float32)
    norm = predictor.inputs.norm if predictor.inputs is not None else None
    feats = point_features(pf, spec, norm=norm, xyz_m=xyz_m)
    notes = units_notes(predictor.inputs, units, feats if norm is not None else None)
    res = predict_points(predictor, coords, feats, voxel_budget, overlap, progress, desc=path.name)
    pred, conf = res["pred"], res["confidence"]
    k = len(predictor.class_names)
    extra = {
        "pred_class": pred.astype(np.uint8 if k <= 255 else np.uint16),
        "confidence": conf.astype(np.float32),
    }
    cls, cls_notes = las_classification(pf, spec, pred, fmt, policy)
    notes += cls_notes
    out = output_path(pf, out_dir, fmt)
    write_points(pf, out, extra, fmt, classification=cls)
    counts = np.bincount(pred, minlength=k)
    return {
        "file": str(path),
        "output": str(out),
        "points": pf.num_points,
        "origin": [float(o) for o in origin],
        "units": units.describe(),
        "voxels": res["voxels"],
        "tiles": res["tiles"],
        "overlap_cost": round(float(res["overlap_cost"]), 4),
        "class_shares": {
            n: float(c) / max(pf.num_points, 1) for n, c in zip(predictor.class_names, counts)
        },
        "class_counts": {n: int(c) for n, c in zip(predictor.class_names, counts)},
        "mean_confidence": float(conf.mean()) if len(conf) else 0.0,
        "streamed": False,
        "seconds": round(time.perf_counter() - t0, 3),
        "notes": notes,
    }
