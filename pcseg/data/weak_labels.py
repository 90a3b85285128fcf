"""Weak-label protocols: which original points of a scene keep their label.

Spec grammar (``parse_spec``; ``%`` may also be written ``pct``):

    ``R%``       ERDA stratified: for every class k present, ``max(int(n_k * R/100), 1)``
                 random points of class k (``1%``, ``0.1%``, ``0.01%``).
    ``sqnR%``    SQN uniform: ``max(int(n * R/100), 1)`` random points among all n
                 labelled points, not stratified. SQN draws R% of all points and keeps
                 the annotated ones; counting R% of the annotated points instead is the
                 same on S3DIS (every point annotated) and its expected value elsewhere.
    ``Npt``      N random points per class present (all of them if fewer), e.g. ``1pt``.
    ``Npps``     N random labelled points per scene (all if fewer), e.g. ``20pps``, ``200pps``
                 (the ScanNet limited-annotation style, drawn by us).
    ``click``    one random point per instance (points with instance >= 0 and semantic >= 0).
                 On SemanticKITTI only "thing" classes carry instance ids, so the
                 stuff classes (road, building, vegetation, ...) get no click: use
                 ``1pt`` there for one label per class present.
    ``full``     every labelled point (semantic >= 0).
    ``given``    the points whose file already carries a label (semantic >= 0), taken as
                 they are, no sampling: the labels a user made in CloudCompare or another
                 tool on part of a scan (``pcseg prepare custom``). The same points as
                 ``full``; the name says they are a partial annotation, not ground truth.
    ``import:NAME``  indices imported from a file (e.g. the official ScanNet
                 limited-annotation ``points200``); see :func:`import_indices`.

Sampling level: by default callers (``pcseg prepare``) pass the dataset's voxel
size, and sampling happens on the *voxelized* cloud, as in ERDA which samples on the
sub-sampled cloud: the labelled points of the scene are grid-sampled at ``voxel_size``
with one random representative point per voxel, the counts ``n_k`` / ``n`` are voxel
counts, and only representatives can be drawn, so at most one point per voxel is
labelled. ``voxel_size=None`` or 0 samples on the raw points. ``full`` always returns
every labelled raw point. For ``click`` on voxels, an instance none of whose voxels is
represented by one of its own points gets no click (rare; tiny objects interleaved
with others).

Reproducibility: every draw uses ``np.random.default_rng([seed, crc32(scene.name),
crc32(spec name)])`` (voxel representatives: ``[seed, crc32(scene.name), 0]``), so the
result depends only on (seed, scene, spec, voxel size), never on processing order or
worker count. The returned indices are sorted unique int64 indices into the scene's
ORIGINAL points.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.data.scene import Scene
from pcseg.data.voxelize import voxelize

GRAMMAR = (
    "label spec grammar: 'R%' (ERDA stratified ratio, e.g. 1%, 0.1%, 0.01%), "
    "'sqnR%' (SQN uniform ratio, e.g. sqn1%), 'Npt' (N points per class per scene, e.g. 1pt), "
    "'Npps' (N points per scene, e.g. 20pps), 'click' (one point per instance), "
    "'full' (every labelled point), 'given' (the labels a file carries, no sampling), "
    "'import:NAME' (indices from a file); "
    "'%' may be written 'pct'"
)

_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_RATIO_RE = re.compile(rf"^(sqn)?{_NUM}(%|pct)$")
_PT_RE = re.compile(r"^(\d+)(pt|pps)$")
_IMPORT_RE = re.compile(r"^import[:_]([A-Za-z0-9][A-Za-z0-9_.\-]*)$")


class SpecError(ValueError):
    """A label spec that does not parse, or a limited-annotation file that cannot be read
    (the message names the spec or the file): a user's mistake."""


@dataclass(frozen=True)
class LabelSpec:
    """A parsed label spec.

    Attributes:
        kind: 'ratio' | 'sqn' | 'npt' | 'pps' | 'click' | 'full' | 'given' | 'import'.
        ratio: fraction in (0, 1] for 'ratio' / 'sqn' (``1%`` -> 0.01), else 0.
        count: N for 'npt' / 'pps', else 0.
        source: NAME for 'import', else ''.
    """

    kind: str
    ratio: float = 0.0
    count: int = 0
    source: str = ""

    @property
    def name(self) -> str:
        """Canonical spec string, e.g. ``'1%'``, ``'sqn0.1%'``, ``'1pt'``, ``'import:points20'``."""
        if self.kind in ("ratio", "sqn"):
            pct = f"{self.ratio * 100:.10g}"
            return ("sqn" if self.kind == "sqn" else "") + pct + "%"
        if self.kind == "npt":
            return f"{self.count}pt"
        if self.kind == "pps":
            return f"{self.count}pps"
        if self.kind == "import":
            return f"import:{self.source}"
        return self.kind

    @property
    def dirname(self) -> str:
        """File-safe folder name: ``1%`` -> ``1pct``, ``import:x`` -> ``import_x``."""
        return self.name.replace("%", "pct").replace(":", "_")

    def __str__(self) -> str:
        return self.name


def parse_spec(spec: str | LabelSpec) -> LabelSpec:
    """Parse a spec string (see module docstring) into a :class:`LabelSpec`.

    Raises:
        ValueError: unknown spec, with the grammar in the message.
    """
    if isinstance(spec, LabelSpec):
        return spec
    if not isinstance(spec, str):
        raise SpecError(f"label spec must be a string, got {type(spec).__name__}; {GRAMMAR}")
    s = spec.strip()
    low = s.lower()
    if low in ("full", "click", "given"):
        return LabelSpec(kind=low)
    m = _RATIO_RE.match(low)
    if m:
        pct = float(m.group(2))
        if not 0 < pct <= 100:
            raise SpecError(f"label spec {spec!r}: percentage must be in (0, 100]; {GRAMMAR}")
        return LabelSpec(kind="sqn" if m.group(1) else "ratio", ratio=pct / 100.0)
    m = _PT_RE.match(low)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise SpecError(f"label spec {spec!r}: N must be >= 1; {GRAMMAR}")
        return LabelSpec(kind="npt" if m.group(2) == "pt" else "pps", count=n)
    m = _IMPORT_RE.match(s)
    if m:
        return LabelSpec(kind="import", source=m.group(1))
    raise SpecError(f"unknown label spec {spec!r}; {GRAMMAR}")


def spec_dirname(spec: str | LabelSpec) -> str:
    """File-safe folder name of a spec: ``1%`` -> ``1pct``, ``0.1%`` -> ``0.1pct``,
    ``sqn1%`` -> ``sqn1pct``, ``1pt`` -> ``1pt``, ``import:points20`` -> ``import_points20``."""
    return parse_spec(spec).dirname


def _crc(s: str) -> int:
    return zlib.crc32(s.encode("utf-8")) & 0xFFFFFFFF


def scene_rng(seed: int, scene_name: str, salt: str | int) -> np.random.Generator:
    """Generator seeded from (seed, scene name, salt) only: independent of order / workers."""
    salt_int = salt if isinstance(salt, int) else _crc(salt)
    return np.random.default_rng([int(seed), _crc(scene_name), salt_int])


def candidate_points(scene: Scene, seed: int, voxel_size: float | None) -> np.ndarray:
    """Indices (sorted int64) of the points a spec may draw from.

    Labelled points (semantic >= 0); with ``voxel_size`` > 0 only one random
    representative per voxel of the labelled points (seeded by (seed, scene)).
    """
    labelled = np.flatnonzero(np.asarray(scene.semantic) >= 0).astype(np.int64)
    if not voxel_size or len(labelled) == 0:
        return labelled
    res = voxelize(
        np.asarray(scene.coords)[labelled], float(voxel_size), mode="train",
        rng=scene_rng(seed, scene.name, 0),
    )
    return np.sort(labelled[res.point_index])


def _choose(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    if k >= len(pool):
        return pool
    return rng.choice(pool, size=k, replace=False)


def sample_weak_labels(
    scene: Scene, spec: str | LabelSpec, seed: int, voxel_size: float | None = None,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """Draw the weakly labelled points of ``scene`` under ``spec``.

    Args:
        scene: the scene (semantic (N,) int64 with -1 = unlabelled; instance for 'click').
        spec: a spec string or :class:`LabelSpec` (not 'import:', use :func:`import_indices`).
        seed: global seed; the draw is seeded by (seed, scene.name, spec).
        voxel_size: metres; sample on the voxelized labelled cloud (one random point per
            voxel, counts are voxel counts, as ERDA). None or 0 = raw points.
            ``pcseg prepare`` passes the dataset's voxel size by default.
        candidates: optional precomputed ``candidate_points(scene, seed, voxel_size)``
            (saves re-voxelizing when drawing several specs for one scene).

    Returns:
        (L,) int64 sorted unique indices into the scene's original points.
    """
    sp = parse_spec(spec)
    semantic = np.asarray(scene.semantic).astype(np.int64)
    if sp.kind == "import":
        raise ValueError(
            f"label spec {sp.name!r} is imported from a file, not sampled; use import_indices()"
        )
    if sp.kind in ("full", "given"):
        return np.flatnonzero(semantic >= 0).astype(np.int64)
    cand = candidate_points(scene, seed, voxel_size) if candidates is None else np.asarray(candidates)
    if len(cand) == 0:
        return np.zeros(0, dtype=np.int64)
    rng = scene_rng(seed, scene.name, sp.name)
    cls = semantic[cand]
    chosen: list[np.ndarray] = []
    if sp.kind in ("ratio", "npt"):
        for k in np.unique(cls):
            pool = cand[cls == k]
            if sp.kind == "ratio":
                m = max(int(len(pool) * sp.ratio), 1)
            else:
                m = sp.count
            chosen.append(_choose(rng, pool, m))
    elif sp.kind == "sqn":
        chosen.append(_choose(rng, cand, max(int(len(cand) * sp.ratio), 1)))
    elif sp.kind == "pps":
        chosen.append(_choose(rng, cand, sp.count))
    elif sp.kind == "click":
        inst = np.asarray(scene.instance).astype(np.int64)[cand]
        ok = inst >= 0
        pool_all, inst_all = cand[ok], inst[ok]
        for i in np.unique(inst_all):
            chosen.append(_choose(rng, pool_all[inst_all == i], 1))
    else:  # pragma: no cover - parse_spec only returns the kinds above
        raise ValueError(f"unhandled label spec kind {sp.kind!r}")
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(chosen)).astype(np.int64)


def import_indices(
    mapping: Mapping[str, Any],
    num_points: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Validate imported labelled-point indices (e.g. ScanNet limited annotations).

    Args:
        mapping: {scene name: 1-D array-like of point indices} (numpy, list or torch tensor).
        num_points: optional {scene name: N}; indices must then lie in [0, N).

    Returns:
        {scene name: (L,) int64 sorted unique indices} (duplicates dropped).

    Raises:
        ValueError: not 1-D, non-integer, negative or out-of-range indices (scene named).
    """
    out: dict[str, np.ndarray] = {}
    for name, idx in mapping.items():
        if hasattr(idx, "detach"):  # torch tensor
            idx = idx.detach().cpu().numpy()
        arr = np.asarray(idx)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"imported labels for scene {name!r}: expected a 1-D integer array of "
                             f"indices, got shape {arr.shape} dtype {arr.dtype}")
        arr = np.unique(arr.astype(np.int64))
        if arr.size and arr[0] < 0:
            raise ValueError(f"imported labels for scene {name!r}: negative index {int(arr[0])}")
        if num_points is not None and name in num_points and arr.size and arr[-1] >= num_points[name]:
            raise ValueError(
                f"imported labels for scene {name!r}: index {int(arr[-1])} out of range "
                f"for {num_points[name]} points"
            )
        out[str(name)] = arr
    return out


def _torch_load(path: Path, trusted: bool) -> Any:
    """torch.load with only numpy arrays / dtypes allowed unless ``trusted`` (full unpickler)."""
    import torch

    if trusted:
        return torch.load(path, map_location="cpu", weights_only=False)
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    safe: list[Any] = [np.ndarray, np.dtype, core.multiarray._reconstruct, bytes]
    safe += [type(np.dtype(t)) for t in ("int64", "int32", "int16", "uint64", "uint32", "uint16",
                                         "float64", "float32", "bool")]
    with torch.serialization.safe_globals(safe):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_index_mapping(path: str | Path, trusted: bool = False) -> Mapping[str, Any]:
    """Read an index file into its raw {scene: indices} mapping (not validated).

    ``.pth``/``.pt``/no suffix: ``torch.load`` (the official ScanNet files; only numpy arrays
    and tensors are unpickled unless ``trusted``), ``.json`` ({scene: [indices]}), ``.npz``
    (one array per scene). Raises ValueError naming the file when it cannot be read or
    does not hold a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"limited-annotation file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            import json

            obj = json.loads(path.read_text())
        elif suffix == ".npz":
            with np.load(path) as z:
                obj = {k: z[k] for k in z.files}
        else:
            obj = _torch_load(path, trusted)
    except Exception as e:
        hint = "" if trusted else " (a file you trust may need a full pickle load: trusted=True / --trust-pickle)"
        raise SpecError(f"cannot read limited-annotation file {path}: {e}{hint}") from e
    if not isinstance(obj, Mapping):
        raise SpecError(
            f"limited-annotation file {path}: expected a mapping scene -> indices, got {type(obj).__name__}"
        )
    return obj


def load_limited_annotation(path: str | Path, num_points: Mapping[str, int] | None = None,
                            trusted: bool = False) -> dict[str, np.ndarray]:
    """Read and validate an index file (:func:`read_index_mapping` + :func:`import_indices`).

    Returns {scene: (L,) int64 sorted unique indices}; errors name the file and the scene.
    """
    obj = read_index_mapping(path, trusted)
    try:
        return import_indices(obj, num_points)
    except ValueError as e:
        raise SpecError(f"limited-annotation file {path}: {e}") from e
