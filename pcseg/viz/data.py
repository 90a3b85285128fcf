"""Loading what the viewer shows: a processed scene, its weak labels and a run's predictions,
or the files ``pcseg predict`` wrote.

Accepted paths (see docs/ARCHITECTURE.md sections 2 and 6):

* a processed folder ``OUT/`` (``meta.json``, ``scenes/<id>.npz|json``, ``labels/<spec>/<id>.npy``);
* a single processed scene ``OUT/scenes/<id>.npz`` (or its ``.json``);
* a run folder ``RUN/`` whose ``config.yaml`` has ``data: {root: OUT, label_spec: SPEC}``; its
  predictions are ``RUN/test/predictions/<id>.npz`` (pred, pseudo, confidence, entropy over the
  scene's ORIGINAL points);
* a ``pcseg test --out`` folder ``T/`` (``metrics.json``, ``predictions/<id>.npz``): the
  processed folder is its ``metrics.json``'s ``data_root``, else the ``data.root`` of the run
  that wrote the checkpoint (``RUN/config.yaml`` beside ``RUN/checkpoints/``), else of
  ``T/../config.yaml``;
* a file written by ``pcseg predict`` (LAS/LAZ, PLY, ...: ``pred_class``, ``confidence``) or a
  predict ``--out`` folder (``predict_summary.json``): :mod:`pcseg.viz.predicted`; no ground
  truth, the modes are rgb (the file's colour, intensity or height), pred and confidence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from pcseg.data import processed as processed_io
from pcseg.io.point_file import SUFFIXES as POINT_SUFFIXES
from pcseg.viz.errors import ViewError
from pcseg.viz.palettes import DATASET_PALETTES, get_palette
from pcseg.viz.predicted import (
    ClassList,
    is_predict_folder,
    predicted_files,
    read_predicted_file,
    summary_classes,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ViewData:
    """Everything the colour modes of one scene need.

    Attributes:
        name, dataset: scene id and dataset name.
        class_names: K class names in training order.
        palette: (K, 3) uint8 RGB class colours.
        coords: (N, 3) float32 metres; feats: (N, C) float32; feat_kind: 'rgb' | 'remission'
            (a predicted file: 'rgb' | 'intensity' | 'height').
        semantic: (N,) int64 ground truth in [0, K) or -1.
        labelled: (N,) bool, True where the point is weakly labelled under ``label_spec``; None
            when no spec is loaded.
        weak_classes: (N,) int64 class of each labelled point (-1 elsewhere) when the label
            file carries the class per point ((M, 2) [index, class], ``pcseg annotate``); None
            when the class is the ground truth.
        pred, pseudo: (N,) int64 or None; confidence, entropy: (N,) float32 or None.
        files: paths the data came from (for messages).
        notes: what the user should be told about the data (e.g. class names not found).
    """

    name: str
    dataset: str
    class_names: tuple[str, ...]
    palette: np.ndarray
    coords: np.ndarray
    feats: np.ndarray
    feat_kind: str
    semantic: np.ndarray
    labelled: np.ndarray | None = None
    label_spec: str | None = None
    weak_classes: np.ndarray | None = None
    pred: np.ndarray | None = None
    pseudo: np.ndarray | None = None
    confidence: np.ndarray | None = None
    entropy: np.ndarray | None = None
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def num_points(self) -> int:
        return int(len(self.coords))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise ViewError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(obj, dict):
        raise ViewError(f"{path}: expected a JSON object")
    return obj


def _spec_dirnames(spec: str) -> list[str]:
    """Folder names a label spec may be stored under (the project's spec_dirname first)."""
    names = []
    try:
        from pcseg.data.weak_labels import spec_dirname  # type: ignore

        names.append(spec_dirname(spec))
    except (ImportError, AttributeError, ValueError):
        pass
    names += [spec.replace("%", "pct"), spec]
    return [n for i, n in enumerate(names) if n and "/" not in n and n not in names[:i]]


class SceneSource(Protocol):
    """What ``pcseg view`` and the viewer browse (:class:`ViewSource`, :class:`PredictedSource`)."""

    @property
    def scenes(self) -> list[str]:
        """Scene ids in browsing order."""
        ...

    def index(self, scene: str) -> int:
        """Position of ``scene`` in :attr:`scenes` (ViewError naming some when unknown)."""
        ...

    def load(self, scene: str | None = None) -> ViewData:
        """The scene ``scene`` (default: the first)."""
        ...

    def describe(self) -> str:
        """Where the scenes come from."""
        ...


@dataclass
class ViewSource:
    """A browsable set of scenes: a processed folder, optionally with a run's predictions.

    Attributes:
        processed: the processed folder.
        scenes: scene ids in browsing order.
        label_spec: weak-label spec whose indices are loaded (None: none).
        run_dir: the run (or ``pcseg test --out``) folder the predictions belong to.
        kitti_yaml: optional semantic-kitti.yaml for the SemanticKITTI palette.
        predictions_dir: the folder of ``<scene>.npz`` predictions (None: none).
    """

    processed: Path
    scenes: list[str]
    label_spec: str | None = None
    run_dir: Path | None = None
    kitti_yaml: str | None = None
    predictions_dir: Path | None = None

    def index(self, scene: str) -> int:
        """Position of ``scene`` in :attr:`scenes`; ValueError listing some available ids."""
        try:
            return self.scenes.index(scene)
        except ValueError:
            some = ", ".join(self.scenes[:8]) + (" ..." if len(self.scenes) > 8 else "")
            where = self.predictions_dir or self.processed / "scenes"
            raise ViewError(f"scene {scene!r} not found in {where} (available: {some})") from None

    def describe(self) -> str:
        """Where the scenes come from, for ``pcseg view --list``."""
        return (
            f"processed: {self.processed}"
            + (f"\nrun: {self.run_dir}" if self.run_dir else "")
            + f"\nlabel spec: {self.label_spec or 'none'}"
        )

    def load(self, scene: str | None = None) -> ViewData:
        """Load ``scene`` (default: the first) as :class:`ViewData`."""
        if not self.scenes:
            raise ViewError(f"no scenes found in {self.processed / 'scenes'}")
        scene = self.scenes[0] if scene is None else scene
        self.index(scene)
        view = load_processed_scene(self.processed, scene, self.label_spec, self.kitti_yaml)
        if self.predictions_dir is not None:
            attach_predictions(view, self.predictions_dir / f"{scene}.npz")
        return view


@dataclass
class PredictedSource:
    """The files of ``pcseg predict`` as scenes (:mod:`pcseg.viz.predicted`): one file, or
    the files of a predict ``--out`` folder; a scene id is the file name (its stem works
    too when unique)."""

    folder: Path
    files: list[Path]

    @property
    def scenes(self) -> list[str]:
        return [p.name for p in self.files]

    def index(self, scene: str) -> int:
        """Position of the file named ``scene`` (or of the only one with that stem)."""
        names = self.scenes
        if scene in names:
            return names.index(scene)
        stems = [i for i, p in enumerate(self.files) if p.stem == scene]
        if len(stems) == 1:
            return stems[0]
        some = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        raise ViewError(f"scene {scene!r} not found in {self.folder} (available: {some})")

    def describe(self) -> str:
        """Where the scenes come from, for ``pcseg view --list``."""
        return f"predicted files in: {self.folder}"

    def load(self, scene: str | None = None) -> ViewData:
        """Load the file ``scene`` (default: the first) as :class:`ViewData`."""
        if not self.files:
            raise ViewError(f"no predicted files in {self.folder}")
        path = self.files[0 if scene is None else self.index(scene)]
        return predicted_view(path, summary_classes(self.folder).get(path.name))


def predicted_view(path: str | os.PathLike, classes: ClassList | None = None) -> ViewData:
    """A file written by ``pcseg predict`` as :class:`ViewData`: coordinates shifted to their
    minimum (float32 keeps the precision), no ground truth (every point -1), ``pred`` and
    ``confidence`` from the file, the class palette of its class names (a benchmark's own
    colours when they are a benchmark's classes) and the class file's ``colors``."""
    pf = read_predicted_file(path, classes)
    names = pf.classes.names
    dataset = next(
        (d for d, (canon, _) in DATASET_PALETTES.items() if tuple(canon) == names), "predicted"
    )
    n = len(pf.pred)
    xyz = pf.xyz - (pf.xyz.min(0) if n else 0.0)
    return ViewData(
        name=pf.path.name,
        dataset=dataset,
        class_names=names,
        palette=get_palette(dataset, names, None, pf.classes.colors),
        coords=xyz.astype(np.float32),
        feats=pf.feats,
        feat_kind=pf.feat_kind,
        semantic=np.full(n, -1, dtype=np.int64),
        pred=pf.pred,
        confidence=pf.confidence,
        files={"scene": str(pf.path), "classes": pf.classes.source},
        notes=pf.notes,
    )


def load_processed_scene(
    processed: str | os.PathLike,
    scene: str,
    label_spec: str | None = None,
    kitti_yaml: str | os.PathLike | None = None,
) -> ViewData:
    """Read ``processed/scenes/<scene>.npz|json`` (and ``labels/<spec>/<scene>.npy`` when
    ``label_spec`` is given) into :class:`ViewData`. Errors name the missing / bad file."""
    processed = Path(processed)
    npz_path = processed / "scenes" / f"{scene}.npz"
    json_path = processed / "scenes" / f"{scene}.json"
    if not npz_path.is_file():
        raise FileNotFoundError(f"missing scene file {npz_path}")
    info = _read_json(json_path) if json_path.is_file() else None
    if info is None:
        raise FileNotFoundError(f"missing scene metadata {json_path} (scene incomplete?)")
    meta_path = processed / "meta.json"
    meta = _read_json(meta_path) if meta_path.is_file() else {}
    with np.load(npz_path) as z:
        for key in ("coords", "feats", "semantic"):
            if key not in z.files:
                raise ViewError(f"{npz_path}: missing array {key!r} (has {sorted(z.files)})")
        coords = np.asarray(z["coords"], dtype=np.float32)
        feats = np.asarray(z["feats"], dtype=np.float32)
        semantic = np.asarray(z["semantic"])
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ViewError(f"{npz_path}: coords must be (N, 3), got {coords.shape}")
    n = len(coords)
    if feats.ndim != 2 or len(feats) != n:
        raise ViewError(f"{npz_path}: feats must be (N={n}, C), got {feats.shape}")
    if semantic.shape != (n,) or not np.issubdtype(semantic.dtype, np.integer):
        raise ViewError(
            f"{npz_path}: semantic must be ({n},) integers, got {semantic.shape} {semantic.dtype}"
        )
    dataset = str(info.get("dataset", meta.get("dataset", "unknown")))
    names = info.get("class_names") or meta.get("class_names")
    if not names:
        raise ViewError(f"{json_path}: no 'class_names' (nor in {meta_path})")
    names = tuple(str(s) for s in names)
    semantic = semantic.astype(np.int64)
    if n and (semantic.max() >= len(names) or semantic.min() < -1):
        raise ViewError(
            f"{npz_path}: semantic labels in [{semantic.min()}, {semantic.max()}], "
            f"expected -1 or [0, {len(names) - 1}]"
        )
    feat_kind = str(info.get("feat_kind", "rgb" if feats.shape[1] >= 3 else "remission"))
    view = ViewData(
        name=scene,
        dataset=dataset,
        class_names=names,
        palette=get_palette(dataset, names, kitti_yaml, (meta.get("classes") or {}).get("colors")),
        coords=coords,
        feats=feats,
        feat_kind=feat_kind,
        semantic=semantic,
        files={"scene": str(npz_path)},
    )
    if label_spec:
        view.labelled, view.weak_classes, lab_path = load_weak_labels(
            processed, label_spec, scene, n, len(names)
        )
        view.label_spec = label_spec
        view.files["labels"] = str(lab_path)
    return view


def load_weak_labels(
    processed: str | os.PathLike, spec: str, scene: str, num_points: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray | None, Path]:
    """The weak labels of ``scene`` under ``spec``: (N,) bool mask of the labelled points,
    (N,) int64 classes (-1 elsewhere) when the file gives them ((M, 2) [index, class] rows,
    e.g. ``pcseg annotate``; None for (M,) indices, whose class is the ground truth), and
    the file read. The file is read and checked by
    :func:`pcseg.data.processed.load_label_file` (ValueError naming it)."""
    path = _label_file(Path(processed), spec, scene)
    arr = processed_io.load_label_file(path, num_points, num_classes)
    idx = arr if arr.ndim == 1 else arr[:, 0]
    mask = np.zeros(num_points, dtype=bool)
    mask[idx] = True
    classes = None
    if arr.ndim == 2 and arr.size:
        classes = np.full(num_points, -1, dtype=np.int64)
        classes[idx] = arr[:, 1]
    return mask, classes, path


def _label_file(processed: Path, spec: str, scene: str) -> Path:
    """``labels/<spec folder>/<scene>.npy``; FileNotFoundError listing the folders there."""
    labels_root = processed / "labels"
    folder = next(
        (labels_root / d for d in _spec_dirnames(spec) if (labels_root / d).is_dir()), None
    )
    if folder is None:
        have = (
            sorted(p.name for p in labels_root.iterdir() if p.is_dir())
            if labels_root.is_dir()
            else []
        )
        raise FileNotFoundError(
            f"no label folder for spec {spec!r} under {labels_root} "
            f"(tried {', '.join(_spec_dirnames(spec))}; available: {', '.join(have) or 'none'})"
        )
    path = folder / f"{scene}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"missing weak-label file {path}")
    return path


def attach_predictions(view: ViewData, path: str | os.PathLike) -> ViewData:
    """Fill ``view.pred/pseudo/confidence/entropy`` from a predictions ``.npz`` (over the
    ORIGINAL points; ``pred`` required, the others optional). Returns ``view``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing predictions file {path}")
    n = view.num_points
    with np.load(path) as z:
        if "pred" not in z.files:
            raise ViewError(f"{path}: missing array 'pred' (has {sorted(z.files)})")
        arrays = {
            k: np.asarray(z[k]) for k in ("pred", "pseudo", "confidence", "entropy") if k in z.files
        }
    for key, arr in arrays.items():
        if arr.shape != (n,):
            raise ViewError(
                f"{path}: {key} has shape {arr.shape}, but scene {view.name} has "
                f"{n} points ({view.files.get('scene', '')})"
            )
    for key in ("pred", "pseudo"):
        if key in arrays:
            arr = arrays[key]
            if not np.issubdtype(arr.dtype, np.integer):
                raise ViewError(f"{path}: {key} must be integers, got {arr.dtype}")
            arr = arr.astype(np.int64)
            if n and (arr.max() >= view.num_classes or arr.min() < -1):
                raise ViewError(
                    f"{path}: {key} values in [{arr.min()}, {arr.max()}], expected -1 "
                    f"or [0, {view.num_classes - 1}]"
                )
            setattr(view, key, arr)
    for key in ("confidence", "entropy"):
        if key in arrays:
            setattr(view, key, arrays[key].astype(np.float32))
    view.files["predictions"] = str(path)
    return view


def _resolve_data_root(root: str, run_dir: Path, config_path: Path) -> Path:
    p = Path(os.path.expanduser(root))
    tries = (
        [p] if p.is_absolute() else [Path.cwd() / p, run_dir / p, run_dir.parent / p, REPO_ROOT / p]
    )
    for t in tries:
        if (t / "meta.json").is_file() or (t / "scenes").is_dir():
            return t.resolve()
    raise FileNotFoundError(
        f"{config_path}: data.root {root!r} is not a processed folder (no meta.json / scenes/); "
        f"tried {', '.join(str(t) for t in tries)}"
    )


def _scene_ids(folder: Path, suffix: str = ".npz") -> list[str]:
    return sorted(
        p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}") if not p.name.startswith(".")
    )


def _run_data(cfg_path: Path) -> dict:
    """The ``data`` section of a run's ``config.yaml`` (ViewError without ``data.root``)."""
    import yaml

    with open(cfg_path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    data = cfg.get("data") if isinstance(cfg, dict) else None
    if not isinstance(data, dict) or not data.get("root"):
        raise ViewError(f"{cfg_path}: missing key data.root (the processed folder)")
    return data


def _run_source(path: Path, label_spec: str | None, kitti: str | None) -> ViewSource:
    """A run folder: its processed folder with ``test/predictions`` (when there are any)."""
    cfg_path = path / "config.yaml"
    data = _run_data(cfg_path)
    processed = _resolve_data_root(str(data["root"]), path, cfg_path)
    spec = label_spec if label_spec is not None else data.get("label_spec")
    spec = str(spec) if spec else None
    pred_dir = path / "test" / "predictions"
    scenes = _scene_ids(pred_dir) if pred_dir.is_dir() else []
    if scenes:
        return ViewSource(processed, scenes, spec, path, kitti, pred_dir)
    import warnings

    warnings.warn(
        f"no predictions in {pred_dir} (run pcseg test); showing the "
        f"processed scenes of {processed} without predictions",
        stacklevel=3,
    )
    return ViewSource(processed, _scene_ids(processed / "scenes"), spec, None, kitti)


def is_test_folder(path: Path) -> bool:
    """Whether ``path`` is what ``pcseg test --out`` writes (metrics.json, predictions/)."""
    return (path / "metrics.json").is_file() and (path / "predictions").is_dir()


def _test_source(path: Path, label_spec: str | None, kitti: str | None) -> ViewSource:
    """A ``pcseg test --out`` folder: the processed folder of its ``metrics.json``
    (``data_root``), else of the run of its checkpoint, else of ``path/../config.yaml``."""
    metrics = _read_json(path / "metrics.json")
    spec = label_spec if label_spec is not None else metrics.get("label_spec")
    processed = None
    if metrics.get("data_root"):
        processed = _resolve_data_root(str(metrics["data_root"]), path, path / "metrics.json")
    configs = [path.parent / "config.yaml"]
    if metrics.get("checkpoint"):
        configs.insert(0, Path(str(metrics["checkpoint"])).parent.parent / "config.yaml")
    for cfg_path in configs if processed is None else []:
        if cfg_path.is_file():
            data = _run_data(cfg_path)
            processed = _resolve_data_root(str(data["root"]), cfg_path.parent, cfg_path)
            spec = spec if spec is not None else data.get("label_spec")
            break
    if processed is None:
        raise ViewError(
            f"{path / 'metrics.json'}: no data_root, and no run config.yaml found to name "
            f"the processed folder (tried {', '.join(str(c) for c in configs)})"
        )
    scenes = _scene_ids(path / "predictions")
    if not scenes:
        raise ViewError(f"no predictions/*.npz in the pcseg test folder {path}")
    spec = str(spec) if spec and spec != "full" else None
    return ViewSource(processed, scenes, spec, path, kitti, path / "predictions")


def _processed_source(path: Path, label_spec: str | None, kitti: str | None) -> ViewSource:
    """A processed folder; without ``label_spec`` its only spec (if exactly one)."""
    spec = label_spec
    if spec is None and (path / "meta.json").is_file():
        specs = _read_json(path / "meta.json").get("label_specs") or []
        if len(specs) == 1:
            spec = str(specs[0])
    scenes = _scene_ids(path / "scenes")
    if not scenes:
        raise ViewError(f"no scenes/*.npz in processed folder {path}")
    return ViewSource(path, scenes, spec, None, kitti)


def open_source(
    path: str | os.PathLike,
    label_spec: str | None = None,
    kitti_yaml: str | os.PathLike | None = None,
) -> ViewSource | PredictedSource:
    """Interpret ``path`` (processed folder, single scene file, run folder, ``pcseg test
    --out`` folder, predicted file or predict ``--out`` folder: see the module docstring) as a
    source of scenes. ``label_spec`` overrides the run config's ``data.label_spec``; for a
    processed folder without one, the only spec present (if exactly one) is used."""
    path = Path(path)
    kitti = None if kitti_yaml is None else str(kitti_yaml)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file():
        if path.suffix in (".npz", ".json") and path.parent.name == "scenes":
            return ViewSource(path.parent.parent, [path.stem], label_spec, None, kitti)
        if path.suffix.lower() in POINT_SUFFIXES:
            return PredictedSource(path.parent, [path])
        raise ViewError(
            f"{path}: expected a processed scene OUT/scenes/<id>.npz, a file written by "
            f"pcseg predict, a processed folder, a run folder or a pcseg test folder"
        )
    if (path / "config.yaml").is_file():
        return _run_source(path, label_spec, kitti)
    if is_test_folder(path):
        return _test_source(path, label_spec, kitti)
    if (path / "meta.json").is_file() or (path / "scenes").is_dir():
        return _processed_source(path, label_spec, kitti)
    if is_predict_folder(path):
        return PredictedSource(path, predicted_files(path))
    raise ViewError(
        f"{path}: neither a run folder (config.yaml), a pcseg test folder (metrics.json, "
        f"predictions/), a processed folder (meta.json, scenes/), a pcseg predict folder "
        f"(predict_summary.json) nor a scene or predicted file"
    )


def load_view_data(
    path: str | os.PathLike,
    scene: str | None = None,
    label_spec: str | None = None,
    kitti_yaml: str | os.PathLike | None = None,
) -> ViewData:
    """Load one scene for viewing from a processed folder, a scene file or a run folder.

    ``scene`` defaults to the first scene (sorted ids; for a run, the first with
    predictions). ``label_spec`` (e.g. ``'1%'``) selects the weak labels to show; a run
    uses its config's ``data.label_spec`` by default.
    """
    return open_source(path, label_spec, kitti_yaml).load(scene)
