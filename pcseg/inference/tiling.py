"""Tiling (bounded memory): the occupied voxels of a scene split into tiles of at most
``voxel_budget`` voxels, and the ONE tile loop (:func:`run_tiles`) that runs the network on
each tile and keeps the prediction of its core voxels. Both the in-memory path
(:mod:`pcseg.inference.memory`) and the out-of-core one (:mod:`pcseg.inference.streamed`)
run their tiles through it.

Tiles: the occupied voxels are split recursively (at the median voxel of the longest axis
of the core) until every tile -- its core box grown by the margin (``overlap`` metres, in
whole voxels) on every side -- holds at most ``voxel_budget`` voxels. Each tile is run on
its own (its voxel coordinates shifted by a multiple of :data:`SHIFT_QUANTUM` voxels, so
every stride of the network sees the same grid as in the whole scene); the voxels of its
CORE take its prediction, the overlap only gives context. Overlaps are resolved by
ownership, not blending: every voxel lies in exactly one core, so each point takes the tile
in which it is farthest from the tile border (at least the margin, unless at the scene's
own edge). Exactness: see :mod:`pcseg.inference` and :func:`receptive_field`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pcseg.inference.predictor import Predictor
from pcseg.models.inputs import sparse_input
from pcseg.utils.progress import progress_bar

DEFAULT_VOXEL_BUDGET = 200_000
DEFAULT_OVERLAP_VOXELS = 16
#: tile voxel coordinates are shifted by multiples of this (>= the network's largest stride)
SHIFT_QUANTUM = 256
#: a tile's largest extent in voxels (the key range of the sparse backend)
MAX_SPAN = 30000


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
    max_span: int = MAX_SPAN,
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


def margin_voxels(voxel_size: float, overlap: float | None) -> int:
    """The overlap in voxels: ``overlap`` metres rounded up (None: the default)."""
    return (
        DEFAULT_OVERLAP_VOXELS if overlap is None else math.ceil(float(overlap) / voxel_size - 1e-9)
    )


def run_tiles(
    predictor: Predictor,
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
    k = len(predictor.class_names)
    v_pred = np.zeros(len(vox), dtype=np.int64)
    v_conf = np.zeros(len(vox), dtype=np.float32)
    probs = np.zeros((len(vox), k), dtype=np.float32) if return_probs else None
    visits = 0
    bar = tile_progress(tiles, desc, progress)
    for t in bar:
        tv = vox[t.index]
        centre = (t.lo + t.hi) // 2
        shift = (np.floor_divide(centre, SHIFT_QUANTUM) * SHIFT_QUANTUM).astype(np.int64)
        p = torch.softmax(
            predictor.logits((tv - shift).astype(np.int32), pts[t.index], f[t.index]), dim=1
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


def tile_progress(tiles: Any, desc: str | None, progress: bool) -> Any:
    """The progress bar of a loop over tiles (``pcseg.utils.progress.progress_bar``)."""
    return progress_bar(
        tiles,
        desc=desc or "predict",
        unit="tile",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    )


def receptive_field(
    model: torch.nn.Module, in_channels: int, length: int = 256, device: torch.device | str = "cpu"
) -> int:
    """Theoretical receptive-field radius of ``model`` in voxels, measured: the farthest
    voxel of a line of ``2 * length + 1`` voxels whose input has a non-zero gradient on the
    output of the centre voxel (every voxel within it can change that output)."""
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
