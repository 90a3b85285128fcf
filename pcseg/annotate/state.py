"""The annotation state behind ``pcseg annotate``: pure numpy, no GUI.

One :class:`AnnotationState` holds the user's class per point of one scene (``-1`` =
unlabelled) and every edit as an undoable step:

* :meth:`~AnnotationState.add` / :meth:`~AnnotationState.erase` label or clear given points;
* :meth:`~AnnotationState.brush` returns the points within a radius of a picked point;
* :meth:`~AnnotationState.grow_region` returns the connected region of similar points around
  a seed (to preview, then :meth:`~AnnotationState.add`);
* :meth:`~AnnotationState.undo` / :meth:`~AnnotationState.redo`;
* :meth:`~AnnotationState.counts`, :attr:`~AnnotationState.labelled_fraction`;
* :meth:`~AnnotationState.save` / :meth:`~AnnotationState.load`, with autosave after every
  change when the state has a ``path``.

Region growing: the region is the set of points reachable from the seed through steps of at
most ``radius`` metres (neighbours of neighbours, a radius graph) whose colour is within
``color_tol`` (Euclidean distance of RGB in [0, 1]) of the SEED's colour and whose normal is
within ``normal_deg`` degrees of the seed's normal (unoriented; normals by PCA over the 12
nearest neighbours). Comparing to the seed, not to the previous point, keeps the region from
drifting across a slow gradient. At most ``max_points`` points are returned.

Saved file: ``labels/<spec>/<scene>.npy`` of the processed folder, an (M, 2) int64 array of
rows [point index, class] sorted by index (see :func:`pcseg.data.processed.read_label_classes`),
written atomically so a kill leaves either the old or the new file.

:func:`pick_point` intersects a click ray with the points: the front-most point whose distance
to the ray is within a tolerance that grows linearly with depth (a fixed number of pixels).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from pcseg.data.processed import load_label_file, write_label_file


class AnnotationError(ValueError):
    """Bad input to the annotation tool (the message names the file and what was expected)."""


@dataclass
class ClassList:
    """The classes the user can pick: names (index = position) and (K, 3) uint8 colours."""

    names: list[str]
    colors: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.names)

    def check(self, cls: int) -> int:
        """``cls`` as an int; AnnotationError when it is not a class of the list."""
        try:
            c = int(cls)
        except (TypeError, ValueError):
            raise AnnotationError(f"class {cls!r} is not an integer") from None
        if not 0 <= c < len(self.names):
            where = f" of {self.source}" if self.source else ""
            raise AnnotationError(
                f"class {c} is outside the class list{where}: expected 0.."
                f"{len(self.names) - 1} ({', '.join(self.names)})"
            )
        return c


def load_classes(path: str | os.PathLike) -> ClassList:
    """Read the class list of CLASSES.yaml (:func:`pcseg.readers.custom.load_class_names`:
    ``names: [..]``, class index = position, optional ``colors: {name: [r, g, b]}`` 0-255;
    other keys are not looked at). Missing colours come from a generic palette."""
    from pcseg.readers.custom import ClassesError, load_class_names
    from pcseg.viz.palettes import generic_palette

    try:
        spec = load_class_names(Path(path))
    except ClassesError as e:
        raise AnnotationError(str(e)) from None
    colors = np.asarray(generic_palette(len(spec.names)), dtype=np.uint8).copy()
    for i, n in enumerate(spec.names):
        if n in (spec.colors or {}):
            colors[i] = np.asarray((spec.colors or {})[n], dtype=np.uint8)
    return ClassList(list(spec.names), colors, str(path))


def estimate_normals(
    coords: np.ndarray, k: int = 12, tree: cKDTree | None = None, at: np.ndarray | None = None
) -> np.ndarray:
    """(len(at), 3) float32 unit normals (PCA over each point's ``k`` nearest neighbours) of
    the points ``at`` (default: all)."""
    coords = np.asarray(coords, dtype=np.float64)
    query = coords if at is None else coords[np.asarray(at, dtype=np.int64)]
    n = len(query)
    if len(coords) < 3:
        return np.tile(np.array([0.0, 0.0, 1.0], dtype=np.float32), (n, 1))
    tree = tree if tree is not None else cKDTree(coords)
    _, nb = tree.query(query, k=min(k, len(coords)))
    out = np.empty((n, 3), dtype=np.float32)
    for s in range(0, n, 65536):  # bounded memory
        p = coords[nb[s : s + 65536]]
        p = p - p.mean(axis=1, keepdims=True)
        cov = np.einsum("nki,nkj->nij", p, p)
        _, vec = np.linalg.eigh(cov)
        out[s : s + 65536] = vec[:, :, 0]
    return out


def pick_point(
    coords: np.ndarray,
    origin: Sequence[float],
    direction: Sequence[float],
    tol_per_metre: float,
    candidates: np.ndarray | None = None,
) -> int | None:
    """Index of the point a click ray hits, or None.

    A point is hit when its distance to the ray is at most ``tol_per_metre * depth`` (depth
    along the ray; ``tol_per_metre`` = pixel tolerance x view angle per pixel). Among the hits
    the front-most wins, taken as the nearest in depth within one tolerance of the first hit
    so that a point of the visible surface wins over one slightly nearer the ray behind it.
    ``candidates`` (indices) restricts the search (e.g. to visible points).
    """
    o = np.asarray(origin, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    norm = float(np.linalg.norm(d))
    if norm == 0 or not np.isfinite(norm):
        return None
    d = d / norm
    pts = np.asarray(coords)
    idx = np.arange(len(pts)) if candidates is None else np.asarray(candidates)
    if candidates is not None:
        pts = pts[idx]
    rel = pts.astype(np.float32, copy=False) - o.astype(np.float32)
    t = rel @ d.astype(np.float32)
    perp2 = np.einsum("ij,ij->i", rel, rel) - t * t  # squared distance to the ray
    hit = np.flatnonzero((t > 0) & (perp2 <= (tol_per_metre * t) ** 2))
    if hit.size == 0:
        return None
    # exact (float64) distances for the few hits
    rh = pts[hit].astype(np.float64) - o
    th = rh @ d
    ph = np.linalg.norm(rh - th[:, None] * d, axis=1)
    hi = idx[hit]
    front = th.min()
    near = th <= front + 2.0 * tol_per_metre * front
    j = np.argmin(np.where(near, ph, np.inf))
    return int(hi[j])


@dataclass
class _Step:
    what: str
    idx: np.ndarray
    old: np.ndarray
    new: np.ndarray


@dataclass
class AnnotationState:
    """The user's labels of one scene and the edit history.

    Args:
        coords: (N, 3) point coordinates (metres).
        classes: the class list.
        feats: (N, C) features; RGB in [0, 1] (C >= 3) drive region growing's colour test.
        path: the label file autosaved after every change (None: no autosave).
        autosave: save to ``path`` after every change.
    """

    coords: np.ndarray
    classes: ClassList
    feats: np.ndarray | None = None
    path: Path | None = None
    autosave: bool = True
    labels: np.ndarray = field(init=False)
    _undo: list[_Step] = field(init=False, default_factory=list)
    _redo: list[_Step] = field(init=False, default_factory=list)
    _tree: cKDTree | None = field(init=False, default=None)
    _normals: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.coords = np.asarray(self.coords, dtype=np.float32)
        if self.coords.ndim != 2 or self.coords.shape[1] != 3:
            raise AnnotationError(f"coords must be (N, 3), got {self.coords.shape}")
        if self.feats is not None:
            self.feats = np.asarray(self.feats, dtype=np.float32)
            if len(self.feats) != len(self.coords):
                raise AnnotationError(
                    f"feats has {len(self.feats)} rows for {len(self.coords)} points"
                )
        self.path = None if self.path is None else Path(self.path)
        self.labels = np.full(len(self.coords), -1, dtype=np.int64)

    # ------------------------------------------------------------------ basics
    @property
    def num_points(self) -> int:
        return len(self.coords)

    @property
    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.coords)
        return self._tree

    @property
    def normals(self) -> np.ndarray:
        """(N, 3) unit normals of every point (computed once; see :meth:`normals_of`)."""
        return self.normals_of(np.arange(self.num_points))

    def normals_of(self, idx: np.ndarray) -> np.ndarray:
        """Normals of points ``idx``, computed on first use and cached (region growing needs
        them only around the seed, so a large scan never pays for all of them)."""
        if self._normals is None:
            self._normals = np.full((self.num_points, 3), np.nan, dtype=np.float32)
        idx = np.asarray(idx, dtype=np.int64)
        todo = idx[np.isnan(self._normals[idx, 0])]
        if todo.size:
            self._normals[todo] = estimate_normals(self.coords, tree=self.tree, at=todo)
        return self._normals[idx]

    def _check_idx(self, idx: Any) -> np.ndarray:
        arr = np.unique(np.asarray(idx, dtype=np.int64).reshape(-1))
        if arr.size and (arr[0] < 0 or arr[-1] >= self.num_points):
            raise AnnotationError(
                f"point index {int(arr[0] if arr[0] < 0 else arr[-1])} out of "
                f"range for a scene of {self.num_points} points"
            )
        return arr

    def _apply(self, what: str, idx: np.ndarray, new: np.ndarray) -> int:
        changed = self.labels[idx] != new
        idx, new = idx[changed], new[changed]
        if idx.size == 0:
            return 0
        self._undo.append(_Step(what, idx, self.labels[idx].copy(), new.copy()))
        self._redo.clear()
        self.labels[idx] = new
        self._changed()
        return int(idx.size)

    def _changed(self) -> None:
        if self.autosave and self.path is not None:
            self.save()

    # ------------------------------------------------------------------ edits
    def add(self, idx: Any, cls: int) -> int:
        """Label points ``idx`` with class ``cls``; returns how many changed (one undo step)."""
        c = self.classes.check(cls)
        arr = self._check_idx(idx)
        return self._apply(f"add {self.classes.names[c]}", arr, np.full(arr.size, c, np.int64))

    def erase(self, idx: Any) -> int:
        """Clear the labels of points ``idx``; returns how many changed (one undo step)."""
        arr = self._check_idx(idx)
        return self._apply("erase", arr, np.full(arr.size, -1, np.int64))

    def brush(self, center: int, radius: float) -> np.ndarray:
        """Sorted indices of the points within ``radius`` metres of point ``center``."""
        c = int(self._check_idx([center])[0])
        if radius <= 0:
            return np.array([c], dtype=np.int64)
        return np.sort(
            np.asarray(self.tree.query_ball_point(self.coords[c], float(radius)), dtype=np.int64)
        )

    def grow_region(
        self,
        seed: int,
        radius: float = 0.05,
        color_tol: float = 0.15,
        normal_deg: float | None = 30.0,
        max_points: int = 200_000,
    ) -> np.ndarray:
        """Sorted indices of the connected region of points similar to ``seed`` (module doc)."""
        s = int(self._check_idx([seed])[0])
        ok = np.ones(self.num_points, dtype=bool)
        if self.feats is not None and self.feats.shape[1] >= 3 and color_tol is not None:
            rgb = self.feats[:, :3]
            ok &= np.linalg.norm(rgb - rgb[s], axis=1) <= color_tol
        ok[s] = True
        cos_min = None if normal_deg is None else math.cos(math.radians(normal_deg))
        n_seed = None if cos_min is None else self.normals_of(np.array([s]))[0]
        seen = np.zeros(self.num_points, dtype=bool)
        seen[s] = True
        frontier = np.array([s], dtype=np.int64)
        count = 1
        while frontier.size and count < max_points:
            nbrs = self.tree.query_ball_point(self.coords[frontier], float(radius))
            cand = np.unique(np.concatenate([np.asarray(n, dtype=np.int64) for n in nbrs]))
            cand = cand[ok[cand] & ~seen[cand]]
            if cos_min is not None and cand.size:
                cand = cand[np.abs(self.normals_of(cand) @ n_seed) >= cos_min]
            cand = cand[: max_points - count]
            seen[cand] = True
            count += cand.size
            frontier = cand
        return np.flatnonzero(seen).astype(np.int64)

    def undo(self) -> bool:
        """Revert the last edit; False when there is none."""
        if not self._undo:
            return False
        step = self._undo.pop()
        self.labels[step.idx] = step.old
        self._redo.append(step)
        self._changed()
        return True

    def redo(self) -> bool:
        """Re-apply the last undone edit; False when there is none."""
        if not self._redo:
            return False
        step = self._redo.pop()
        self.labels[step.idx] = step.new
        self._undo.append(step)
        self._changed()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # ------------------------------------------------------------------ summaries
    def counts(self) -> np.ndarray:
        """(K,) int64 labelled points per class."""
        lab = self.labels[self.labels >= 0]
        return np.bincount(lab, minlength=len(self.classes)).astype(np.int64)

    @property
    def num_labelled(self) -> int:
        return int((self.labels >= 0).sum())

    @property
    def labelled_fraction(self) -> float:
        return self.num_labelled / self.num_points if self.num_points else 0.0

    def summary(self) -> str:
        """Per-class counts and the labelled fraction, one line per class."""
        head = (
            f"{self.num_labelled:,d} / {self.num_points:,d} points labelled "
            f"({100.0 * self.labelled_fraction:.3f}%)"
        )
        lines = [head]
        for i, (n, c) in enumerate(zip(self.classes.names, self.counts())):
            lines.append(f"{i} {n}: {int(c):,d}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ files
    def to_array(self) -> np.ndarray:
        """(M, 2) int64 rows [point index, class] of the labelled points, sorted by index."""
        idx = np.flatnonzero(self.labels >= 0).astype(np.int64)
        return np.stack([idx, self.labels[idx]], axis=1) if idx.size else np.zeros((0, 2), np.int64)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write :meth:`to_array` atomically to ``path`` (default: the state's path).

        Written by :func:`pcseg.data.processed.write_label_file`, the writer ``pcseg prepare``
        uses too, so training reads it with :func:`~pcseg.data.processed.read_label_classes`.
        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise AnnotationError("no label file to save to (give a path)")
        try:
            write_label_file(target, self.to_array(), self.num_points, len(self.classes))
        except OSError as e:
            raise AnnotationError(
                f"cannot write the label file {target}: {e.strerror or e} "
                f"(expected a writable folder {target.parent})"
            ) from None
        except ValueError as e:  # labels set outside add / erase (e.g. a class off the list)
            raise AnnotationError(f"refusing to write the label file {target}: {e}") from None
        return target

    def load(
        self, path: str | os.PathLike | None = None, semantic: np.ndarray | None = None
    ) -> int:
        """Replace the labels with those of a label file; returns the number of labelled points.

        The file is either (M, 2) [index, class] rows or (M,) indices whose class is
        ``semantic`` (the ground truth; points with no ground truth stay unlabelled). The
        history is cleared. AnnotationError names the file when it does not fit this scene.
        """
        src = Path(path) if path is not None else self.path
        if src is None:
            raise AnnotationError("no label file to load (give a path)")
        labels = read_label_file(src, self.num_points, len(self.classes), semantic)
        self.labels = labels
        self._undo.clear()
        self._redo.clear()
        return self.num_labelled


def read_label_file(
    path: str | os.PathLike, num_points: int, num_classes: int, semantic: np.ndarray | None = None
) -> np.ndarray:
    """(N,) int64 per-point labels (-1 = none) from a weak-label file of either form.

    Read by :func:`pcseg.data.processed.load_label_file`; AnnotationError names the file when
    it is missing, corrupt or does not fit ``num_points`` / ``num_classes``.
    """
    try:
        arr = load_label_file(Path(path), num_points, num_classes)
    except ValueError as e:
        raise AnnotationError(str(e)) from None
    labels = np.full(num_points, -1, dtype=np.int64)
    if arr.ndim == 2:
        labels[arr[:, 0]] = arr[:, 1]
    elif semantic is not None:
        sem = np.asarray(semantic, dtype=np.int64)
        if sem.shape != (num_points,):
            raise AnnotationError(f"ground truth has shape {sem.shape} for {num_points} points")
        labels[arr] = np.where(sem[arr] < num_classes, sem[arr], -1)
    else:
        raise AnnotationError(
            f"label file {path} holds point indices only (M,), whose class is "
            f"the ground truth, and none was given"
        )
    return labels
