"""``pcseg predict``: a trained checkpoint on your own files, labelled files out.

No labels are needed. Every ORIGINAL point gets a class (``pred_class``) and a confidence
(``confidence`` = the maximum softmax probability of its voxel) and the file is written in
its own format with all its fields kept (:func:`pcseg.datasets.formats.write_points`):
LAS gets ``classification`` set through the reverse of ``map`` when the labels came from
the classification codes, plus extra dimensions ``pred_class`` / ``confidence``; PLY, NPY,
NPZ, PCD and TXT get added fields / columns; a KITTI ``.bin`` is copied with a ``.label``
file next to it. ``OUT/predict_summary.json`` holds the class shares of every file.

Pipeline per file: read (float64) -> shift to the file's origin -> features exactly as
``pcseg prepare custom`` computes them (:func:`pcseg.datasets.custom.point_features`) ->
voxelize the whole file once (test mode: the first point of a voxel represents it, as
``pcseg test``) -> tiles -> network -> each point takes its voxel's prediction.

Tiling (bounded memory): the occupied voxels are split recursively (at the median voxel of
the longest axis of the core) until every tile — its core box grown by ``overlap`` metres
on every side — holds at most ``voxel_budget`` voxels. Each tile is run on its own (its
voxel coordinates shifted by a multiple of 256 voxels, so every stride of the network sees
the same grid as in the whole scene); the voxels of its CORE take its prediction, the
overlap only gives context. Overlaps are resolved by ownership, not blending: every voxel
lies in exactly one core, so each point takes the tile in which it is farthest from the
tile border (at least ``overlap``, unless at the scene's own edge).

Exactness: a voxel's output depends only on the voxels within the network's receptive
field (:func:`receptive_field`, in voxels; 94 for a MinkUNet14A). When ``overlap`` >= that
radius, tiled prediction equals untiled prediction for every point (up to float summation
order: probabilities within 1e-5, classes equal). With a smaller overlap only voxels nearer
than the radius to a tile border can differ; the tolerance stated and tested
(tests/test_predict.py) at the default overlap of 16 voxels: probabilities within 1e-3 and
at most 1 % of voxels with another class (measured: 1e-5 and none). The default is a
trade-off: the theoretical radius is large, the effective one far smaller, and the overlap
cost (extra voxel visits, reported per file as ``overlap_cost``) grows with it.

Out of core (:mod:`pcseg.predict_stream`): LAS/LAZ, NPY and binary PLY files of more than
``chunk_points`` points (``stream='auto'``; 'always' / 'never' force it) are never read
whole: a regular XY grid of tiles is planned from a first pass, the points are spread over
per-tile buffers on disk, each tile is predicted as above (its core split further at the
median when it holds more than ``voxel_budget`` voxels) and the file is written back chunk
by chunk, so the peak memory is set by ``chunk_points`` and ``voxel_budget``. ASCII PLY
(and binary PLY whose vertex element is not first or has a list property), PCD, NPZ, TXT and
``.bin`` files (and ``--format`` conversions) take the in-memory path above.

Distributed: under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set) rank r predicts files
r, r + W, ...; each rank writes its own files and ``predict_summary.rank<r>.json``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import torch

from pcseg.datasets.custom import (
    ClassesSpec,
    classes_from_dict,
    load_classes,
    point_features,
    scene_origin,
    validate_points,
)
from pcseg.datasets.formats import (
    OUTPUT_FORMATS,
    SUFFIXES,
    PointFile,
    output_path,
    read_points,
    write_points,
)
from pcseg.utils.io import atomic_write_json
from pcseg.utils.progress import progress_bar

DEFAULT_VOXEL_BUDGET = 200_000
DEFAULT_OVERLAP_VOXELS = 16
#: points per chunk of the out-of-core path (:mod:`pcseg.predict_stream`)
DEFAULT_CHUNK_POINTS = 1_000_000
STREAM_MODES = ("auto", "always", "never")
#: tile voxel coordinates are shifted by multiples of this (>= the network's largest stride)
SHIFT_QUANTUM = 256


class PredictError(ValueError):
    """A predict run that cannot start (bad checkpoint, options, class spec)."""


# ----------------------------------------------------------------------------- tiling
@dataclass
class Tile:
    """One tile: ``index`` = its voxels (core + overlap), ``core`` = mask of its core voxels
    within ``index``; boxes in voxel units, half-open ``[lo, hi)``."""

    lo: np.ndarray
    hi: np.ndarray
    index: np.ndarray
    core: np.ndarray


def make_tiles(
    vox: np.ndarray,
    voxel_budget: int,
    margin: int,
    max_span: int = 30000,
    box: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Tile]:
    """Split the voxels ``vox`` (V, 3) into tiles of at most ``voxel_budget`` voxels each
    (core box + ``margin`` voxels on every side), see the module docstring. Cores are not
    split below the margin's width (nor below one voxel): such a tile may exceed the
    budget (the overlap alone does), see ``max_tile_voxels``. ``max_span``: the
    largest extent of a tile in voxels (the key range of the sparse backend). ``box``: the
    (lo, hi) box whose voxels the cores partition (default: all of ``vox``); voxels outside
    it only give context (a streamed tile: its core box, its overlap loaded around it)."""
    vox = np.asarray(vox, dtype=np.int64)
    if len(vox) == 0:
        return []
    if box is None:
        lo0, hi0 = vox.min(axis=0), vox.max(axis=0) + 1
    else:
        lo0, hi0 = np.asarray(box[0], dtype=np.int64), np.asarray(box[1], dtype=np.int64)
    tiles: list[Tile] = []
    stack = [(lo0, hi0, np.arange(len(vox), dtype=np.int64))]
    while stack:
        lo, hi, cand = stack.pop()
        v = vox[cand]
        in_tile = np.all((v >= lo - margin) & (v < hi + margin), axis=1)
        idx = cand[in_tile]
        vt = v[in_tile]
        core = np.all((vt >= lo) & (vt < hi), axis=1)
        if not core.any():
            continue
        span = hi - lo
        too_big = len(idx) > voxel_budget or int((span + 2 * margin).max()) > max_span
        # cores narrower than the overlap would only multiply the overlap: stop there
        if not too_big or int(span.max()) <= max(1, margin):
            tiles.append(Tile(lo, hi, idx, core))
            continue
        axis = int(np.argmax(span))
        cv = vt[core, axis]
        s = int(np.median(cv))
        s = min(max(s, int(lo[axis]) + 1), int(hi[axis]) - 1)
        if not (cv < s).any() or not (cv >= s).any():  # all core voxels on one side
            s = int(lo[axis] + hi[axis]) // 2
        hi_a, lo_b = hi.copy(), lo.copy()
        hi_a[axis] = s
        lo_b[axis] = s
        stack.append((lo_b, hi, idx))
        stack.append((lo, hi_a, idx))
    return tiles


def tiles_from_boxes(
    vox: np.ndarray, boxes: Sequence[tuple[np.ndarray, np.ndarray]], margin: int
) -> list[Tile]:
    """Tiles of given core boxes (voxel units, half-open; they must partition the voxels),
    each with ``margin`` voxels of context: the in-memory twin of a streamed tiling."""
    vox = np.asarray(vox, dtype=np.int64)
    tiles = []
    for lo, hi in boxes:
        lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
        idx = np.flatnonzero(np.all((vox >= lo - margin) & (vox < hi + margin), axis=1))
        core = np.all((vox[idx] >= lo) & (vox[idx] < hi), axis=1)
        if core.any():
            tiles.append(Tile(lo, hi, idx, core))
    return tiles


def border_distance(vox: np.ndarray, tiles: list[Tile], margin: int) -> np.ndarray:
    """(V,) distance in voxels of every voxel from the border of the tile that predicts it
    (tile box = core grown by ``margin``); a side with no voxel beyond it (the scene's own
    edge) is no border. Untiled: inf everywhere."""
    vox = np.asarray(vox, dtype=np.int64)
    d = np.full(len(vox), np.inf)
    if len(tiles) <= 1:
        return d
    slo, shi = vox.min(axis=0), vox.max(axis=0)
    for t in tiles:
        sel = t.index[t.core]
        v = vox[sel].astype(np.float64)
        dist = np.full(len(v), np.inf)
        for a in range(3):
            blo, bhi = t.lo[a] - margin, t.hi[a] + margin - 1  # first / last voxel in the tile
            if blo > slo[a]:
                dist = np.minimum(dist, v[:, a] - blo)
            if bhi < shi[a]:
                dist = np.minimum(dist, bhi - v[:, a])
        d[sel] = dist
    return d


# ----------------------------------------------------------------------------- the model
@dataclass
class Predictor:
    """A loaded checkpoint ready to label points (:func:`load_predictor`)."""

    model: torch.nn.Module
    spec: ClassesSpec
    class_names: list[str]
    voxel_size: float
    feature_keys: tuple[str, ...]
    in_channels: int
    device: torch.device
    checkpoint: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def logits(self, vox: np.ndarray, pts: np.ndarray, feats: np.ndarray) -> torch.Tensor:
        """(M, K) float32 logits of the voxels ``vox`` (M, 3) int (already shifted), whose
        representative points / raw features are ``pts`` / ``feats``."""
        from pcseg.data.dataset import SegmentationDataset
        from pcseg.models.inputs import sparse_input

        ns = cast(Any, SimpleNamespace(feature_keys=self.feature_keys))
        f = SegmentationDataset._features(ns, pts, feats)
        coords = np.empty((len(vox), 4), dtype=np.int32)
        coords[:, 0] = 0
        coords[:, 1:] = vox
        batch = {
            "coords": torch.from_numpy(coords).to(self.device),
            "feats": torch.from_numpy(np.ascontiguousarray(f)).to(self.device),
        }
        out, _ = self.model(sparse_input(batch))
        return out.float()

    def margin_voxels(self, overlap: float | None) -> int:
        """The overlap in voxels: ``overlap`` metres rounded up (None: the default)."""
        return (
            DEFAULT_OVERLAP_VOXELS
            if overlap is None
            else math.ceil(float(overlap) / self.voxel_size - 1e-9)
        )

    def run_tiles(
        self,
        vox: np.ndarray,
        pts: np.ndarray,
        f: np.ndarray,
        tiles: list[Tile],
        progress: bool = False,
        desc: str = "",
        return_probs: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """Run the network on every tile of the voxels ``vox`` (V, 3) (representative points
        ``pts`` / features ``f``); the voxels of a tile's CORE take its prediction. Returns
        per-voxel class (V,) int64, confidence (V,) float32, probabilities (V, K) or None,
        and the voxel visits (sum of tile sizes)."""
        k = len(self.class_names)
        v_pred = np.zeros(len(vox), dtype=np.int64)
        v_conf = np.zeros(len(vox), dtype=np.float32)
        probs = np.zeros((len(vox), k), dtype=np.float32) if return_probs else None
        visits = 0
        bar = progress_bar(
            tiles,
            desc=desc or "predict",
            unit="tile",
            disable=not progress,
            dynamic_ncols=True,
            leave=False,
        )
        for t in bar:
            tv = vox[t.index]
            centre = (t.lo + t.hi) // 2
            shift = (np.floor_divide(centre, SHIFT_QUANTUM) * SHIFT_QUANTUM).astype(np.int64)
            p = torch.softmax(
                self.logits((tv - shift).astype(np.int32), pts[t.index], f[t.index]), dim=1
            )
            pc = p[torch.from_numpy(t.core).to(p.device)].cpu()
            conf, cls = pc.max(dim=1)
            sel = t.index[t.core]
            v_pred[sel] = cls.numpy()
            v_conf[sel] = conf.numpy()
            if probs is not None:
                probs[sel] = pc.numpy()
            visits += len(t.index)
        bar.close()
        return v_pred, v_conf, probs, visits

    def predict_points(
        self,
        coords: np.ndarray,
        feats: np.ndarray,
        voxel_budget: int | None = DEFAULT_VOXEL_BUDGET,
        overlap: float | None = None,
        progress: bool = False,
        desc: str = "",
        return_probs: bool = False,
        boxes: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> dict[str, Any]:
        """Predict every point of ``coords`` (N, 3) float32 local metres / ``feats`` (N, C).

        ``voxel_budget``: most voxels per tile (None: one tile, untiled); ``overlap``:
        metres of context around each tile core (None: 16 voxels). Returns ``pred`` (N,)
        int64, ``confidence`` (N,) float32, ``tiles``, ``voxels``, ``overlap_voxels`` (voxel
        visits beyond one per voxel / voxels), ``near_border`` (share of voxels nearer than
        the overlap ... see module docstring), and with ``return_probs`` the voxel
        probabilities ``probs`` (V, K) and ``inverse`` (N,). ``boxes``: use these tile cores
        (:func:`tiles_from_boxes`) instead of splitting by the budget.
        """
        from pcseg.data.voxelize import voxelize

        vr = voxelize(np.asarray(coords, dtype=np.float32), self.voxel_size, mode="test")
        vox = vr.voxel_coords.astype(np.int64)
        rep = vr.point_index
        pts, f = np.asarray(coords, dtype=np.float32)[rep], np.asarray(feats, dtype=np.float32)[rep]
        margin = self.margin_voxels(overlap)
        budget = len(vox) if voxel_budget is None else int(voxel_budget)
        if boxes is not None:
            tiles = tiles_from_boxes(vox, boxes, margin)
        else:
            tiles = make_tiles(vox, max(budget, 1), margin if voxel_budget is not None else 0)
        v_pred, v_conf, probs, visits = self.run_tiles(
            vox, pts, f, tiles, progress, desc, return_probs
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


def receptive_field(
    model: torch.nn.Module, in_channels: int, length: int = 256, device: torch.device | str = "cpu"
) -> int:
    """Theoretical receptive-field radius of ``model`` in voxels, measured: the farthest
    voxel of a line of ``2 * length + 1`` voxels whose input has a non-zero gradient on the
    output of the centre voxel (every voxel within it can change that output)."""
    from pcseg.models.inputs import sparse_input

    x = torch.arange(-length, length + 1, dtype=torch.int32)
    coords = torch.zeros(len(x), 4, dtype=torch.int32)
    coords[:, 1] = x + 4 * SHIFT_QUANTUM  # a positive, stride-aligned place
    feats = torch.randn(len(x), in_channels, requires_grad=True)
    was_training = model.training
    model.eval()
    batch = {"coords": coords.to(device), "feats": feats.to(device)}
    out, _ = model(sparse_input(batch))
    out[length].sum().backward()
    model.train(was_training)
    g = feats.grad.abs().sum(dim=1) if feats.grad is not None else torch.zeros(len(x))
    nz = torch.nonzero(g > 0).flatten()
    return int((nz - length).abs().max()) if len(nz) else 0


def _default_spec(state: dict[str, Any], cfg: Any) -> ClassesSpec | None:
    """The class spec of a run: the copy in its processed folder's meta.json, if any."""
    root = Path(str(cfg.data.root)) if cfg.data.root else None
    if root is not None and (root / "meta.json").is_file():
        meta = json.loads((root / "meta.json").read_text())
        if isinstance(meta.get("classes"), dict):
            return classes_from_dict(meta["classes"], str(root / "meta.json"))
    names = state.get("class_names")
    if names and cfg.data.dataset in BENCHMARK_FEATURES:
        # a benchmark run (S3DIS / ScanNet / SemanticKITTI): its classes are in the checkpoint,
        # its input features are those of the benchmark's own files
        spec = {
            "names": list(names),
            "features": BENCHMARK_FEATURES[cfg.data.dataset],
            "voxel_size": float(cfg.data.voxel_size),
        }
        return classes_from_dict(spec, "the checkpoint's class list")
    return None


#: per-point fields of a raw file that stand for each benchmark's training features
BENCHMARK_FEATURES: dict[str, list[str]] = {
    "s3dis": ["rgb"],
    "scannet": ["rgb"],
    "semantickitti": ["intensity"],
}


def load_predictor(
    checkpoint: str | Path, classes: str | Path | ClassesSpec | None = None, device: str = "auto"
) -> Predictor:
    """Load ``checkpoint`` (model + config stored in it) with the class spec ``classes``
    (CLASSES.yaml; default: the copy ``pcseg prepare custom`` kept in the run's processed
    meta.json). Raises :class:`PredictError` naming what is missing."""
    from pcseg.engine.evaluate import load_model_for_eval
    from pcseg.engine.trainer import resolve_device
    from pcseg.workflows.runs import config_from_checkpoint

    try:
        cfg = config_from_checkpoint(checkpoint, [])
    except Exception as e:
        raise PredictError(f"checkpoint {checkpoint}: cannot read its config: {e}") from e
    if device != "auto":
        cfg.train.device = device
    dev = resolve_device(cfg.train.device)
    if dev.type == "cuda" and os.environ.get("LOCAL_RANK") is not None and device == "auto":
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    model, _method, state = load_model_for_eval(cfg, checkpoint, dev)
    if isinstance(classes, ClassesSpec):
        spec = classes
    elif classes is not None:
        spec = load_classes(classes)
    else:
        found = _default_spec(state, cfg)
        if found is None:
            raise PredictError(
                f"checkpoint {checkpoint}: no class spec found (data.root {cfg.data.root!r} has "
                "no meta.json with 'classes'); pass --classes CLASSES.yaml"
            )
        spec = found
    names = list(state.get("class_names") or spec.names)
    if len(names) != int(state["num_classes"]):
        raise PredictError(
            f"checkpoint {checkpoint}: {state['num_classes']} classes but class names {names}"
        )
    if list(spec.names) != names:
        raise PredictError(
            f"checkpoint {checkpoint} was trained on classes {names}, the class "
            f"spec lists {spec.names}"
        )
    in_ch = int(state["in_channels"])
    feat_kind = "rgb" if spec.features == ["rgb"] else "remission"
    keys = tuple(cfg.data.feature_keys or (("rgb",) if feat_kind == "rgb" else ("remission",)))
    widths = {"rgb": 3, "remission": 1, "xyz": 3, "xyz_norm": 3}
    if sum(widths[k_] for k_ in keys) != in_ch:
        raise PredictError(
            f"checkpoint {checkpoint} expects {in_ch} input channels; features "
            f"{spec.features} with feature keys {list(keys)} give "
            f"{sum(widths[k_] for k_ in keys)}"
        )
    return Predictor(
        model=model,
        spec=spec,
        class_names=names,
        voxel_size=float(cfg.data.voxel_size),
        feature_keys=keys,
        in_channels=in_ch,
        device=dev,
        checkpoint=str(checkpoint),
        info={"iteration": state.get("iteration"), "model": cfg.model.name},
    )


# ----------------------------------------------------------------------------- files
def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files of ``inputs`` (a folder: every supported file under it, sorted)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(
                q
                for q in sorted(p.rglob("*"))
                if q.is_file() and q.suffix.lower() in SUFFIXES and not q.name.startswith(".")
            )
        else:
            files.append(p)
    return list(dict.fromkeys(files))


def label_codes(spec: ClassesSpec, pred: np.ndarray) -> np.ndarray:
    """Raw label codes of predicted classes: the reverse of ``map`` (the class index itself
    when ``map`` is omitted); -1 for a class no raw value maps to."""
    rev = spec.reverse_map()
    return pred.astype(np.int64) if rev is None else rev[pred]


def _las_classification(
    pf: PointFile, spec: ClassesSpec, pred: np.ndarray, fmt: str
) -> tuple[np.ndarray | None, list[str]]:
    """Classification codes to set in a LAS output (None: leave it), and notes."""
    target = pf.format if fmt == "same" else fmt
    if target not in ("las", "bin"):
        return None, []
    if target == "bin":
        return label_codes(spec, pred), []
    if spec.label_field != "classification" and pf.format == "las":
        return None, []
    las = pf.native.get("las")
    limit = 31 if las is not None and las.point_format.id < 6 else 255
    notes = classification_notes(spec, np.unique(pred), limit)
    if any("left unchanged" in n for n in notes):
        return None, notes
    return classification_codes(spec, pred, pf.fields.get("classification")), notes


def classification_notes(spec: ClassesSpec, classes: np.ndarray, limit: int) -> list[str]:
    """Notes on writing the codes of the predicted ``classes`` into a LAS classification
    whose largest code is ``limit`` (31 for point formats < 6); a note containing "left
    unchanged" means the classification is not written."""
    codes = label_codes(spec, np.asarray(classes, dtype=np.int64))
    notes = []
    if (codes < 0).any():
        notes.append("classes without a raw code in 'map' keep the file's classification")
    if codes.max(initial=0) > limit:
        notes.append(
            f"codes above {limit} do not fit this point format's classification; "
            "classification left unchanged (see pred_class)"
        )
    return notes


def classification_codes(spec: ClassesSpec, pred: np.ndarray, old: np.ndarray | None) -> np.ndarray:
    """uint8 LAS codes of ``pred``: the reverse of ``map``; a class without a code keeps the
    point's ``old`` classification (1, unclassified, without one)."""
    codes = label_codes(spec, pred)
    if (codes < 0).any():
        fill = old if old is not None else np.ones(len(codes), dtype=np.int64)
        codes = np.where(codes < 0, fill, codes)
    return codes.astype(np.uint8)


def _las_limit(path: Path) -> int:
    """Largest classification code of a LAS file's point format (31 below format 6)."""
    import laspy  # type: ignore[import-untyped]

    with laspy.open(str(path)) as r:
        return 31 if r.header.point_format.id < 6 else 255


def use_stream(
    path: Path, fmt: str, voxel_budget: int | None, stream: str, chunk_points: int
) -> bool:
    """Whether :func:`predict_file` takes the out-of-core path: ``stream`` 'always' (LAS/
    LAZ/NPY written in their own format, with a voxel budget), 'never', or 'auto' (those
    files when they hold more than ``chunk_points`` points)."""
    from pcseg.datasets.formats import stream_count
    from pcseg.predict_stream import stream_supported

    if stream not in STREAM_MODES:
        raise PredictError(f"stream must be one of {STREAM_MODES}, got {stream!r}")
    if stream == "never" or voxel_budget is None or not stream_supported(path, fmt):
        return False
    if stream == "always":
        return True
    try:
        return stream_count(path) > chunk_points
    except ValueError:
        return False  # the in-memory reader reports the bad file


def predict_file(
    predictor: Predictor,
    path: Path,
    out_dir: Path,
    fmt: str = "same",
    voxel_budget: int | None = DEFAULT_VOXEL_BUDGET,
    overlap: float | None = None,
    progress: bool = False,
    stream: str = "auto",
    chunk_points: int = DEFAULT_CHUNK_POINTS,
) -> dict[str, Any]:
    """Predict one file and write its labelled copy; returns its summary entry. ``stream``:
    see :func:`use_stream` (the out-of-core path is :mod:`pcseg.predict_stream`)."""
    path = Path(path)
    if use_stream(path, fmt, voxel_budget, stream, chunk_points):
        from pcseg.predict_stream import predict_file_streamed

        assert voxel_budget is not None
        r = predict_file_streamed(
            predictor, path, out_dir, voxel_budget, overlap, chunk_points, progress=progress
        )
        r.pop("boxes", None)
        return r
    t0 = time.perf_counter()
    spec = predictor.spec
    pf = read_points(path, spec.columns)
    validate_points(pf)
    origin = scene_origin(pf.xyz)
    coords = (pf.xyz - origin).astype(np.float32)
    feats = point_features(pf, spec)
    res = predictor.predict_points(coords, feats, voxel_budget, overlap, progress, desc=path.name)
    pred, conf = res["pred"], res["confidence"]
    k = len(predictor.class_names)
    extra = {
        "pred_class": pred.astype(np.uint8 if k <= 255 else np.uint16),
        "confidence": conf.astype(np.float32),
    }
    cls, notes = _las_classification(pf, spec, pred, fmt)
    out = output_path(pf, out_dir, fmt)
    write_points(pf, out, extra, fmt, classification=cls)
    counts = np.bincount(pred, minlength=k)
    return {
        "file": str(path),
        "output": str(out),
        "points": pf.num_points,
        "origin": [float(o) for o in origin],
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


def rank_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment (0, 1 without it)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def predict_files(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    fmt: str = "same",
    classes: str | Path | None = None,
    voxel_budget: int | None = DEFAULT_VOXEL_BUDGET,
    overlap: float | None = None,
    device: str = "auto",
    progress: bool = True,
    stream: str = "auto",
    chunk_points: int = DEFAULT_CHUNK_POINTS,
) -> dict[str, Any]:
    """``pcseg predict``: label every file of ``inputs`` into ``out``; a file that fails is
    reported (file + error) and the others go on. Returns the summary (also written to
    ``OUT/predict_summary.json``, ``.rank<r>.json`` under torchrun)."""
    if fmt != "same" and fmt not in OUTPUT_FORMATS:
        raise PredictError(f"--format must be 'same' or one of {OUTPUT_FORMATS}, got {fmt!r}")
    if stream not in STREAM_MODES:
        raise PredictError(f"--stream must be one of {STREAM_MODES}, got {stream!r}")
    if chunk_points < 1:
        raise PredictError(f"--chunk-points must be >= 1, got {chunk_points}")
    files = expand_inputs(inputs)
    if not files:
        raise PredictError(f"no input files in {list(map(str, inputs))}")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise PredictError(
                f"{stems[f.stem]} and {f} would both be written as {f.stem}.*; "
                "predict them into different --out folders"
            )
        stems[f.stem] = f
    rank, world = rank_world()
    mine = files[rank::world]
    predictor = load_predictor(checkpoint, classes, device)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, f in enumerate(mine):
        if progress:
            print(f"[predict] ({i + 1}/{len(mine)}) {f}", file=sys.stderr)
        try:
            r = predict_file(
                predictor, f, out_dir, fmt, voxel_budget, overlap, progress, stream, chunk_points
            )
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
            failed.append(
                {
                    "file": str(f),
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=3),
                }
            )
            print(f"FAILED {f}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        done.append(r)
        shares = ", ".join(f"{n} {100 * s:.1f}%" for n, s in r["class_shares"].items() if s > 0)
        how = "streamed, " if r.get("streamed") else ""
        print(f"{f} -> {r['output']}: {r['points']:,} points, {how}{r['tiles']} tile(s); {shares}")
    points = sum(r["points"] for r in done)
    seconds = time.perf_counter() - t0
    summary = {
        "checkpoint": str(checkpoint),
        "classes": predictor.class_names,
        "voxel_size": predictor.voxel_size,
        "voxel_budget": voxel_budget,
        "overlap_m": overlap,
        "stream": stream,
        "chunk_points": chunk_points,
        "rank": rank,
        "world_size": world,
        "files": done,
        "failures": failed,
        "points": points,
        "seconds": round(seconds, 3),
        "points_per_second": points / seconds if seconds > 0 else 0.0,
    }
    name = "predict_summary.json" if world == 1 else f"predict_summary.rank{rank}.json"
    atomic_write_json(out_dir / name, summary)
    print(
        f"[predict] {len(done)} file(s) labelled, {len(failed)} failed; summary in {out_dir / name}"
    )
    return summary
