"""SemanticKITTI reader.

Raw layout (``RAW`` = the ``dataset/`` folder or its parent)::

    RAW/[dataset/]sequences/XX/velodyne/NNNNNN.bin    float32 rows x y z remission
    RAW/[dataset/]sequences/XX/labels/NNNNNN.label    uint32 per point: raw semantic id =
                                                      label & 0xFFFF, instance id = label >> 16
                                                      (absent for test sequences)
    RAW/semantic-kitti.yaml                           optional label config (also looked for in
                                                      dataset/ and next to dataset/;
                                                      ``pcseg prepare --kitti-yaml``)

Without a yaml the official label configuration built in here (:func:`builtin_config`:
learning map, inverse map and colours of the official ``semantic-kitti.yaml``) is used; a
yaml found in the raw folder or given with ``--kitti-yaml`` (``config=``) overrides it.

Semantic class index = ``learning_map[raw] - 1`` (learning id 0 = unlabelled -> -1), so the
19 classes are :data:`pcseg.data.classes.SEMANTICKITTI_CLASSES`; moving classes (252-259)
fold into their static ones through ``learning_map``. Instance ids: SemanticKITTI numbers
instances per class (only thing classes carry non-zero ids), so the same ``label >> 16``
can occur in two classes. The returned instance is made unique per scan as
``(class index << 16) | (label >> 16)`` for points with a non-zero instance field and a
valid class, and -1 otherwise (the raw id is ``instance & 0xFFFF``, the class
``instance >> 16``). Scans without a label file get semantic and instance -1 only in
sequences outside the config's train/valid split (the test sequences); in a labelled
sequence a missing ``.label`` is an error naming it (a partial download must not turn
training scans silently into unlabelled ones). Scene ids are ``<seq>_<frame>`` (``00_000000``).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pcseg.data.classes import SEMANTICKITTI_CLASSES
from pcseg.data.scene import Scene
from pcseg.readers.common import (
    ReaderOptions,
    check_points,
    check_scene_name,
    expand_split,
    first_existing,
    normalise_features,
    warn,
)

DATASET = "semantickitti"
CONFIG_NAME = "semantic-kitti.yaml"
_SCENE_RE = re.compile(r"^(?P<seq>\d{2})_(?P<frame>\d+)$")
_UNKNOWN = -2  # lookup-table sentinel for raw ids absent from learning_map

#: Split name -> sequences, the official definition (``split`` of semantic-kitti.yaml:
#: train 00-07, 09, 10; valid 08; test 11-21). When the config has a ``split`` section,
#: it is used instead. :func:`resolve_split` also accepts ``valid`` (= ``val``), ``all``
#: (every sequence on disk), single sequences (``"08"``) and ``+`` joins (``"00+08"``).
SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
    "val": ("08",),
    "test": tuple(f"{i:02d}" for i in range(11, 22)),
}

# --------------------------------------------------------------------------- config

#: Raw id -> name, learning map, inverse map and colour map (BGR) of the official
#: semantic-kitti.yaml (github.com/PRBonn/semantic-kitti-api, config/semantic-kitti.yaml).
OFFICIAL_LABELS: dict[int, str] = {
    0: "unlabeled",
    1: "outlier",
    10: "car",
    11: "bicycle",
    13: "bus",
    15: "motorcycle",
    16: "on-rails",
    18: "truck",
    20: "other-vehicle",
    30: "person",
    31: "bicyclist",
    32: "motorcyclist",
    40: "road",
    44: "parking",
    48: "sidewalk",
    49: "other-ground",
    50: "building",
    51: "fence",
    52: "other-structure",
    60: "lane-marking",
    70: "vegetation",
    71: "trunk",
    72: "terrain",
    80: "pole",
    81: "traffic-sign",
    99: "other-object",
    252: "moving-car",
    253: "moving-bicyclist",
    254: "moving-person",
    255: "moving-motorcyclist",
    256: "moving-on-rails",
    257: "moving-bus",
    258: "moving-truck",
    259: "moving-other-vehicle",
}
OFFICIAL_LEARNING_MAP: dict[int, int] = {
    0: 0,
    1: 0,
    10: 1,
    11: 2,
    13: 5,
    15: 3,
    16: 5,
    18: 4,
    20: 5,
    30: 6,
    31: 7,
    32: 8,
    40: 9,
    44: 10,
    48: 11,
    49: 12,
    50: 13,
    51: 14,
    52: 0,
    60: 9,
    70: 15,
    71: 16,
    72: 17,
    80: 18,
    81: 19,
    99: 0,
    252: 1,
    253: 7,
    254: 6,
    255: 8,
    256: 5,
    257: 5,
    258: 4,
    259: 5,
}
OFFICIAL_LEARNING_MAP_INV: dict[int, int] = {
    0: 0,
    1: 10,
    2: 11,
    3: 15,
    4: 18,
    5: 20,
    6: 30,
    7: 31,
    8: 32,
    9: 40,
    10: 44,
    11: 48,
    12: 49,
    13: 50,
    14: 51,
    15: 70,
    16: 71,
    17: 72,
    18: 80,
    19: 81,
}
OFFICIAL_COLOR_MAP: dict[int, list[int]] = {
    0: [0, 0, 0],
    1: [0, 0, 255],
    10: [245, 150, 100],
    11: [245, 230, 100],
    13: [250, 80, 100],
    15: [150, 60, 30],
    16: [255, 0, 0],
    18: [180, 30, 80],
    20: [255, 0, 0],
    30: [30, 30, 255],
    31: [200, 40, 255],
    32: [90, 30, 150],
    40: [255, 0, 255],
    44: [255, 150, 255],
    48: [75, 0, 75],
    49: [75, 0, 175],
    50: [0, 200, 255],
    51: [50, 120, 255],
    52: [0, 150, 255],
    60: [170, 255, 150],
    70: [0, 175, 0],
    71: [0, 60, 135],
    72: [80, 240, 150],
    80: [150, 240, 255],
    81: [0, 0, 255],
    99: [255, 255, 50],
    252: [245, 150, 100],
    253: [200, 40, 255],
    254: [30, 30, 255],
    255: [90, 30, 150],
    256: [255, 0, 0],
    257: [250, 80, 100],
    258: [180, 30, 80],
    259: [255, 0, 0],
}
BUILTIN = "builtin"  # what ``extra['config']`` says when no yaml was used


def builtin_config() -> dict[str, Any]:
    """The official label configuration as :func:`load_config` returns it (int keys)."""
    return {
        "labels": dict(OFFICIAL_LABELS),
        "color_map": {k: list(v) for k, v in OFFICIAL_COLOR_MAP.items()},
        "learning_map": dict(OFFICIAL_LEARNING_MAP),
        "learning_map_inv": dict(OFFICIAL_LEARNING_MAP_INV),
        "learning_ignore": {k: k == 0 for k in OFFICIAL_LEARNING_MAP_INV},
        "split": {
            name: list(seqs)
            for name, seqs in (
                ("train", SPLITS["train"]),
                ("valid", SPLITS["val"]),
                ("test", SPLITS["test"]),
            )
        },
    }


def load_config(path: Path) -> dict[str, Any]:
    """Load ``semantic-kitti.yaml`` -> dict with int-keyed maps.

    Returns the yaml's keys with ``labels``, ``learning_map``, ``learning_map_inv``,
    ``learning_ignore`` and ``color_map`` keyed by int, and ``split`` as
    {'train'|'valid'|'test': list of 'XX' sequence strings}. Raises ``ValueError`` naming
    the file when ``learning_map`` is missing or not int -> int in 0..19.
    """
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read SemanticKITTI config {path}: {e}") from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get("learning_map"), dict):
        raise ValueError(f"{path}: no 'learning_map' mapping")
    out = dict(cfg)
    for key in (
        "labels",
        "learning_map",
        "learning_map_inv",
        "learning_ignore",
        "color_map",
        "content",
    ):
        if key in cfg and isinstance(cfg[key], dict):
            try:
                out[key] = {int(k): v for k, v in cfg[key].items()}
            except (TypeError, ValueError):
                raise ValueError(f"{path}: {key} has a non-integer key") from None
    nclass = len(SEMANTICKITTI_CLASSES)
    for k, v in out["learning_map"].items():
        if not isinstance(v, int) or not 0 <= v <= nclass or k < 0:
            raise ValueError(f"{path}: learning_map {k}: {v!r} is not an id in 0..{nclass}")
    if "split" in cfg:
        split = cfg["split"]
        if not isinstance(split, dict):
            raise ValueError(f"{path}: 'split' must map train/valid/test to sequence lists")
        out["split"] = {
            name: [f"{int(s):02d}" for s in (seqs or [])] for name, seqs in split.items()
        }
    return out


def build_lut(learning_map: dict[int, int]) -> np.ndarray:
    """Raw-id lookup table: int64 (max_raw+1,) with class index (learning id - 1), -1 for
    learning id 0, and -2 for raw ids absent from ``learning_map``."""
    size = max(learning_map) + 1
    lut = np.full(size, _UNKNOWN, dtype=np.int64)
    keys = np.fromiter(learning_map.keys(), dtype=np.int64)
    vals = np.fromiter(learning_map.values(), dtype=np.int64)
    lut[keys] = vals - 1
    return lut


def map_raw_labels(raw_sem: np.ndarray, lut: np.ndarray, source: str) -> np.ndarray:
    """Map raw semantic ids (N,) through ``lut`` -> (N,) int64 class index or -1.

    Raises ``ValueError`` naming ``source`` and the unknown raw ids (with counts).
    """
    raw_sem = raw_sem.astype(np.int64, copy=False)
    inside = raw_sem < lut.size
    out = np.full(raw_sem.shape, _UNKNOWN, dtype=np.int64)
    out[inside] = lut[raw_sem[inside]]
    bad = out == _UNKNOWN
    if bad.any():
        ids, cnt = np.unique(raw_sem[bad], return_counts=True)
        desc = ", ".join(f"{i} ({c} points)" for i, c in zip(ids[:10], cnt[:10]))
        raise ValueError(f"{source}: raw semantic ids not in learning_map: {desc}")
    return out


@functools.lru_cache(maxsize=8)
def _cached_config(path: str, mtime_ns: int) -> tuple[dict[str, Any], np.ndarray]:
    cfg = load_config(Path(path))
    return cfg, build_lut(cfg["learning_map"])


@functools.lru_cache(maxsize=1)
def _builtin() -> tuple[dict[str, Any], np.ndarray]:
    cfg = builtin_config()
    return cfg, build_lut(cfg["learning_map"])


def _get_config(raw: Path, config: Path | None) -> tuple[Path | None, dict[str, Any], np.ndarray]:
    """(yaml path or None for the built-in config, config, lookup table)."""
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ValueError(
                f"SemanticKITTI config {path} (--kitti-yaml) not found; expected "
                f"a semantic-kitti.yaml, or leave --kitti-yaml out to use the "
                f"official label map built in"
            )
    else:
        found = find_config(raw, required=False)
        if found is None:
            cfg, lut = _builtin()
            return None, cfg, lut
        path = found
    cfg, lut = _cached_config(str(path.resolve()), os.stat(path).st_mtime_ns)
    return path, cfg, lut


# --------------------------------------------------------------------------- layout


def find_dataset_root(raw: Path) -> Path:
    """The folder that holds ``sequences/``: ``raw`` or ``raw/dataset``."""
    raw = Path(raw)
    for cand in (raw, raw / "dataset"):
        if (cand / "sequences").is_dir():
            return cand
    raise ValueError(
        f"{raw}: no sequences/ folder (expected RAW/sequences or RAW/dataset/sequences)"
    )


def find_config(raw: Path, required: bool = True) -> Path | None:
    """Locate ``semantic-kitti.yaml`` in RAW, RAW/dataset, or next to the dataset folder
    (None when absent and not ``required``)."""
    raw = Path(raw)
    root = find_dataset_root(raw)
    cands = [
        raw / CONFIG_NAME,
        raw / "dataset" / CONFIG_NAME,
        root / CONFIG_NAME,
        root.parent / CONFIG_NAME,
    ]
    found = first_existing(cands)
    if found is None and required:
        raise ValueError(
            f"{CONFIG_NAME} not found in {sorted({str(c.parent) for c in cands})}; give its "
            f"path with `pcseg prepare semantickitti --kitti-yaml FILE`"
        )
    return found


def resolve_split(
    split: str, cfg: dict[str, Any] | None = None, on_disk: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """Split expression -> sequence names ('XX').

    ``cfg`` (from :func:`load_config`) overrides train/val/test with its ``split``
    section; ``on_disk`` is what ``all`` expands to. ``ValueError`` for unknown names.
    """
    table: dict[str, tuple[str, ...]] = dict(SPLITS)
    sp = (cfg or {}).get("split") or {}
    if "train" in sp:
        table["train"] = tuple(sp["train"])
    if "valid" in sp:
        table["val"] = tuple(sp["valid"])
    if "test" in sp:
        table["test"] = tuple(sp["test"])
    table["valid"] = table["val"]
    table["all"] = tuple(on_disk)
    seqs = {s for v in table.values() for s in v} | {f"{i:02d}" for i in range(22)} | set(on_disk)
    for s in seqs:
        table.setdefault(s, (s,))
    return expand_split(split, table, "SemanticKITTI")


class Options(ReaderOptions):
    """The label configuration the reader maps through (``pcseg prepare semantickitti``)."""

    #: semantic-kitti.yaml (learning map, splits); None: one in the raw folder, else the
    #: official map built in
    config: Path | None = None


def list_scenes(raw: Path, split: str, options: Options | None = None) -> list[str]:
    """Scene ids ``<seq>_<frame>`` of ``split``: every ``velodyne/*.bin`` of its sequences
    (``options.config``: the yaml whose ``split`` section defines train / val / test).

    Splits: :func:`resolve_split` with the config's ``split`` section. Sequences of the split
    missing on disk are skipped with one warning; ``ValueError`` if nothing is found.
    """
    config = (Options() if options is None else options).config
    root = find_dataset_root(raw)
    _, cfg, _ = _get_config(raw, config)
    on_disk = tuple(
        sorted(p.name for p in (root / "sequences").iterdir() if p.is_dir() and p.name.isdigit())
    )
    seqs = resolve_split(split, cfg, on_disk)
    scenes: list[str] = []
    missing = []
    for seq in seqs:
        vdir = root / "sequences" / seq / "velodyne"
        if not vdir.is_dir():
            missing.append(seq)
            continue
        frames = sorted(p.stem for p in vdir.glob("*.bin") if not p.name.startswith("."))
        scenes += [f"{seq}_{f}" for f in frames]
    if missing:
        warn(f"{root}/sequences: sequences {missing} of split {split!r} not found; skipped")
    if not scenes:
        raise ValueError(f"{root}: split {split!r} (sequences {list(seqs)}) has no scans")
    return [check_scene_name(s) for s in scenes]


def read_bin(path: Path) -> np.ndarray:
    """``.bin`` scan -> (N, 4) float32 x y z remission; ``ValueError`` if truncated."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ValueError(f"cannot read SemanticKITTI scan {path}: {e}") from e
    if size % 16:
        raise ValueError(
            f"{path}: {size} bytes is not a multiple of 16 (4 float32 per point): "
            f"{size // 16} whole points and {size % 16} trailing bytes (truncated file?)"
        )
    return np.fromfile(path, dtype="<f4").reshape(-1, 4)


def read_label_file(path: Path, num_points: int) -> np.ndarray:
    """``.label`` file -> (N,) uint32; ``ValueError`` if its length is not ``num_points``."""
    path = Path(path)
    size = path.stat().st_size
    if size % 4:
        raise ValueError(f"{path}: {size} bytes is not a multiple of 4 (uint32 per point)")
    if size // 4 != num_points:
        raise ValueError(f"{path}: {size // 4} labels, but the scan has {num_points} points")
    return np.fromfile(path, dtype="<u4")


def parse_scene_id(scene_id: str) -> tuple[str, str]:
    """``'00_000000'`` -> ``('00', '000000')``."""
    m = _SCENE_RE.match(scene_id)
    if not m:
        raise ValueError(f"SemanticKITTI scene id {scene_id!r} is not of the form <seq>_<frame>")
    return m.group("seq"), m.group("frame")


def read_scene(raw: Path, scene_id: str, options: Options | None = None) -> Scene:
    """Read one scan as a :class:`Scene` (``options``: :class:`Options`, None = defaults).

    Returns coords (N,3) float32 (sensor frame, metres), feats (N,1) float32 remission in
    [0, 1] (:func:`~pcseg.readers.common.normalise_features`: a 0-255 remission is divided
    by 255 with a note), semantic (N,) int64 in [0,19) or -1, instance (N,) int64 (see
    module docstring). ``extra``: sequence, frame, has_labels, config (path of the yaml
    used, or ``"builtin"``), dropped_points (file indices removed by ``nonfinite='drop'``).
    An empty scan and NaN/inf points are refused, or the latter dropped
    (:func:`~pcseg.readers.common.check_points`).
    """
    opts = Options() if options is None else options
    config, nonfinite = opts.config, opts.nonfinite
    seq, frame = parse_scene_id(scene_id)
    root = find_dataset_root(raw)
    cfg_path, cfg, lut = _get_config(raw, config)
    seq_dir = root / "sequences" / seq
    bin_path = seq_dir / "velodyne" / f"{frame}.bin"
    if not bin_path.is_file():
        raise ValueError(f"SemanticKITTI scan {bin_path} not found (scene {scene_id!r})")
    pts = read_bin(bin_path)
    n = len(pts)
    keep = check_points(pts[:, :3], bin_path, feats=pts[:, 3:], nonfinite=nonfinite)
    label_path = seq_dir / "labels" / f"{frame}.label"
    if label_path.is_file():
        label = read_label_file(label_path, n)
        if keep is not None:
            label = label[keep]
        semantic = map_raw_labels(label & 0xFFFF, lut, str(label_path))
        inst_raw = (label >> 16).astype(np.int64)
        instance = np.where((inst_raw > 0) & (semantic >= 0), (semantic << 16) | inst_raw, -1)
    else:
        labelled_seqs = resolve_split("train+val", cfg)
        if seq in labelled_seqs:
            raise ValueError(
                f"{label_path} not found: sequence {seq} belongs to the labelled train/valid split "
                f"{list(labelled_seqs)} of the config (partial download? the labels are a separate "
                f"archive, data_odometry_labels.zip)"
            )
        semantic = np.full(n, -1, dtype=np.int64)
        instance = np.full(n, -1, dtype=np.int64)
        if keep is not None:
            semantic, instance = semantic[keep], instance[keep]
    dropped = [] if keep is None else np.flatnonzero(~keep).tolist()
    if keep is not None:
        pts = pts[keep]
    remission = normalise_features(pts[:, 3:4], bin_path, kind="remission", expected=1.0)
    return Scene(
        name=check_scene_name(scene_id),
        dataset=DATASET,
        coords=np.ascontiguousarray(pts[:, :3], dtype=np.float32),
        feats=np.ascontiguousarray(remission, dtype=np.float32),
        semantic=semantic,
        instance=instance.astype(np.int64),
        source=str(bin_path),
        extra={
            "sequence": seq,
            "frame": frame,
            "has_labels": label_path.is_file(),
            "config": BUILTIN if cfg_path is None else str(cfg_path.resolve()),
            "dropped_points": dropped,
        },
    )
