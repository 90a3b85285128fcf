"""ScanNet v2 reader.

Raw layout (``RAW`` = the ScanNet download folder)::

    RAW/scans/<scene>/<scene>_vh_clean_2.ply
        mesh, vertex x y z red green blue [alpha]
    RAW/scans/<scene>/<scene>_vh_clean_2.0.010000.segs.json
        {"segIndices": [segment id per vertex]}
    RAW/scans/<scene>/<scene>.aggregation.json
        {"segGroups": [{"id", "objectId", "segments", "label"}],
         "segmentsFile": "scannet.<scene>_vh_clean_2.0.010000.segs.json"}
    RAW/scans/<scene>/<scene>.txt
        optional, "axisAlignment = 16 numbers"
    RAW/scans_test/<scene>/<scene>_vh_clean_2.ply
        test scenes: no aggregation -> labels -1
    RAW/scannetv2-labels.combined.tsv
        (or RAW/meta/, or --scannet-label-map FILE)
    RAW/scannetv2_{train,val,test}.txt
        (or RAW/meta/, RAW/Tasks/Benchmark/, or --scannet-split-dir DIR)

Points are the mesh vertices. A vertex takes the label of the segGroup holding its segment
(raw category -> ``nyu40id`` via the tsv -> one of the 20 benchmark classes, else -1) and
instance id = the group's ``objectId`` (``id`` when absent). When a segment is claimed by
several groups the LAST group in the file wins (as ScanNet's own export scripts do);
the number of such segments is recorded in ``extra['overlapping_segments']``. Vertices in
no group get semantic and instance -1. Raw categories missing from the tsv map to -1 with
a warning.

The high-resolution ``<scene>_vh_clean.aggregation.json`` refers to the segments of the
high-resolution mesh (``_vh_clean.segs.json``), not to those of ``_vh_clean_2``: it is never
used, and an aggregation whose ``segmentsFile`` names another segs file is refused. A scene
under ``scans/`` without its aggregation is an error (a partial download would otherwise
turn it silently into an unlabelled scene); only ``scans_test/`` scenes are unlabelled.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.data.classes import SCANNET_NYU40_IDS
from pcseg.data.scene import Scene
from pcseg.io.ply import check_ply_header
from pcseg.readers.common import (
    ReaderOptions,
    SplitError,
    check_points,
    check_scene_name,
    expand_split,
    first_existing,
    normalise_features,
    warn,
)

DATASET = "scannet"
LABEL_MAP_NAME = "scannetv2-labels.combined.tsv"

#: Split name -> official list files (1201 / 312 / 100 scenes). :func:`list_scenes` also
#: accepts ``trainval`` (train + val), ``all`` (train + val + test; every scene folder on
#: disk when the lists are absent) and ``+`` joins.
SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("scannetv2_train.txt",),
    "val": ("scannetv2_val.txt",),
    "test": ("scannetv2_test.txt",),
}
_ALL_SPLITS: dict[str, tuple[str, ...]] = {
    **SPLITS,
    "trainval": SPLITS["train"] + SPLITS["val"],
    "all": SPLITS["train"] + SPLITS["val"] + SPLITS["test"],
}

_SCENE_RE = re.compile(r"^scene\d{4}_\d{2}$")

#: NYU40 id (0..40) -> benchmark class index, or -1.
NYU40_TO_INDEX = np.full(41, -1, dtype=np.int64)
NYU40_TO_INDEX[list(SCANNET_NYU40_IDS)] = np.arange(len(SCANNET_NYU40_IDS))


# --------------------------------------------------------------------------- label map


_LINE_BREAK = re.compile(r"\r*\n|\r")


def _split_lines(text: str) -> list[str]:
    """Physical lines of ``text``: LF, CRLF, CRCRLF and bare CR all end a line (also mixed)."""
    return _LINE_BREAK.split(text)


def _unquote(cell: str) -> str:
    """A tsv cell without surrounding spaces and, if it is wrapped in double quotes, without
    them (``""`` inside becomes ``"``), as spreadsheet exports write it."""
    cell = cell.strip()
    if len(cell) >= 2 and cell[0] == cell[-1] == '"':
        cell = cell[1:-1].replace('""', '"').strip()
    return cell


def read_label_table(path: Path) -> list[dict[str, str]]:
    """Read ``scannetv2-labels.combined.tsv`` as a list of rows {column: stripped cell}.

    Accepts LF, CRLF, ``\\r\\r\\n`` and CR line endings (also mixed in one file), a UTF-8
    BOM, blank lines, cells with leading/trailing spaces or wrapped in double quotes, and
    rows whose trailing empty cells were dropped (they are padded with ``''``). A row with
    more non-empty cells than the header raises ``ValueError`` naming the file and line.
    Every returned row also has ``'_line'`` (1-based physical line number).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read ScanNet label table {path}: {e}") from e
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for lineno, line in enumerate(_split_lines(text), start=1):
        if not line.strip():
            continue
        cells = [_unquote(c) for c in line.split("\t")]
        if header is None:
            header = cells
            continue
        if len(cells) > len(header):
            extra = cells[len(header) :]
            if any(extra):
                raise ValueError(
                    f"{path}:{lineno}: {len(cells)} tab-separated cells, header has {len(header)}"
                )
            cells = cells[: len(header)]
        cells += [""] * (len(header) - len(cells))
        row = dict(zip(header, cells))
        row["_line"] = str(lineno)
        rows.append(row)
    if header is None:
        raise ValueError(f"{path}: empty label table")
    return rows


def read_label_map(path: Path, key: str = "raw_category", value: str = "nyu40id") -> dict[str, int]:
    """``raw_category -> nyu40id`` (or other columns) from the label tsv.

    Raises ``ValueError`` naming file and line for a missing column, a non-integer value,
    or one key mapped to two different values. A key repeated with the same value is fine.
    """
    rows = read_label_table(path)
    if rows and (key not in rows[0] or value not in rows[0]):
        raise ValueError(
            f"{path}: columns {key!r} and {value!r} required, header is {list(rows[0])[:-1]}"
        )
    out: dict[str, int] = {}
    first_line: dict[str, str] = {}
    for row in rows:
        k, v = row[key], row[value]
        try:
            iv = int(v)
        except ValueError:
            raise ValueError(f"{path}:{row['_line']}: {value} {v!r} is not an integer") from None
        if k in out and out[k] != iv:
            raise ValueError(
                f"{path}:{row['_line']}: {key} {k!r} maps to {iv}, but line "
                f"{first_line[k]} maps it to {out[k]}"
            )
        out.setdefault(k, iv)
        first_line.setdefault(k, row["_line"])
    return out


@functools.lru_cache(maxsize=8)
def _cached_label_map(path: str, mtime_ns: int) -> dict[str, int]:
    return read_label_map(Path(path))


def find_label_map(raw: Path, label_map_file: Path | None = None) -> Path:
    """Locate the label tsv: ``label_map_file``, else RAW/ or RAW/meta/."""
    if label_map_file is not None:
        if not Path(label_map_file).is_file():
            raise ValueError(
                f"ScanNet label map {label_map_file} (--scannet-label-map) not "
                f"found; expected the file {LABEL_MAP_NAME}"
            )
        return Path(label_map_file)
    raw = Path(raw)
    cands = [raw / LABEL_MAP_NAME, raw / "meta" / LABEL_MAP_NAME]
    found = first_existing(cands)
    if found is None:
        raise ValueError(
            f"ScanNet label map {LABEL_MAP_NAME} not found in {[str(c) for c in cands]}; "
            "give its path with `pcseg prepare scannet --scannet-label-map FILE`"
        )
    return found


def raw_category_to_index(label_map: Mapping[str, int]) -> dict[str, int]:
    """raw_category -> benchmark class index (0..19) or -1, through NYU40 ids."""
    out = {}
    for k, nyu in label_map.items():
        out[k] = int(NYU40_TO_INDEX[nyu]) if 0 <= nyu <= 40 else -1
    return out


# --------------------------------------------------------------------------- splits


def find_split_file(raw: Path, name: str, split_dir: Path | None = None) -> Path | None:
    """Locate an official split list ``name`` in split_dir, RAW, RAW/meta or RAW/Tasks/Benchmark."""
    raw = Path(raw)
    dirs = [Path(split_dir)] if split_dir is not None else []
    dirs += [raw, raw / "meta", raw / "Tasks" / "Benchmark"]
    return first_existing(d / name for d in dirs)


def read_split_file(path: Path) -> list[str]:
    """Scene ids of an official split list (one per line; any line ending).

    A line that is not a scene id is reported (:class:`DataWarning` naming the file and
    line) and only that entry skipped; a list with no valid entry raises
    :class:`~pcseg.readers.common.SplitError`.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as e:
        raise SplitError(f"cannot read ScanNet split list {path}: {e}") from e
    out = []
    bad = 0
    for lineno, line in enumerate(_split_lines(text), start=1):
        s = line.strip()
        if not s:
            continue
        if not _SCENE_RE.match(s):
            bad += 1
            warn(
                f"{path}:{lineno}: {s[:60]!r} is not a ScanNet scene id (expected "
                f"sceneXXXX_YY); entry skipped"
            )
            continue
        out.append(s)
    if not out:
        raise SplitError(
            f"{path}: no valid scene id (sceneXXXX_YY) on any line"
            f"{f' ({bad} bad lines)' if bad else ' (empty file)'}"
        )
    return out


def scene_dir(raw: Path, scene_id: str) -> Path | None:
    """``RAW/scans/<scene>`` or ``RAW/scans_test/<scene>``, whichever exists (else None)."""
    raw = Path(raw)
    return first_existing([raw / "scans" / scene_id, raw / "scans_test" / scene_id])


class Options(ReaderOptions):
    """Where the ScanNet side files are and what :func:`read_scene` does beyond reading
    (``pcseg prepare scannet`` flags)."""

    #: folder of ``scannetv2_{train,val,test}.txt`` when not in RAW, RAW/meta or
    #: RAW/Tasks/Benchmark
    split_dir: Path | None = None
    #: the label tsv (scannetv2-labels.combined.tsv) when not in RAW/ or RAW/meta/
    label_map_file: Path | None = None
    #: apply the scene's axisAlignment matrix (from ``<scene>.txt``) to coords
    align: bool = False


def list_scenes(raw: Path, split: str, options: Options | None = None) -> list[str]:
    """Scene ids of ``split`` (:data:`SPLITS`, ``trainval``, ``all``, ``+`` joins) present on
    disk; the split lists are looked up in ``options.split_dir`` first.

    The official lists define the splits; listed scenes absent under RAW/scans and
    RAW/scans_test are skipped with one warning. Without list files, ``all`` falls back
    to every scene folder on disk; other splits raise ``ValueError``.
    """
    split_dir = (Options() if options is None else options).split_dir
    raw = Path(raw)
    files = expand_split(split, _ALL_SPLITS, "ScanNet")
    listed: list[str] = []
    for name in files:
        path = find_split_file(raw, name, split_dir)
        if path is None:
            if split == "all":
                return _scenes_on_disk(raw)
            raise ValueError(
                f"ScanNet split list {name} not found in {split_dir or ''} {raw}, {raw / 'meta'}, "
                f"{raw / 'Tasks' / 'Benchmark'}; give the folder holding it with "
                f"`pcseg prepare scannet --scannet-split-dir DIR`"
            )
        listed += [s for s in read_split_file(path) if s not in listed]
    present = [s for s in listed if scene_dir(raw, s) is not None]
    if len(present) < len(listed):
        miss = [s for s in listed if s not in set(present)]
        warn(
            f"{raw}: {len(miss)} of {len(listed)} scenes of split {split!r} not on disk "
            f"(e.g. {miss[:3]}); skipped"
        )
    return [check_scene_name(s) for s in present]


def _scenes_on_disk(raw: Path) -> list[str]:
    out = []
    for sub in ("scans", "scans_test"):
        d = raw / sub
        if d.is_dir():
            out += sorted(p.name for p in d.iterdir() if p.is_dir() and _SCENE_RE.match(p.name))
    if not out:
        raise ValueError(f"{raw}: no scene folders under scans/ or scans_test/")
    return out


# --------------------------------------------------------------------------- scenes


def read_mesh_vertices(
    path: Path, nonfinite: str = "refuse"
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """PLY vertices -> (xyz (V,3) float32, rgb (V,3) float32 in [0,1], keep mask or None).

    Points are checked by :func:`~pcseg.readers.common.check_points` (empty mesh and
    NaN/inf refused, or the latter dropped: ``keep`` is then the (V,) mask of the
    vertices kept, in file order, and xyz / rgb hold only those).

    Colours go through :func:`~pcseg.readers.common.normalise_features`: integer
    colours are 0-255, float colours should be 0-1; floats stored as 0-255 are divided by
    255 with a note (they are not kept unscaled).
    """
    from plyfile import PlyData

    check_ply_header(path)  # hostile element counts named before plyfile allocates
    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"].data
    except Exception as e:  # plyfile raises several types on bad files
        raise ValueError(f"cannot read PLY mesh {path}: {e}") from e
    names = v.dtype.names or ()
    need = ("x", "y", "z", "red", "green", "blue")
    missing = [n for n in need if n not in names]
    if missing:
        raise ValueError(f"{path}: vertex properties {missing} missing (have {list(names)})")
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    rgb = np.stack([v["red"], v["green"], v["blue"]], axis=1)
    keep = check_points(xyz, path, feats=rgb, nonfinite=nonfinite)
    if keep is not None:
        xyz, rgb = xyz[keep], rgb[keep]
    expected = 255.0 if np.issubdtype(rgb.dtype, np.integer) else 1.0
    return xyz, normalise_features(rgb, path, kind="colour", expected=expected), keep


def _load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot parse JSON {path}: {e}") from e


def read_axis_alignment(path: Path) -> list[float] | None:
    """``axisAlignment = m00 .. m33`` from ``<scene>.txt`` (row-major 4x4), or None."""
    if not Path(path).is_file():
        return None
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.strip().startswith("axisAlignment"):
            vals = line.split("=", 1)[1].split()
            if len(vals) != 16:
                raise ValueError(f"{path}: axisAlignment has {len(vals)} numbers, expected 16")
            return [float(x) for x in vals]
    return None


def labels_from_aggregation(
    seg_indices: np.ndarray,
    seg_groups: list[dict[str, Any]],
    category_to_index: Mapping[str, int],
    source: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-vertex (semantic, instance, overlapping segment count) from segments + groups.

    ``seg_indices`` (V,) int64 segment id per vertex; each group needs ``segments`` and
    ``label``; instance = ``objectId`` (or ``id``). Later groups override earlier ones.
    """
    seg_sem: dict[int, int] = {}
    seg_inst: dict[int, int] = {}
    overlaps = 0
    unknown: set[str] = set()
    for gi, g in enumerate(seg_groups):
        try:
            label = str(g["label"]).strip()
            segs = g["segments"]
            oid = g.get("objectId", g.get("id"))
            if oid is None:
                raise KeyError("objectId/id")
            oid = int(oid)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: segGroups[{gi}] lacks a valid {e}") from None
        if label in category_to_index:
            cls = category_to_index[label]
        else:
            unknown.add(label)
            cls = -1
        for s in segs:
            s = int(s)
            if s in seg_inst:
                overlaps += 1
            seg_sem[s] = cls
            seg_inst[s] = oid
    if unknown:
        warn(f"{source}: raw categories {sorted(unknown)} not in the label map; labelled -1")
    uniq, inv = np.unique(seg_indices, return_inverse=True)
    sem_u = np.array([seg_sem.get(int(s), -1) for s in uniq], dtype=np.int64)
    inst_u = np.array([seg_inst.get(int(s), -1) for s in uniq], dtype=np.int64)
    return sem_u[inv], inst_u[inv], overlaps


def _scene_labels(
    raw: Path, d: Path, scene_id: str, ply_name: str, n: int, opts: Options
) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """``(semantic, instance, has_labels, overlapping segments)`` of the ``n`` mesh
    vertices of scene ``scene_id`` in folder ``d`` (-1 everywhere for an unlabelled
    scans_test/ scene); raises ValueError naming the file that is missing or does not match
    the mesh ``ply_name``."""
    agg = d / f"{scene_id}.aggregation.json"
    segs_path = d / f"{scene_id}_vh_clean_2.0.010000.segs.json"
    if not agg.is_file():
        if d.parent.name == "scans":
            hint = (
                f"; {scene_id}_vh_clean.aggregation.json annotates the high-resolution "
                f"mesh and cannot label {ply_name}"
                if (d / f"{scene_id}_vh_clean.aggregation.json").is_file()
                else ""
            )
            raise ValueError(
                f"{agg} not found: every scene under scans/ is annotated "
                f"(partial download?){hint}; unlabelled scenes belong in scans_test/"
            )
        return np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64), False, 0
    if not segs_path.is_file():
        raise ValueError(f"{segs_path} not found (needed with {agg.name})")
    segs = _load_json(segs_path)
    if not isinstance(segs, dict) or "segIndices" not in segs:
        raise ValueError(f"{segs_path}: no 'segIndices' key")
    seg_indices = np.asarray(segs["segIndices"], dtype=np.int64)
    if seg_indices.shape != (n,):
        raise ValueError(
            f"{segs_path}: {seg_indices.shape[0] if seg_indices.ndim else 0} segIndices, "
            f"mesh {ply_name} has {n} vertices"
        )
    groups = _load_json(agg)
    if not isinstance(groups, dict) or "segGroups" not in groups:
        raise ValueError(f"{agg}: no 'segGroups' key")
    seg_file = groups.get("segmentsFile")
    if seg_file is not None and not str(seg_file).endswith(segs_path.name):
        raise ValueError(
            f"{agg}: segmentsFile {seg_file!r} does not match {segs_path.name}: "
            f"its segment ids refer to another mesh"
        )
    tsv = find_label_map(raw, opts.label_map_file)
    label_map = _cached_label_map(str(tsv.resolve()), os.stat(tsv).st_mtime_ns)
    semantic, instance, overlaps = labels_from_aggregation(
        seg_indices, groups["segGroups"], raw_category_to_index(label_map), str(agg)
    )
    if overlaps:
        warn(f"{agg}: {overlaps} segments belong to several segGroups; the last group wins")
    return semantic, instance, True, overlaps


def read_scene(raw: Path, scene_id: str, options: Options | None = None) -> Scene:
    """Read one ScanNet scan as a :class:`Scene` (points = mesh vertices, in file order).

    Args:
        raw: the ScanNet folder (layout in the module docstring).
        scene_id: ``sceneXXXX_YY``.
        options: :class:`Options` (None: the defaults): ``label_map_file``, ``align``;
            ``nonfinite``: NaN/inf vertices, ``'refuse'`` or ``'drop'``
            (:func:`~pcseg.readers.common.check_points`; an empty mesh is always refused).
            Dropped vertices are listed in ``extra['dropped_points']``.

    Returns:
        Scene: coords (V,3) float32, feats (V,3) float32 RGB in [0,1], semantic (V,) int64
        in [0,20) or -1, instance (V,) int64 objectId or -1. ``extra``: num_vertices,
        split_dir ('scans' | 'scans_test'), has_labels, axis_alignment (16 floats or None),
        aligned, overlapping_segments.
    """
    opts = Options() if options is None else options
    align, nonfinite = opts.align, opts.nonfinite
    if not _SCENE_RE.match(scene_id):
        raise ValueError(f"ScanNet scene id {scene_id!r} is not of the form sceneXXXX_YY")
    d = scene_dir(raw, scene_id)
    if d is None:
        raise ValueError(
            f"ScanNet scene {scene_id!r} not found under {Path(raw) / 'scans'} "
            f"or {Path(raw) / 'scans_test'}"
        )
    ply = d / f"{scene_id}_vh_clean_2.ply"
    if not ply.is_file():
        raise ValueError(f"{ply} not found")
    xyz, rgb, keep = read_mesh_vertices(ply, nonfinite)
    n = len(xyz) if keep is None else len(keep)  # vertices in the file
    semantic, instance, has_agg, overlaps = _scene_labels(raw, d, scene_id, ply.name, n, opts)
    dropped: list[int] = []
    if keep is not None:
        dropped = np.flatnonzero(~keep).tolist()
        semantic, instance = semantic[keep], instance[keep]
    axis = read_axis_alignment(d / f"{scene_id}.txt")
    if align:
        if axis is None:
            raise ValueError(
                f"{scene_id}: align=True but no axisAlignment in {d / (scene_id + '.txt')}"
            )
        m = np.asarray(axis, dtype=np.float64).reshape(4, 4)
        xyz = (xyz.astype(np.float64) @ m[:3, :3].T + m[:3, 3]).astype(np.float32)
    return Scene(
        name=check_scene_name(scene_id),
        dataset=DATASET,
        coords=np.ascontiguousarray(xyz, dtype=np.float32),
        feats=np.ascontiguousarray(rgb, dtype=np.float32),
        semantic=semantic,
        instance=instance,
        source=str(d),
        extra={
            "num_vertices": int(n),
            "split_dir": d.parent.name,
            "has_labels": has_agg,
            "axis_alignment": axis,
            "aligned": bool(align),
            "overlapping_segments": int(overlaps),
            "dropped_points": dropped,
        },
    )


# --------------------------------------------------------------------------- limited annotations


def load_limited_annotation(
    path: Path, num_vertices: Mapping[str, int] | None = None, *, trusted: bool = False
) -> dict[str, np.ndarray]:
    """Import an official ScanNet data-efficient ("limited annotations") point file.

    The file ``torch.load``s to ``{scene_name: vertex indices}`` (numpy array, tensor or
    list); ``.json`` / ``.npz`` work too (:func:`pcseg.data.weak_labels.read_index_mapping`).
    Args: ``num_vertices`` maps scene -> vertex count to check indices are in range (scenes
    absent from it are only checked for sign); ``trusted=True`` allows a full pickle load
    for files the safe loader rejects.

    Returns {scene: sorted unique int64 (K,) vertex indices}. Raises ``ValueError`` naming
    the file and scene for a wrong container, a key that is not a ScanNet scene id,
    non-integer or non-1-D values, negative or out-of-range indices. Duplicated indices
    are dropped with a warning.
    """
    from pcseg.data.weak_labels import import_indices, read_index_mapping

    path = Path(path)
    mapping = read_index_mapping(path, trusted)
    for scene, idx in mapping.items():
        if not isinstance(scene, str) or not _SCENE_RE.match(scene):
            raise ValueError(f"{path}: key {scene!r} is not a ScanNet scene id")
        if np.ndim(idx) == 1 and len(idx):
            dups = len(idx) - len(np.unique(np.asarray(idx)))
            if dups:
                warn(f"{path}: {scene}: {dups} duplicated vertex indices dropped")
    try:
        return import_indices(mapping, num_vertices)
    except ValueError as e:
        raise ValueError(f"limited-annotation file {path}: {e}") from e
