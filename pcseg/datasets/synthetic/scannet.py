"""Synthetic ScanNet v2 scenes: small meshed rooms with over-segmentation, ``segs.json``,
``aggregation.json``, axis alignment, split lists and a label tsv."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.data.classes import SCANNET_NYU40_IDS
from pcseg.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

TSV_HEADER: tuple[str, ...] = (
    "id",
    "raw_category",
    "category",
    "count",
    "nyu40id",
    "eigen13id",
    "nyuClass",
    "nyu40class",
    "eigen13class",
    "ModelNet40",
    "ModelNet10",
    "ShapeNetCore55",
    "synsetoffset",
    "wnsynsetid",
    "wnsynsetkey",
    "mpcat40",
    "mpcat40index",
)
#: raw_category -> (category, nyu40id, nyu40class) of the synthetic scenes.
SCANNET_CATEGORIES: dict[str, tuple[str, int, str]] = {
    "wall": ("wall", 1, "wall"),
    "floor": ("floor", 2, "floor"),
    "kitchen cabinet": ("kitchen cabinet", 3, "cabinet"),
    "chair": ("chair", 5, "chair"),
    "office chair": ("office chair", 5, "chair"),
    "table": ("table", 7, "table"),
    "door": ("door", 8, "door"),
    "bookshelf": ("bookshelf", 10, "bookshelf"),
    "desk": ("desk", 14, "desk"),
    "ceiling": ("ceiling", 22, "ceiling"),
    "trash can": ("trash can", 39, "otherfurniture"),
    "object": ("object", 40, "otherprop"),
}


def write_scannet_label_tsv(
    path: Path, line_ending: str = "\r\n", categories: dict[str, tuple[str, int, str]] | None = None
) -> Path:
    """Write a label tsv with the official header; ``line_ending`` '\\n', '\\r\\n' or
    '\\r\\r\\n'. One row carries trailing spaces in raw_category/category, one has its
    trailing empty cells dropped, as in copies found in the wild. Returns ``path``."""
    if line_ending not in ("\n", "\r\n", "\r\r\n"):
        raise ValueError(f"line_ending must be '\\n', '\\r\\n' or '\\r\\r\\n', got {line_ending!r}")
    cats = categories or SCANNET_CATEGORIES
    lines = ["\t".join(TSV_HEADER)]
    for i, (raw, (cat, nyu, nyucls)) in enumerate(cats.items()):
        cells = [
            str(i + 1),
            raw,
            cat,
            str(100 - i),
            str(nyu),
            "",
            cat,
            nyucls,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            nyucls,
            "",
        ]
        if raw == "office chair":
            cells[1], cells[2] = raw + " ", cat + " "
        line = "\t".join(cells)
        if raw == "trash can":
            line = line.rstrip("\t")
        lines.append(line)
    atomic_write_bytes(path, (line_ending.join(lines) + line_ending).encode("utf-8"))
    return Path(path)


@dataclass
class SyntheticScanNetScene:
    """A meshed room with its annotation and the labels a reader must produce."""

    scene_id: str
    xyz: np.ndarray  # (V,3) float32
    rgb: np.ndarray  # (V,3) uint8
    faces: np.ndarray  # (F,3) int32
    seg_indices: np.ndarray  # (V,) int64
    seg_groups: list[dict[str, Any]]
    semantic: np.ndarray  # (V,) int64 expected benchmark class or -1
    instance: np.ndarray  # (V,) int64 expected objectId or -1
    axis_alignment: list[float]


def _grid_mesh(rng: np.random.Generator, origin, u, v, spacing: float, jitter: float = 0.2):
    origin, u, v = (np.asarray(x, dtype=np.float64) for x in (origin, u, v))
    nu = max(1, int(round(np.linalg.norm(u) / spacing)))
    nv = max(1, int(round(np.linalg.norm(v) / spacing)))
    a, b = np.meshgrid(np.arange(nu + 1) / nu, np.arange(nv + 1) / nv, indexing="ij")
    a = np.clip(a + rng.uniform(-jitter, jitter, a.shape) / nu, 0, 1).ravel()
    b = np.clip(b + rng.uniform(-jitter, jitter, b.shape) / nv, 0, 1).ravel()
    verts = origin + a[:, None] * u + b[:, None] * v
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    q0, q1, q2, q3 = (
        idx[:-1, :-1].ravel(),
        idx[1:, :-1].ravel(),
        idx[1:, 1:].ravel(),
        idx[:-1, 1:].ravel(),
    )
    faces = np.concatenate([np.stack([q0, q1, q2], 1), np.stack([q0, q2, q3], 1)])
    cell = np.minimum((a * nu) // 4, 1e9).astype(np.int64) * 1000 + (b * nv // 4).astype(np.int64)
    return verts, faces, cell


def _mesh_box(rng, lo, hi, spacing, skip=()):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    dx, dy, dz = hi - lo
    ex, ey, ez = np.array([dx, 0, 0]), np.array([0, dy, 0]), np.array([0, 0, dz])
    faces = {
        "-z": (lo, ex, ey),
        "+z": (lo + ez, ex, ey),
        "-x": (lo, ey, ez),
        "+x": (lo + ex, ey, ez),
        "-y": (lo, ex, ez),
        "+y": (lo + ey, ex, ez),
    }
    return [_grid_mesh(rng, o, u, v, spacing) for k, (o, u, v) in faces.items() if k not in skip]


def make_scannet_scene(
    rng: np.random.Generator, scene_id: str, spacing: float = 0.1
) -> SyntheticScanNetScene:
    """A ~3-4 m room: floor, 4 walls, ceiling patch, door, table, desk, chairs, cabinet,
    bookshelf, trash can, an 'object' on the table, and one unannotated blob."""
    W, L, H = rng.uniform(3.0, 4.0), rng.uniform(3.0, 4.0), 2.4
    items: list[tuple[str | None, list]] = [
        ("floor", [_grid_mesh(rng, (0, 0, 0), (W, 0, 0), (0, L, 0), spacing)]),
        ("wall", [_grid_mesh(rng, (0, 0, 0), (W, 0, 0), (0, 0, H), spacing)]),
        ("wall", [_grid_mesh(rng, (W, 0, 0), (0, L, 0), (0, 0, H), spacing)]),
        ("wall", [_grid_mesh(rng, (0, L, 0), (W, 0, 0), (0, 0, H), spacing)]),
        ("wall", [_grid_mesh(rng, (0, 0, 0), (0, L, 0), (0, 0, H), spacing)]),
        ("ceiling", [_grid_mesh(rng, (0.5, 0.5, H), (1.0, 0, 0), (0, 1.0, 0), spacing)]),
        ("door", [_grid_mesh(rng, (0.5, 0.02, 0), (0.9, 0, 0), (0, 0, 2.0), spacing)]),
        ("table", _mesh_box(rng, (1.0, 1.2, 0.7), (2.2, 2.0, 0.75), spacing)),
        ("desk", _mesh_box(rng, (W - 0.8, 0.3, 0.7), (W - 0.1, 1.5, 0.75), spacing)),
        ("chair", _mesh_box(rng, (1.3, 0.6, 0.0), (1.75, 1.05, 0.9), spacing, skip=("-z",))),
        (
            "office chair",
            _mesh_box(rng, (W - 1.3, 0.6, 0.0), (W - 0.85, 1.05, 1.0), spacing, skip=("-z",)),
        ),
        (
            "kitchen cabinet",
            _mesh_box(rng, (0.05, L - 0.65, 0.0), (1.2, L - 0.05, 0.9), spacing, skip=("-z",)),
        ),
        (
            "bookshelf",
            _mesh_box(
                rng, (W - 0.4, L - 1.3, 0.0), (W - 0.05, L - 0.2, 1.9), spacing, skip=("-z",)
            ),
        ),
        ("trash can", _mesh_box(rng, (0.1, 1.5, 0.0), (0.4, 1.8, 0.5), spacing, skip=("-z",))),
        ("object", _mesh_box(rng, (1.5, 1.5, 0.75), (1.8, 1.7, 0.95), spacing, skip=("-z",))),
        (None, _mesh_box(rng, (2.4, 2.6, 0.0), (2.8, 2.9, 0.4), spacing, skip=("-z",))),
    ]
    nyu_to_idx = {nyu: i for i, nyu in enumerate(SCANNET_NYU40_IDS)}
    verts, faces, segs, sem, inst = [], [], [], [], []
    groups: list[dict[str, Any]] = []
    seg_pool = rng.permutation(200000)[:100000] + 1
    next_seg = 0
    offset = 0
    object_id = 0
    for label, parts in items:
        obj_segs: list[int] = []
        for pv, pf, cell in parts:
            _, cell_inv = np.unique(cell, return_inverse=True)
            ids = seg_pool[next_seg + cell_inv]
            next_seg += int(cell_inv.max()) + 1
            obj_segs += sorted(set(ids.tolist()))
            verts.append(pv)
            faces.append(pf + offset)
            segs.append(ids)
            offset += len(pv)
            if label is None:
                sem.append(np.full(len(pv), -1))
                inst.append(np.full(len(pv), -1))
            else:
                sem.append(np.full(len(pv), nyu_to_idx.get(SCANNET_CATEGORIES[label][1], -1)))
                inst.append(np.full(len(pv), object_id))
        if label is not None:
            groups.append(
                {"id": object_id, "objectId": object_id, "segments": obj_segs, "label": label}
            )
            object_id += 1
    order = rng.permutation(len(groups))  # groups listed in random order, as in real files
    groups = [groups[i] for i in order]
    xyz = np.concatenate(verts) + rng.normal(0, 0.003, (offset, 3))
    base = rng.integers(60, 200, 3)
    rgb = np.clip(base + rng.normal(0, 25, (offset, 3)), 0, 255).astype(np.uint8)
    yaw = rng.uniform(0, 2 * np.pi)
    c, s = math.cos(yaw), math.sin(yaw)
    axis = [
        c,
        -s,
        0.0,
        rng.uniform(-2, 2),
        s,
        c,
        0.0,
        rng.uniform(-2, 2),
        0.0,
        0.0,
        1.0,
        0.0,
        0.0,
        0.0,
        0.0,
        1.0,
    ]
    return SyntheticScanNetScene(
        scene_id,
        xyz.astype(np.float32),
        rgb,
        np.concatenate(faces).astype(np.int32),
        np.concatenate(segs).astype(np.int64),
        groups,
        np.concatenate(sem).astype(np.int64),
        np.concatenate(inst).astype(np.int64),
        axis,
    )


def write_scannet_scene(
    scene_dir: Path, scene: SyntheticScanNetScene, with_labels: bool = True
) -> Path:
    """Write ``<id>_vh_clean_2.ply`` (binary, with alpha and faces),
    ``<id>_vh_clean_2.0.010000.segs.json``, ``<id>.txt`` and, when ``with_labels``,
    ``<id>.aggregation.json`` into ``scene_dir``."""
    from plyfile import PlyData, PlyElement

    sid = scene.scene_id
    v = np.empty(
        len(scene.xyz),
        dtype=[
            ("x", "<f4"),
            ("y", "<f4"),
            ("z", "<f4"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
            ("alpha", "u1"),
        ],
    )
    v["x"], v["y"], v["z"] = scene.xyz[:, 0], scene.xyz[:, 1], scene.xyz[:, 2]
    v["red"], v["green"], v["blue"] = scene.rgb[:, 0], scene.rgb[:, 1], scene.rgb[:, 2]
    v["alpha"] = 255
    f = np.empty(len(scene.faces), dtype=[("vertex_indices", "i4", (3,))])
    f["vertex_indices"] = scene.faces
    buf = io.BytesIO()
    PlyData(
        [PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")], byte_order="<"
    ).write(buf)
    scene_dir = Path(scene_dir)
    atomic_write_bytes(scene_dir / f"{sid}_vh_clean_2.ply", buf.getvalue())
    atomic_write_json(
        scene_dir / f"{sid}_vh_clean_2.0.010000.segs.json",
        {
            "params": {
                "kThresh": "0.0001",
                "segMinVerts": "20",
                "minPoints": "750",
                "maxPoints": "30000",
                "thinThresh": "0.05",
                "flatThresh": "0.001",
                "minLength": "0.02",
                "maxLength": "1",
            },
            "sceneId": f"{sid}_vh_clean_2",
            "segIndices": scene.seg_indices.tolist(),
        },
    )
    atomic_write_text(
        scene_dir / f"{sid}.txt",
        "axisAlignment = " + " ".join(f"{x:.6f}" for x in scene.axis_alignment) + "\n"
        "colorHeight = 968\ncolorWidth = 1296\nsceneType = Office\n",
    )
    if with_labels:
        atomic_write_json(
            scene_dir / f"{sid}.aggregation.json",
            {
                "sceneId": f"scannet.{sid}",
                "appId": "Aggregator.v2",
                "segGroups": scene.seg_groups,
                "segmentsFile": f"scannet.{sid}_vh_clean_2.0.010000.segs.json",
            },
        )
    return scene_dir


def write_synthetic_scannet(
    root: Path,
    train_scenes: Sequence[str] = ("scene0000_00", "scene0001_00"),
    val_scenes: Sequence[str] = ("scene0011_00",),
    test_scenes: Sequence[str] = ("scene0707_00",),
    seed: int = 0,
    line_ending: str = "\r\n",
    spacing: float = 0.1,
) -> Path:
    """Write ScanNet-format scenes: ``root/scans/<id>/`` (train/val, labelled),
    ``root/scans_test/<id>/`` (no aggregation), ``root/scannetv2-labels.combined.tsv``
    (with ``line_ending``) and ``root/meta/scannetv2_{train,val,test}.txt``. Returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    write_scannet_label_tsv(root / "scannetv2-labels.combined.tsv", line_ending)
    for sid in list(train_scenes) + list(val_scenes):
        write_scannet_scene(root / "scans" / sid, make_scannet_scene(rng, sid, spacing))
    for sid in test_scenes:
        write_scannet_scene(
            root / "scans_test" / sid, make_scannet_scene(rng, sid, spacing), with_labels=False
        )
    for name, ids in (("train", train_scenes), ("val", val_scenes), ("test", test_scenes)):
        atomic_write_text(root / "meta" / f"scannetv2_{name}.txt", "".join(f"{s}\n" for s in ids))
    return root
