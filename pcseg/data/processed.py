"""Read / write the processed folder (docs/ARCHITECTURE.md section 2).

```
OUT/
  meta.json                     {"dataset", "class_names", "voxel_size", "splits": {split: [ids]},
                                 "label_specs": [...], "seed", "fingerprint": {...}}
  summary.json                  written by pcseg prepare
  scenes/<scene_id>.npz         coords float32 (N,3), feats float32 (N,C), semantic int64 (N,),
                                instance int64 (N,)
  scenes/<scene_id>.json        {"name", "dataset", "class_names", "source", "num_points",
                                 "feat_kind": "rgb"|"remission"|"features", "class_counts": [...],
                                 "extra", "fingerprint": scene_digest(meta fingerprint)}
  labels/<spec_dirname>/<scene_id>.npy   int64, either (M,) sorted unique indices into the
                                original points (their class is the ground truth) or (M, 2)
                                rows [point index, class] sorted by unique index (the class is
                                the annotator's, e.g. ``pcseg annotate``; ground truth unused)
```

Every write is atomic (``pcseg.io.atomic``). A scene is complete when its ``.npz`` and
``.json`` exist (the ``.npz`` is written first, the ``.json`` last).

Fingerprint (``meta.json`` ``fingerprint``): what made the folder, so that a rerun with other
settings never mixes old and new scenes: ``format`` (:data:`PROCESSED_FORMAT`), ``dataset``,
``reader`` and ``reader_options``, ``class_names``, ``voxel_size``, ``seed``, for one's own
scans ``classes`` (the CLASSES.yaml's ``label_field``, ``map``, ``ignore``, ``features``,
``units``, ``columns``) and ``normalisation`` (how the feature normalisation is fitted), and
``label_specs`` ({spec: what defines it}). :func:`fingerprint_changes` says what differs
between two of them ("map: 2->ground became 2->building"); every scene's ``.json`` holds
:func:`scene_digest` of the fingerprint it was made with. :func:`wipe_processed` empties a
folder for ``pcseg prepare --force``.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.data.classes import class_names as dataset_class_names
from pcseg.data.scene import Scene
from pcseg.data.weak_labels import LabelSpec, spec_dirname
from pcseg.io.atomic import atomic_save_npy, atomic_save_npz, atomic_write_json

SCENE_ARRAYS = ("coords", "feats", "semantic", "instance")
META_KEYS = ("dataset", "class_names", "voxel_size", "splits", "label_specs", "seed")
#: version of the processed folder's layout and contents (2: fingerprinted folders)
PROCESSED_FORMAT = 2


def scene_npz_path(out: str | Path, scene_id: str) -> Path:
    """``OUT/scenes/<scene_id>.npz``."""
    return Path(out) / "scenes" / f"{scene_id}.npz"


def scene_json_path(out: str | Path, scene_id: str) -> Path:
    """``OUT/scenes/<scene_id>.json``."""
    return Path(out) / "scenes" / f"{scene_id}.json"


def labels_path(out: str | Path, spec: str | LabelSpec, scene_id: str) -> Path:
    """``OUT/labels/<spec_dirname(spec)>/<scene_id>.npy``."""
    return Path(out) / "labels" / spec_dirname(spec) / f"{scene_id}.npy"


def feat_kind(feats: np.ndarray, declared: str | None = None) -> str:
    """'rgb' for (N, 3) features, 'remission' for (N, 1); ValueError otherwise. ``declared``
    'features' (several input channels of one's own scans, any C >= 1: the reader's
    ``scene.extra['feat_kind']``) is kept as it is."""
    c = feats.shape[1] if feats.ndim == 2 else -1
    if declared == "features" and c >= 1:
        return "features"
    if c == 3:
        return "rgb"
    if c == 1:
        return "remission"
    raise ValueError(f"feats must be (N, 3) RGB or (N, 1) remission, got shape {feats.shape}")


def _class_counts(semantic: np.ndarray, num_classes: int) -> list[int]:
    sem = semantic[semantic >= 0]
    if sem.size and sem.max() >= num_classes:
        raise ValueError(f"semantic label {int(sem.max())} >= number of classes {num_classes}")
    return np.bincount(sem, minlength=num_classes).astype(np.int64).tolist()


def write_scene(
    out: str | Path,
    scene: Scene,
    class_names: Sequence[str] | None = None,
    fingerprint: str | None = None,
) -> None:
    """Write ``scenes/<name>.npz`` then ``scenes/<name>.json`` atomically.

    Args:
        out: processed folder.
        scene: the scene; arrays are stored as coords/feats float32, semantic/instance int64.
        class_names: defaults to ``pcseg.data.classes.class_names(scene.dataset)``.
        fingerprint: :func:`scene_digest` of the folder's fingerprint, kept in the ``.json``
            (``pcseg prepare`` skips a scene only when it matches the run's).
    """
    names = list(class_names) if class_names is not None else list(dataset_class_names(scene.dataset))
    coords = np.asarray(scene.coords, dtype=np.float32)
    feats = np.asarray(scene.feats, dtype=np.float32)
    semantic = np.asarray(scene.semantic).astype(np.int64)
    instance = np.asarray(scene.instance).astype(np.int64)
    info = {
        "name": scene.name,
        "dataset": scene.dataset,
        "class_names": names,
        "source": str(scene.source),
        "num_points": len(coords),
        "feat_kind": feat_kind(feats, scene.extra.get("feat_kind")),
        "feat_channels": int(feats.shape[1]),
        "class_counts": _class_counts(semantic, len(names)),
        "extra": scene.extra,
    }
    if fingerprint is not None:
        info["fingerprint"] = fingerprint
    atomic_save_npz(scene_npz_path(out, scene.name), coords=coords, feats=feats,
                    semantic=semantic, instance=instance)
    atomic_write_json(scene_json_path(out, scene.name), info)


def read_scene_info(out: str | Path, scene_id: str) -> dict[str, Any]:
    """Contents of ``scenes/<scene_id>.json`` (ValueError naming the path if missing/corrupt)."""
    path = scene_json_path(out, scene_id)
    info = _read_json(path, "scene info")
    for key in ("name", "dataset", "num_points", "feat_kind", "class_counts"):
        if key not in info:
            raise ValueError(f"scene info {path}: missing field {key!r}")
    return info


def read_scene(out: str | Path, scene_id: str) -> Scene:
    """Load a processed scene as a :class:`Scene` (arrays as written by :func:`write_scene`).

    Raises:
        ValueError: a file is missing, unreadable, or has wrong keys / shapes (path named).
    """
    path = scene_npz_path(out, scene_id)
    info = read_scene_info(out, scene_id)
    if not path.is_file():
        raise ValueError(f"processed scene {path} does not exist")
    try:
        with np.load(path) as z:
            missing = [k for k in SCENE_ARRAYS if k not in z.files]
            if missing:
                raise ValueError(f"missing arrays {missing} (has {z.files})")
            arrays = {k: z[k] for k in SCENE_ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"processed scene {path} is corrupt: {e}") from e
    n = len(arrays["coords"])
    if arrays["coords"].shape != (n, 3) or arrays["coords"].dtype != np.float32:
        raise ValueError(f"processed scene {path}: coords must be float32 (N, 3), got "
                         f"{arrays['coords'].dtype} {arrays['coords'].shape}")
    if arrays["feats"].ndim != 2 or len(arrays["feats"]) != n:
        raise ValueError(f"processed scene {path}: feats must be (N, C) with N={n}, got {arrays['feats'].shape}")
    for k in ("semantic", "instance"):
        if arrays[k].shape != (n,) or arrays[k].dtype != np.int64:
            raise ValueError(f"processed scene {path}: {k} must be int64 ({n},), got "
                             f"{arrays[k].dtype} {arrays[k].shape}")
    if info["num_points"] != n:
        raise ValueError(f"processed scene {path}: {n} points but {scene_json_path(out, scene_id)} "
                         f"says num_points={info['num_points']}")
    return Scene(
        name=str(info["name"]), dataset=str(info["dataset"]),
        coords=arrays["coords"], feats=arrays["feats"].astype(np.float32),
        semantic=arrays["semantic"], instance=arrays["instance"],
        source=str(info.get("source", "")), extra=dict(info.get("extra") or {}),
    )


def check_label_array(arr: np.ndarray, where: str, num_points: int | None,
                       num_classes: int | None) -> np.ndarray:
    """Validate a weak-label array, (M,) indices or (M, 2) [index, class]; returns int64."""
    if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[1] != 2):
        raise ValueError(f"{where}: expected (M,) point indices or (M, 2) [point index, class] "
                         f"rows, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{where}: expected integers, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    idx = arr if arr.ndim == 1 else arr[:, 0]
    if idx.size and (idx[0] < 0 or np.any(np.diff(idx) <= 0)):
        raise ValueError(f"{where}: point indices must be sorted, unique and >= 0")
    if num_points is not None and idx.size and idx[-1] >= num_points:
        raise ValueError(f"{where}: point index {int(idx[-1])} out of range for a scene of "
                         f"{num_points} points (a label file of another scene?)")
    if arr.ndim == 2 and arr.size:
        cls = arr[:, 1]
        if cls.min() < 0 or (num_classes is not None and cls.max() >= num_classes):
            hi = "" if num_classes is None else f", {num_classes - 1}"
            raise ValueError(f"{where}: class column holds values in [{int(cls.min())}, "
                             f"{int(cls.max())}], expected [0{hi}]")
    return arr


def write_label_file(path: str | Path, idx: np.ndarray, num_points: int | None = None,
                     num_classes: int | None = None, where: str | None = None) -> Path:
    """Validate a weak-label array (see :func:`check_label_array`) and write it atomically.

    The one writer of label files (``pcseg prepare`` through :func:`write_labels`, ``pcseg
    annotate`` to its own path). ``idx``: (M,) indices or (M, 2) [index, class] rows;
    ``where`` names the labels in a ValueError (default: the path). Returns ``path``;
    OSError when it cannot be written.
    """
    path = Path(path)
    arr = check_label_array(np.asarray(idx), where or f"label file {path}", num_points,
                            num_classes)
    atomic_save_npy(path, arr)
    return path


def write_labels(out: str | Path, spec: str | LabelSpec, scene_id: str, idx: np.ndarray,
                 num_points: int | None = None, num_classes: int | None = None) -> Path:
    """Write ``labels/<spec_dirname>/<scene_id>.npy`` atomically.

    ``idx`` is either (M,) sorted unique non-negative point indices (their class is the
    ground truth) or an (M, 2) array of rows [point index, class] with sorted unique
    indices (the class is given per point, e.g. by ``pcseg annotate``); stored as int64.
    ``num_points`` / ``num_classes``, when given, are checked too. Returns the path written.
    """
    return write_label_file(labels_path(out, spec, scene_id), idx, num_points, num_classes,
                            where=f"labels for {scene_id} / {spec}")


def load_label_file(path: str | Path, num_points: int | None = None,
                    num_classes: int | None = None) -> np.ndarray:
    """Read and validate one label file -> int64 (M,) indices or (M, 2) [index, class] rows.

    ValueError naming the path when it is missing, corrupt, not int64 or fails
    :func:`check_label_array` against ``num_points`` / ``num_classes``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"label file {path} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"label file {path} is corrupt: {e}") from e
    if arr.dtype != np.int64:
        raise ValueError(f"label file {path}: expected 1-D int64 indices or (M, 2) int64 "
                         f"[index, class] rows, got {arr.dtype} {arr.shape}")
    return check_label_array(arr, f"label file {path}", num_points, num_classes)


def _load_label_file(out: str | Path, spec: str | LabelSpec, scene_id: str,
                     num_points: int | None, num_classes: int | None) -> np.ndarray:
    path = labels_path(out, spec, scene_id)
    if not path.is_file():
        raise ValueError(f"label file {path} does not exist (run pcseg prepare --labels {spec})")
    return load_label_file(path, num_points, num_classes)


def read_labels(out: str | Path, spec: str | LabelSpec, scene_id: str,
                num_points: int | None = None) -> np.ndarray:
    """Read ``labels/<spec_dirname>/<scene_id>.npy`` -> (L,) int64 sorted unique indices.

    Accepts both forms of the file ((M,) indices or (M, 2) [index, class] rows) and returns
    the point indices; :func:`read_label_classes` also returns the classes.
    Raises ValueError naming the path when missing, corrupt, not sorted/unique, or
    (when ``num_points`` is given) out of range.
    """
    arr = _load_label_file(out, spec, scene_id, num_points, None)
    return arr if arr.ndim == 1 else np.ascontiguousarray(arr[:, 0])


def read_label_classes(out: str | Path, spec: str | LabelSpec, scene_id: str,
                       semantic: np.ndarray, num_classes: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Weakly labelled points of a scene and their classes: ``(idx (L,), cls (L,))`` int64.

    For an (M,) index file the class is the ground truth ``semantic[idx]``; for an (M, 2)
    file it is the file's class column (the ground truth is not used, so an unlabelled scan
    whose ``semantic`` is all -1 trains on the annotator's labels). ``semantic`` (N,) gives
    the point count checked against the indices; ``num_classes`` bounds the class column.
    """
    semantic = np.asarray(semantic)
    arr = _load_label_file(out, spec, scene_id, len(semantic), num_classes)
    if arr.ndim == 1:
        return arr, semantic[arr].astype(np.int64)
    return np.ascontiguousarray(arr[:, 0]), np.ascontiguousarray(arr[:, 1])


def write_meta(out: str | Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` atomically (must hold every key of :data:`META_KEYS`)."""
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"meta for {out}: missing keys {missing}")
    atomic_write_json(Path(out) / "meta.json", meta)


def read_meta(out: str | Path) -> dict[str, Any]:
    """Read ``meta.json`` (ValueError naming the path if missing, corrupt or incomplete)."""
    path = Path(out) / "meta.json"
    meta = _read_json(path, "meta")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"meta {path}: missing keys {missing}")
    return meta


def is_scene_done(out: str | Path, scene_id: str, specs: Iterable[str | LabelSpec] = ()) -> bool:
    """True when the scene's ``.npz``, ``.json`` and the label file of every spec exist."""
    if not (scene_npz_path(out, scene_id).is_file() and scene_json_path(out, scene_id).is_file()):
        return False
    return all(labels_path(out, s, scene_id).is_file() for s in specs)


def split_scenes(out: str | Path, split: str | Sequence[str]) -> list[str]:
    """Scene ids of ``split``: a split name from meta.json, ``'all'``, a scene name, a glob
    over the scene names (``'00_00000[12]'``, ``'Area_1_*'``), a comma-separated list of
    these, or a list of them (``data.train_split: "00_000000"`` works).

    Split names win over scene names; a glob or name that matches neither a split nor a
    listed scene raises ``ValueError`` naming it and the splits there are.
    """
    meta = read_meta(out)
    splits = meta["splits"]
    names = [split] if isinstance(split, str) else list(split)
    names = [p.strip() for s in names for p in str(s).split(",") if p.strip()]
    every = list(dict.fromkeys(i for v in splits.values() for i in v))
    ids: list[str] = []
    for s in names:
        if s == "all" and "all" not in splits:
            lst = every
        elif s in splits:
            lst = splits[s]
        else:
            lst = [i for i in every if fnmatch.fnmatchcase(i, s)]
            if not lst:
                raise ValueError(
                    f"split {s!r} not in {Path(out) / 'meta.json'}: no split of that name (has "
                    f"{sorted(splits)}) and no scene name matches it ({len(every)} scenes, "
                    f"e.g. {every[:3]}); expected a split, a scene name or a glob"
                )
        ids.extend(lst)
    return list(dict.fromkeys(ids))


# ----------------------------------------------------------------------------- fingerprint
#: the fingerprint keys holding a dict, and how their entries are named in a message
_NESTED = {"classes": "", "reader_options": "reader option ", "normalisation": "normalisation "}


def scene_digest(fingerprint: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``fingerprint`` without ``label_specs`` (what makes a
    scene's ``.npz``; kept in its ``.json``)."""
    core = {k: v for k, v in fingerprint.items() if k != "label_specs"}
    text = json.dumps(core, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _show(v: Any) -> str:
    """A fingerprint value in a message: lists as ``[a, b]``, None as ``none``."""
    if v is None:
        return "none"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_show(x)}" for k, x in v.items()) + "}"
    return str(v)


def _code_order(code: str) -> tuple[int, str]:
    """Raw codes (JSON keys) in numeric order."""
    try:
        return int(code), ""
    except ValueError:
        return 0, code


def _map_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
    """``map: 2->ground became 2->building, 7->noise added`` (None when equal)."""
    if old == new:
        return None
    if old is None or new is None:
        what = "none (raw values are the class indices)"
        return f"map: {what if old is None else _show(old)} became {what if new is None else _show(new)}"
    parts = []
    for k in sorted(set(old) | set(new), key=_code_order):
        if k not in new:
            parts.append(f"{k}->{old[k]} removed")
        elif k not in old:
            parts.append(f"{k}->{new[k]} added")
        elif old[k] != new[k]:
            parts.append(f"{k}->{old[k]} became {k}->{new[k]}")
    return "map: " + ", ".join(parts)


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs from fingerprint ``old`` to ``new``, one phrase per key, e.g.
    ``"map: 2->ground became 2->building"``, ``"features: [intensity] became [intensity,
    return_number]"``, ``"voxel_size: 0.5 became 0.25"``. ``label_specs`` are compared only
    where both have the spec (a new spec is added to a folder, not a change). Empty: same."""
    out: list[str] = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        if key == "label_specs":
            a, b = a or {}, b or {}
            out += [f"label spec {s}: {_show(a[s])} became {_show(b[s])}"
                    for s in a if s in b and a[s] != b[s]]
        elif key in _NESTED and (isinstance(a, dict) or isinstance(b, dict)):
            a, b = a or {}, b or {}
            for k in dict.fromkeys([*a, *b]):
                if k == "map":
                    change = _map_changes(a.get(k), b.get(k))
                    out += [change] if change else []
                elif a.get(k) != b.get(k):
                    out.append(f"{_NESTED[key]}{k}: {_show(a.get(k))} became {_show(b.get(k))}")
        elif a != b:
            name = "processed format" if key == "format" else key
            out.append(f"{name}: {_show(a)} became {_show(b)}")
    return out


def scene_fingerprint(out: str | Path, scene_id: str) -> str | None:
    """The :func:`scene_digest` kept in ``scenes/<scene_id>.json`` (None: none, or the file
    is missing or unreadable)."""
    try:
        value = json.loads(scene_json_path(out, scene_id).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


#: what :func:`wipe_processed` removes from a processed folder
WIPED = ("meta.json", "summary.json", "scenes", "labels", "superpoints")
#: the marker of a wipe under way (a killed one is finished by the next run) and its bin
WIPE_MARKER = ".pcseg-force.json"
WIPE_BIN = ".pcseg-wipe"


def annotated_label_dirs(out: str | Path) -> list[str]:
    """Names of the ``labels/`` folders holding (M, 2) [index, class] files (a person's
    labels, ``pcseg annotate``; ``pcseg prepare`` writes (M,) indices only)."""
    found = []
    root = Path(out) / "labels"
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        first = next(iter(sorted(d.glob("*.npy"))), None) if d.is_dir() else None
        try:
            if first is not None and np.load(first, mmap_mode="r").ndim == 2:
                found.append(d.name)
        except (OSError, ValueError):
            continue
    return found


def wipe_processed(out: str | Path) -> list[str]:
    """Empty the processed folder ``out`` for ``pcseg prepare --force``: remove
    :data:`WIPED` (scenes, labels, superpoint caches, meta.json, summary.json) except the
    label folders of :func:`annotated_label_dirs`, which are kept. Safe to kill: the plan
    is written first (:data:`WIPE_MARKER`), every entry is renamed into :data:`WIPE_BIN`
    before it is deleted, and :func:`finish_wipe` (called by every prepare) completes a
    wipe that was cut short. Returns the kept label folders."""
    out = Path(out)
    keep = annotated_label_dirs(out)
    atomic_write_json(out / WIPE_MARKER, {"keep_labels": keep})
    finish_wipe(out)
    return keep


def finish_wipe(out: str | Path) -> bool:
    """Complete the wipe of :func:`wipe_processed` when its marker is in ``out``; returns
    whether there was one."""
    out = Path(out)
    marker = out / WIPE_MARKER
    if not marker.is_file():
        return False
    try:
        keep = set(json.loads(marker.read_text()).get("keep_labels") or [])
    except (OSError, ValueError, AttributeError):
        keep = set()
    bin_ = out / WIPE_BIN
    shutil.rmtree(bin_, ignore_errors=True)
    (bin_ / "labels").mkdir(parents=True)
    for name in WIPED:
        p = out / name
        if name == "labels" and p.is_dir():
            for d in sorted(p.iterdir()):
                if d.name not in keep:
                    os.replace(d, bin_ / "labels" / d.name)
        elif p.exists():
            os.replace(p, bin_ / name)
    shutil.rmtree(bin_)
    marker.unlink()
    return True


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} file {path} is corrupt: {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{what} file {path}: expected a JSON object, got {type(obj).__name__}")
    return obj
