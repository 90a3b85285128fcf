"""Superpoints: an over-segmentation of a scene into small, homogeneous pieces, and the
spreading of weak labels to the superpoint each labelled point lies in.

Method (chosen for being dependency-free, deterministic and fast enough at prepare time):
graph-based segmentation (Felzenszwalb & Huttenlocher, IJCV 2004) on the voxel graph.

1. The points are grouped into voxels of ``voxel_size`` (mean position and feature per voxel).
2. Each voxel is joined to its ``knn`` nearest voxel centres (scipy's cKDTree), keeping edges
   no longer than ``max_edge`` voxel sizes, so separate objects are not bridged across gaps.
3. An edge's weight is ``feature_weight * |f_i - f_j| + normal_weight * (1 - |n_i . n_j|)``:
   colour / intensity difference plus the angle between local surface normals (PCA of the
   ``knn`` neighbourhood), so a wall meeting a floor, or a red chair on a grey floor, is cut.
4. Edges are taken in increasing weight; two components merge when the weight is at most
   ``min(Int(A) + k / |A|, Int(B) + k / |B|)`` (Int = the largest weight inside a component),
   then components smaller than ``min_size`` voxels are merged into their cheapest neighbour.

Libraries considered: ``pycut-pursuit`` 0.1.4 (the cut pursuit of Superpoint Transformer)
ships binaries compiled against NumPy 1.x and fails to import under NumPy 2 (measured here);
``cut-pursuit-py`` is a single-author alpha. Open3D (normals) is only the ``viz`` extra.

Propagation (One Thing One Click, CVPR 2021, without its relation network): every point of a
superpoint that holds labelled points which all agree gets their class; superpoints whose
labels disagree, or that hold none, stay unlabelled (-1).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Annotated
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.spatial import cKDTree

from pcseg.data import processed
from pcseg.utils.progress import progress_bar
from pcseg.io.atomic import atomic_save_npy, atomic_write_json


class SuperpointOptions(BaseModel):
    """Parameters of :func:`superpoints` (lengths in the scene's coordinate unit, metres);
    the ``data.superpoints`` section of a config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: size of the voxels the graph is built on
    voxel_size: Annotated[float, Field(gt=0)] = 0.05
    #: neighbours per voxel in the graph (and for the normals)
    knn: Annotated[int, Field(ge=3)] = 10
    #: longest edge, in voxel sizes
    max_edge: Annotated[float, Field(gt=0)] = 3.0
    #: Felzenszwalb's k: larger -> larger superpoints
    k: Annotated[float, Field(ge=0)] = 0.5
    #: weights of the feature difference and of the normal angle in an edge's weight
    feature_weight: Annotated[float, Field(ge=0)] = 1.0
    normal_weight: Annotated[float, Field(ge=0)] = 1.0
    #: components smaller than this many voxels are merged into a neighbour
    min_size: Annotated[int, Field(ge=1)] = 5

    def fingerprint(self) -> str:
        """A short stable hash of the options (the cache folder's name)."""
        text = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _voxel_groups(coords: np.ndarray, voxel_size: float) -> tuple[np.ndarray, int]:
    """(N,) voxel id of each point (in order of first appearance of the sorted keys) and the
    number of voxels."""
    keys = np.floor(coords / voxel_size).astype(np.int64)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max()) + 1 if len(inverse) else 0


def _group_mean(values: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    sums = np.zeros((n, values.shape[1]), dtype=np.float64)
    np.add.at(sums, group, values)
    counts = np.bincount(group, minlength=n).astype(np.float64)
    return sums / counts[:, None]


def _normals(centres: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """(V, 3) unit normals: the smallest principal axis of each voxel's neighbourhood."""
    nb = centres[neighbours]  # (V, k, 3)
    d = nb - nb.mean(axis=1, keepdims=True)
    cov = np.einsum("vki,vkj->vij", d, d)
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, :, 0]


class _DisjointSets:
    """Union-find with union by size; ``internal`` holds each root's largest merged weight."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)
        self.size = np.ones(n, dtype=np.int64)
        self.internal = np.zeros(n, dtype=np.float64)

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return int(root)

    def union(self, a: int, b: int, weight: float) -> None:
        if self.size[a] < self.size[b]:
            a, b = b, a
        self.parent[b] = a
        self.size[a] += self.size[b]
        self.internal[a] = max(self.internal[a], self.internal[b], weight)


def segment_graph(
    num_nodes: int, edges: np.ndarray, weights: np.ndarray, k: float, min_size: int = 1
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segmentation of a weighted graph.

    Args:
        num_nodes: V.
        edges: (E, 2) int node pairs.
        weights: (E,) float edge weights (dissimilarities).
        k: the scale parameter (threshold ``k / |C|``).
        min_size: components smaller than this are merged along their cheapest edge.
    Returns:
        (V,) int64 component ids 0..C-1, numbered in order of each component's smallest node.
    """
    order = np.argsort(weights, kind="stable")
    sets = _DisjointSets(num_nodes)
    for e in order:
        a, b = sets.find(int(edges[e, 0])), sets.find(int(edges[e, 1]))
        if a == b:
            continue
        w = float(weights[e])
        if w <= min(sets.internal[a] + k / sets.size[a], sets.internal[b] + k / sets.size[b]):
            sets.union(a, b, w)
    if min_size > 1:
        for e in order:
            a, b = sets.find(int(edges[e, 0])), sets.find(int(edges[e, 1]))
            if a != b and (sets.size[a] < min_size or sets.size[b] < min_size):
                sets.union(a, b, float(weights[e]))
    roots = np.array([sets.find(i) for i in range(num_nodes)], dtype=np.int64)
    _, first = np.unique(roots, return_index=True)
    ordered_roots = roots[np.sort(first)]
    rank = np.empty(num_nodes, dtype=np.int64)
    rank[ordered_roots] = np.arange(len(ordered_roots))
    return rank[roots]


def superpoints(
    coords: np.ndarray, feats: np.ndarray, options: SuperpointOptions | None = None
) -> np.ndarray:
    """Over-segment one scene.

    Args:
        coords: (N, 3) float point coordinates (metres).
        feats: (N, C) float features in comparable units (RGB in [0, 1], or scaled intensity).
        options: :class:`SuperpointOptions` (defaults when None).
    Returns:
        (N,) int64 superpoint id of each point, 0..S-1.
    """
    opts = options or SuperpointOptions()
    coords = np.asarray(coords, dtype=np.float64)
    feats = np.asarray(feats, dtype=np.float64).reshape(len(coords), -1)
    if len(coords) == 0:
        return np.zeros(0, dtype=np.int64)
    group, nvox = _voxel_groups(coords, opts.voxel_size)
    if nvox == 1:
        return np.zeros(len(coords), dtype=np.int64)
    centres = _group_mean(coords, group, nvox)
    vfeat = _group_mean(feats, group, nvox)
    k = min(opts.knn + 1, nvox)
    dist, nb = cKDTree(centres).query(centres, k=k)
    normals = _normals(centres, nb)
    src = np.repeat(np.arange(nvox), k - 1)
    dst = nb[:, 1:].reshape(-1)
    keep = dist[:, 1:].reshape(-1) <= opts.max_edge * opts.voxel_size
    src, dst = src[keep], dst[keep]
    pairs = np.unique(np.sort(np.stack([src, dst], axis=1), axis=1), axis=0)
    a, b = pairs[:, 0], pairs[:, 1]
    weights = opts.feature_weight * np.linalg.norm(vfeat[a] - vfeat[b], axis=1)
    weights += opts.normal_weight * (1.0 - np.abs(np.sum(normals[a] * normals[b], axis=1)))
    voxel_segment = segment_graph(nvox, pairs, weights, opts.k, opts.min_size)
    return voxel_segment[group]


def propagate_labels(superpoint: np.ndarray, index: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Spread weak labels to their superpoints.

    Args:
        superpoint: (N,) int superpoint id per point.
        index: (L,) int indices of the labelled points.
        classes: (L,) int their classes (>= 0).
    Returns:
        (N,) int64 class per point: the labelled class for every point of a superpoint whose
        labelled points all agree, -1 elsewhere (no label, or labels that disagree).
    """
    superpoint = np.asarray(superpoint, dtype=np.int64)
    out = np.full(len(superpoint), -1, dtype=np.int64)
    if len(index) == 0:
        return out
    num = int(superpoint.max()) + 1
    sp = superpoint[np.asarray(index, dtype=np.int64)]
    cls = np.asarray(classes, dtype=np.int64)
    lo = np.full(num, np.iinfo(np.int64).max)
    hi = np.full(num, -1, dtype=np.int64)
    np.minimum.at(lo, sp, cls)
    np.maximum.at(hi, sp, cls)
    agreed = np.where(lo == hi, hi, -1)
    out = agreed[superpoint]
    out[np.asarray(index, dtype=np.int64)] = cls  # a labelled point keeps its own label
    return out


def propagation_quality(propagated: np.ndarray, semantic: np.ndarray) -> dict[str, float]:
    """Precision of propagated labels against the hidden ground truth.

    Args:
        propagated: (N,) int class or -1 (from :func:`propagate_labels`).
        semantic: (N,) int ground truth or -1 (ignored).
    Returns:
        ``precision`` (share of labelled-and-scored points whose label is right), ``coverage``
        (share of scored points that got a label) and ``labelled`` (their count).
    """
    scored = semantic >= 0
    got = (propagated >= 0) & scored
    n = int(got.sum())
    correct = int((propagated[got] == semantic[got]).sum())
    return {
        "precision": correct / n if n else float("nan"),
        "coverage": n / int(scored.sum()) if scored.any() else float("nan"),
        "labelled": float(n),
    }


# ----------------------------------------------------------------------------- cache
def superpoints_dir(root: str | Path, options: SuperpointOptions) -> Path:
    """``ROOT/superpoints/<fingerprint>/`` of a processed folder: ``<scene>.npy`` (N,) int64
    per scene and ``options.json`` (the options that made them)."""
    return Path(root) / "superpoints" / options.fingerprint()


def scene_superpoints(root: str | Path, scene: str, options: SuperpointOptions) -> np.ndarray:
    """The (N,) int64 superpoints of processed scene ``scene``: read from the cache, or
    computed from the scene's coordinates and features and written there atomically."""
    folder = superpoints_dir(root, options)
    path = folder / f"{scene}.npy"
    if path.is_file():
        ids = np.load(path)
        n = int(processed.read_scene_info(root, scene)["num_points"])
        if ids.shape == (n,):
            return ids.astype(np.int64, copy=False)
    sc = processed.read_scene(root, scene)
    ids = superpoints(sc.coords, sc.feats, options)
    if not (folder / "options.json").is_file():
        atomic_write_json(folder / "options.json", options.model_dump())
    atomic_save_npy(path, ids)
    return ids


def ensure_superpoints(
    root: str | Path, scenes: Iterable[str], options: SuperpointOptions, progress: bool = True
) -> Path:
    """Over-segment every scene of ``scenes`` that has no cached superpoints yet (resumable:
    a finished scene's file is complete). Returns the cache folder."""
    names = list(scenes)
    for name in progress_bar(names, desc="superpoints", unit="scene", disable=not progress):
        scene_superpoints(root, name, options)
    return superpoints_dir(root, options)


def propagation_report(
    root: str | Path,
    scenes: Iterable[str],
    spec: str,
    options: SuperpointOptions,
    progress: bool = True,
) -> dict[str, float]:
    """How far and how well the weak labels ``spec`` of ``scenes`` spread to their superpoints,
    against the scenes' ground truth (a check for data that has it: benchmarks, the rooms).

    Returns pooled figures: ``scenes``, ``points``, ``superpoints`` (count), ``mean_size``
    (points per superpoint), ``weak`` (labelled points), ``weak_coverage`` (their share of
    the scored points), ``coverage`` and ``precision`` of the propagated labels
    (:func:`propagation_quality`), and ``conflicting`` (share of superpoints holding weak
    labels that disagree, which stay unlabelled).
    """
    totals = dict.fromkeys(("points", "scored", "superpoints", "weak", "got", "right"), 0)
    touched = conflicted = 0
    names = list(scenes)
    num_classes = len(processed.read_meta(root)["class_names"])
    for name in progress_bar(names, desc="propagation", unit="scene", disable=not progress):
        scene = processed.read_scene(root, name)
        idx, cls = processed.read_label_classes(
            root, spec, name, scene.semantic, num_classes
        )
        sp = scene_superpoints(root, name, options)
        prop = propagate_labels(sp, idx, cls)
        scored = scene.semantic >= 0
        got = (prop >= 0) & scored
        totals["points"] += len(sp)
        totals["scored"] += int(scored.sum())
        totals["superpoints"] += int(sp.max()) + 1 if len(sp) else 0
        totals["weak"] += len(idx)
        totals["got"] += int(got.sum())
        totals["right"] += int((prop[got] == scene.semantic[got]).sum())
        if len(idx):
            pairs = np.unique(np.stack([sp[idx], cls]), axis=1)  # (superpoint, class) pairs
            classes_per_sp = np.bincount(pairs[0])
            touched += int((classes_per_sp > 0).sum())
            conflicted += int((classes_per_sp > 1).sum())
    n_scored = max(totals["scored"], 1)
    return {
        "scenes": float(len(names)),
        "points": float(totals["points"]),
        "superpoints": float(totals["superpoints"]),
        "mean_size": totals["points"] / max(totals["superpoints"], 1),
        "weak": float(totals["weak"]),
        "weak_coverage": totals["weak"] / n_scored,
        "coverage": totals["got"] / n_scored,
        "precision": totals["right"] / totals["got"] if totals["got"] else float("nan"),
        "conflicting": conflicted / touched if touched else 0.0,
    }
