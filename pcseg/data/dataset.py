"""Training / evaluation data over a processed folder (docs/ARCHITECTURE.md sections 2 and 4).

One sample = one scene:

* ``mode='train'``: load the scene, augment (``transforms``), voxelize in train mode
  keeping the weakly labelled points (a voxel holding one is represented by it), then,
  when more than ``max_voxels`` voxels remain, keep the ``max_voxels`` voxels nearest
  to a centre voxel. The centre is a random weakly labelled voxel when there is one
  (so every crop holds at least one labelled voxel), else a random voxel.
* ``mode='val'`` / ``'test'``: optional transforms (e.g. for test-time augmentation),
  deterministic test-mode voxelization (first point per voxel; voxel label = majority
  vote), no crop, plus the inverse map and the labels of the original points.

Sample dict (numpy): ``coords`` (M, 3) int32 voxel indices, ``feats`` (M, C) float32,
``labels`` (M,) int64 full ground truth, ``weak_labels`` (M,) int64 (the weak label where
the voxel holds a weakly labelled point, -1 elsewhere: the ground truth for an (L,) index
label file, the file's class column for an (L, 2) [index, class] file, see
:func:`pcseg.data.processed.read_label_classes`), ``name``; val/test also
``inverse`` (N,) int64 and ``point_labels`` (N,) int64. With ``superpoints`` (train mode)
also ``propagated_labels`` (M,) int64: the weak labels spread to their superpoints
(:mod:`pcseg.data.superpoints`), -1 where none and where the voxel has its own weak label.

Input features (``feature_keys``, concatenated in the given order):
    ``'rgb'``: RGB of the voxel's representative point minus 0.5 (range [-0.5, 0.5]);
    ``'remission'``: LiDAR remission as stored (1 channel);
    ``'features'``: every stored channel as it is (scenes of ``feat_kind`` 'features':
        several normalised channels of one's own scans, ``pcseg prepare custom``);
    ``'xyz'``: representative point coordinates minus their mean over the sample (metres);
    ``'xyz_norm'``: representative point coordinates scaled into [0, 1] by the sample's
        bounding box (largest extent; aspect ratio kept).
Default: ``('rgb',)`` for RGB scenes, ``('remission',)`` for LiDAR scenes, ``('features',)``
for 'features' scenes.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcseg.data import processed
from pcseg.data.scene import Scene
from pcseg.data.transforms import Transform
from pcseg.data.voxelize import majority_vote, voxelize
from pcseg.data.superpoints import SuperpointOptions, propagate_labels, scene_superpoints
from pcseg.data.weak_labels import parse_spec

FEATURE_KEYS = ("rgb", "remission", "features", "xyz", "xyz_norm")
#: channels of each feature key ('features': as many as the data hold)
FEATURE_WIDTHS = {"rgb": 3, "remission": 1, "xyz": 3, "xyz_norm": 3}
_MODES = ("train", "val", "test")


class SegmentationDataset(torch.utils.data.Dataset):
    """Scenes of one split of a processed folder, as voxelized samples.

    Args:
        root: processed folder (``pcseg prepare --out``).
        split: split name in meta.json (e.g. 'train', 'val', 'Area_5'), 'all', or a list.
        label_spec: weak-label spec whose indices (``labels/<spec>/``) define
            ``weak_labels``; 'full' = every labelled point (its file if present, else
            computed); None = no weak labels (``weak_labels`` all -1).
        voxel_size: metres; None = meta.json's voxel size.
        mode: 'train' | 'val' | 'test'.
        transforms: ``t(data, rng) -> data`` applied to the points before voxelization.
        max_voxels: crop limit in train mode (None = no crop).
        loop: the split is repeated ``loop`` times per epoch (train mode only).
        seed: seeds the sample RNG (per worker via :func:`worker_init_fn`).
        feature_keys: see module docstring; None = default for the data's feat kind.
        cache: keep loaded scenes in memory (per worker process).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[str],
        label_spec: str | None = "full",
        voxel_size: float | None = None,
        mode: str = "train",
        transforms: Transform | None = None,
        max_voxels: int | None = None,
        loop: int = 1,
        seed: int = 0,
        feature_keys: Sequence[str] | None = None,
        cache: bool = False,
        superpoints: SuperpointOptions | None = None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"SegmentationDataset: mode must be one of {_MODES}, got {mode!r}")
        self.root = Path(root)
        self.meta = processed.read_meta(self.root)
        self.split = split
        self.scene_names = processed.split_scenes(self.root, split)
        if not self.scene_names:
            raise ValueError(f"split {split!r} of {self.root} has no scenes")
        self.class_names = list(self.meta["class_names"])
        self.num_classes = len(self.class_names)
        self.label_spec = None if label_spec is None else parse_spec(label_spec).name
        self.voxel_size = float(voxel_size if voxel_size is not None else self.meta["voxel_size"])
        if self.voxel_size <= 0:
            raise ValueError(f"SegmentationDataset: voxel_size must be > 0, got {self.voxel_size}")
        self.mode = mode
        self.transforms = transforms
        if max_voxels is not None and int(max_voxels) < 1:
            raise ValueError(f"SegmentationDataset: max_voxels must be >= 1, got {max_voxels}")
        self.max_voxels = None if max_voxels is None else int(max_voxels)
        if int(loop) < 1:
            raise ValueError(f"SegmentationDataset: loop must be >= 1, got {loop}")
        self.loop = int(loop) if mode == "train" else 1
        self.seed = int(seed)
        info = processed.read_scene_info(self.root, self.scene_names[0])
        self.feat_kind = str(info["feat_kind"])
        self.feat_channels = int(info.get("feat_channels", 3 if self.feat_kind == "rgb" else 1))
        if feature_keys is None:
            feature_keys = (self.feat_kind,)
        bad = [k for k in feature_keys if k not in FEATURE_KEYS]
        if bad:
            raise ValueError(f"SegmentationDataset: unknown feature keys {bad}; known {FEATURE_KEYS}")
        if "rgb" in feature_keys and self.feat_kind != "rgb":
            raise ValueError(f"feature key 'rgb' but {self.root} holds {self.feat_kind} features")
        if "remission" in feature_keys and self.feat_kind != "remission":
            raise ValueError(f"feature key 'remission' but {self.root} holds {self.feat_kind} features")
        if "features" in feature_keys and self.feat_kind != "features":
            raise ValueError(f"feature key 'features' but {self.root} holds {self.feat_kind} features")
        self.feature_keys = tuple(feature_keys)
        self.cache = bool(cache)
        self.superpoints = superpoints
        self._cache: dict[str, tuple[Scene, np.ndarray, np.ndarray]] = {}
        self._propagated: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng([self.seed, 0])

    # ------------------------------------------------------------------ sizes
    @property
    def in_channels(self) -> int:
        """Number of input feature channels C."""
        return sum(FEATURE_WIDTHS.get(k, self.feat_channels) for k in self.feature_keys)

    def __len__(self) -> int:
        return len(self.scene_names) * self.loop

    # ------------------------------------------------------------------ seeding
    def reseed(self, base_seed: int) -> None:
        """Re-seed this copy's RNG from (seed, base_seed); called per worker by :func:`worker_init_fn`."""
        self._rng = np.random.default_rng([self.seed, int(base_seed) % (1 << 64)])

    # ------------------------------------------------------------------ loading
    def load(self, name: str) -> tuple[Scene, np.ndarray]:
        """Scene ``name`` and its weak-label indices (sorted int64 into the original points)."""
        scene, weak, _ = self.load_weak(name)
        return scene, weak

    def load_weak(self, name: str) -> tuple[Scene, np.ndarray, np.ndarray]:
        """Scene ``name``, its weak-label indices and their classes (both (L,) int64)."""
        if name in self._cache:
            return self._cache[name]
        scene = processed.read_scene(self.root, name)
        if self.label_spec is None:
            weak = np.zeros(0, dtype=np.int64)
            cls = weak
        elif self.label_spec == "full" and not processed.labels_path(self.root, "full", name).is_file():
            weak = np.flatnonzero(scene.semantic >= 0).astype(np.int64)
            cls = scene.semantic[weak]
        else:
            weak, cls = processed.read_label_classes(self.root, self.label_spec, name,
                                                     scene.semantic, self.num_classes)
        if self.cache:
            self._cache[name] = (scene, weak, cls)
        return scene, weak, cls

    def propagated_labels(self, name: str) -> np.ndarray:
        """(N,) int64 weak labels of scene ``name`` spread to their superpoints
        (:func:`pcseg.data.superpoints.propagate_labels`; -1 where none); needs
        ``superpoints``. Cached per scene (the labels and superpoints do not change)."""
        if self.superpoints is None:
            raise ValueError("propagated_labels: the dataset was built without superpoints")
        if name not in self._propagated:
            _, weak, cls = self.load_weak(name)
            sp = scene_superpoints(self.root, name, self.superpoints)
            self._propagated[name] = propagate_labels(sp, weak, cls)
        return self._propagated[name]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get_sample(index, self._rng)

    def get_sample(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """Sample ``index`` drawn with ``rng`` (deterministic for a given generator state)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        name = self.scene_names[index % len(self.scene_names)]
        scene, weak, weak_cls = self.load_weak(name)
        data: dict[str, Any] = {"coords": scene.coords, "feats": scene.feats, "semantic": scene.semantic}
        if self.transforms is not None:
            data = self.transforms(data, rng)
        coords = np.asarray(data["coords"], dtype=np.float32)
        feats = np.asarray(data["feats"], dtype=np.float32)
        semantic = scene.semantic
        if self.mode == "train":
            vr = voxelize(coords, self.voxel_size, mode="train", keep=weak, rng=rng)
            rep = vr.point_index
            labels = semantic[rep]
            point_weak = np.full(len(semantic), -1, dtype=np.int64)
            point_weak[weak] = weak_cls
            weak_labels = point_weak[rep]
            vox = vr.voxel_coords
            if self.max_voxels is not None and len(rep) > self.max_voxels:
                sel = self._crop(vox, weak_labels >= 0, rng)
                rep, labels, weak_labels, vox = rep[sel], labels[sel], weak_labels[sel], vox[sel]
            out = {"coords": vox, "labels": labels.astype(np.int64),
                   "weak_labels": weak_labels.astype(np.int64)}
            if self.superpoints is not None:
                # a voxel takes its representative point's propagated label; voxels with a
                # weak label of their own keep only that one (-1 here)
                spread = self.propagated_labels(name)[rep].copy()
                spread[weak_labels >= 0] = -1
                out["propagated_labels"] = spread
        else:
            vr = voxelize(coords, self.voxel_size, mode="test", labels=semantic)
            rep = vr.point_index
            weak_labels = majority_vote(vr.inverse[weak], weak_cls, len(rep))
            out = {"coords": vr.voxel_coords, "labels": vr.labels,
                   "weak_labels": weak_labels, "inverse": vr.inverse,
                   "point_labels": semantic.astype(np.int64)}
        out["feats"] = input_features(self.feature_keys, coords[rep], feats[rep])
        out["name"] = name
        return out

    def _crop(self, vox: np.ndarray, labelled: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sorted indices of the ``max_voxels`` voxels nearest a centre (a labelled voxel if any)."""
        pool = np.flatnonzero(labelled)
        centre = vox[rng.choice(pool)] if len(pool) else vox[rng.integers(len(vox))]
        d = ((vox.astype(np.int64) - centre.astype(np.int64)) ** 2).sum(axis=1)
        sel = np.argpartition(d, self.max_voxels - 1)[: self.max_voxels]
        return np.sort(sel)


def input_features(feature_keys: Sequence[str], pts: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(M, C) float32 network input of voxels whose representative points are ``pts`` (M, 3)
    and raw features ``f`` (M, 3 RGB in [0, 1] or M, 1 remission): the ``feature_keys``
    (module docstring) concatenated in order. Used by the dataset and by inference."""
    parts = []
    for k in feature_keys:
        if k == "rgb":
            parts.append(f[:, :3] - 0.5)
        elif k == "remission":
            parts.append(f[:, :1])
        elif k == "features":
            parts.append(f)
        elif k == "xyz":
            parts.append(pts - pts.mean(axis=0))
        elif k == "xyz_norm":
            lo = pts.min(axis=0)
            ext = float((pts.max(axis=0) - lo).max())
            parts.append((pts - lo) / (ext if ext > 0 else 1.0))
    return np.concatenate(parts, axis=1).astype(np.float32)


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into the batch dict of docs/ARCHITECTURE.md section 4.

    Returns torch tensors: ``coords`` int32 (M, 4) [batch, x, y, z], ``feats`` float32 (M, C),
    ``labels`` / ``weak_labels`` int64 (M,), ``inverse`` int64 (P,) (each scene's inverse
    offset by the voxel count of the earlier scenes), ``point_labels`` int64 (P,),
    ``point_offsets`` int64 (B+1,), ``scene_names`` list[str]. For train-mode samples
    (no inverse map) ``inverse`` and ``point_labels`` are empty and ``point_offsets`` zeros.
    """
    if not samples:
        raise ValueError("collate: empty list of samples")
    has_inv = ["inverse" in s for s in samples]
    if any(has_inv) and not all(has_inv):
        raise ValueError("collate: cannot mix train-mode and val/test-mode samples in one batch")
    coords, feats, labels, weak, inverse, plabels = [], [], [], [], [], []
    spread = [np.asarray(s["propagated_labels"], dtype=np.int64) for s in samples
              if "propagated_labels" in s]
    if spread and len(spread) != len(samples):
        raise ValueError("collate: some samples have propagated_labels and some do not")
    point_offsets = [0]
    voxel_offset = 0
    for b, s in enumerate(samples):
        m = len(s["coords"])
        c = np.empty((m, 4), dtype=np.int32)
        c[:, 0] = b
        c[:, 1:] = s["coords"]
        coords.append(c)
        feats.append(np.asarray(s["feats"], dtype=np.float32))
        labels.append(np.asarray(s["labels"], dtype=np.int64))
        weak.append(np.asarray(s["weak_labels"], dtype=np.int64))
        if "inverse" in s:
            inverse.append(np.asarray(s["inverse"], dtype=np.int64) + voxel_offset)
            plabels.append(np.asarray(s["point_labels"], dtype=np.int64))
            point_offsets.append(point_offsets[-1] + len(s["inverse"]))
        else:
            point_offsets.append(0)
        voxel_offset += m
    empty = np.zeros(0, dtype=np.int64)
    out: dict[str, Any] = {
        "coords": torch.from_numpy(np.concatenate(coords)),
        "feats": torch.from_numpy(np.concatenate(feats)),
        "labels": torch.from_numpy(np.concatenate(labels)),
        "weak_labels": torch.from_numpy(np.concatenate(weak)),
        "inverse": torch.from_numpy(np.concatenate(inverse) if inverse else empty),
        "point_labels": torch.from_numpy(np.concatenate(plabels) if plabels else empty.copy()),
        "point_offsets": torch.tensor(point_offsets, dtype=torch.int64),
        "scene_names": [str(s["name"]) for s in samples],
    }
    if spread:
        out["propagated_labels"] = torch.from_numpy(np.concatenate(spread))
    return out


def _find_dataset(ds: Any) -> list[SegmentationDataset]:
    if isinstance(ds, SegmentationDataset):
        return [ds]
    if hasattr(ds, "datasets"):  # ConcatDataset
        return [d for sub in ds.datasets for d in _find_dataset(sub)]
    if hasattr(ds, "dataset"):  # Subset
        return _find_dataset(ds.dataset)
    return []


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: re-seed the worker's dataset copy from
    ``torch.initial_seed()`` (= the loader's base seed + worker id, itself drawn from
    the torch generator), so runs are reproducible for a fixed seed and worker count,
    workers differ, and epochs differ."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    for ds in _find_dataset(info.dataset):
        ds.reseed(torch.initial_seed())


def build_dataloader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """DataLoader with :func:`collate`, :func:`worker_init_fn` and a seeded shuffle generator."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
        collate_fn=collate, worker_init_fn=worker_init_fn, generator=gen,
        drop_last=drop_last, pin_memory=pin_memory, persistent_workers=num_workers > 0,
    )
