"""Synthetic raw datasets in the exact on-disk formats of S3DIS, SemanticKITTI and ScanNet v2.

They feed the demo and the reader tests: every writer knows the per-point labels it wrote,
so a reader can be checked point for point. Everything is drawn from one seed.

* :func:`write_synthetic_s3dis` -- rooms scanned like S3DIS: floor, ceiling, four walls,
  a door, windows and a board on the walls, bookcases against walls, tables with chairs
  around them, clutter on tables and floor, optionally a beam, a column and a sofa.
  Surfaces are sampled on a jittered grid (``spacing``, default 4 cm: real S3DIS is ~1 cm,
  the coarser default keeps a 4x5 m room near 60k points), occluded parts (wall behind a
  bookcase, floor under it, wall behind door/window/board) are left out, colours are
  class-typical with per-object and per-point variation, and positions carry 5 mm
  Gaussian sensor noise before rounding to millimetres as the release does.
* :func:`write_synthetic_semantickitti` -- a street (road with lane markings, kerbed
  sidewalks, terrain, parking, buildings, fences, trees, poles with signs, parked and
  moving cars, people, bicycles, bins) ray-cast with a 64-ring rotating lidar (elevation
  -24.8..+2 deg, 80 m range, return probability falling with range, 1.5 cm range noise),
  with remission from class reflectivity and incidence angle; labels carry raw ids in
  the low 16 bits and instance ids in the high 16; plus a generated ``semantic-kitti.yaml``
  with the official structure.
* :func:`write_synthetic_scannet` -- small meshed rooms with over-segmentation,
  ``segs.json``, ``aggregation.json``, ``<scene>.txt`` axis alignment, split lists and a
  label tsv in a chosen line-ending style.

CLI: ``python -m data_prep.synthetic {s3dis,semantickitti,scannet} --out DIR [--seed N]``.
"""
from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from pcseg.data.classes import S3DIS_CLASSES, SCANNET_NYU40_IDS
from pcseg.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

# =========================================================================== S3DIS

#: Base RGB of each S3DIS class (clutter draws a random colour per object).
S3DIS_COLOURS: dict[str, tuple[int, int, int]] = {
    "ceiling": (206, 205, 198),
    "floor": (116, 110, 102),
    "wall": (188, 182, 170),
    "beam": (198, 196, 188),
    "column": (180, 174, 162),
    "window": (122, 150, 176),
    "door": (146, 104, 68),
    "table": (162, 122, 82),
    "chair": (58, 58, 66),
    "sofa": (124, 56, 52),
    "bookcase": (134, 98, 62),
    "board": (226, 228, 230),
}
ROOM_TYPES: tuple[str, ...] = ("office", "conferenceRoom", "office", "lounge", "storage", "pantry")


@dataclass
class SyntheticObject:
    """One annotated S3DIS object: class name, (n,3) float64 mm-rounded points, (n,3) uint8 rgb."""

    class_name: str
    points: np.ndarray
    colors: np.ndarray


def _rect(rng: np.random.Generator, origin, u, v, spacing: float, density: float = 1.0) -> np.ndarray:
    """Jittered-grid samples of the parallelogram origin + a u + b v, a, b in [0, 1]."""
    origin, u, v = (np.asarray(x, dtype=np.float64) for x in (origin, u, v))
    step = spacing / math.sqrt(density)
    nu = max(1, int(round(np.linalg.norm(u) / step)))
    nv = max(1, int(round(np.linalg.norm(v) / step)))
    gu, gv = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a = (gu.ravel() + rng.random(gu.size)) / nu
    b = (gv.ravel() + rng.random(gv.size)) / nv
    return origin + a[:, None] * u + b[:, None] * v


def _box(rng: np.random.Generator, lo, hi, spacing: float, skip: Sequence[str] = ()) -> np.ndarray:
    """Samples of the faces of the axis-aligned box [lo, hi]; ``skip`` names faces
    ('-x', '+x', '-y', '+y', '-z', '+z') to leave out."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    dx, dy, dz = hi - lo
    ex, ey, ez = np.array([dx, 0, 0]), np.array([0, dy, 0]), np.array([0, 0, dz])
    faces = {
        "-z": (lo, ex, ey), "+z": (lo + ez, ex, ey),
        "-x": (lo, ey, ez), "+x": (lo + ex, ey, ez),
        "-y": (lo, ex, ez), "+y": (lo + ey, ex, ez),
    }
    parts = [_rect(rng, o, u, v, spacing) for k, (o, u, v) in faces.items() if k not in skip]
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def _cylinder(rng: np.random.Generator, center_xy, radius: float, z0: float, z1: float,
              spacing: float, top: bool = True) -> np.ndarray:
    """Samples of a vertical cylinder's side (and top disk)."""
    n_a = max(6, int(round(2 * math.pi * radius / spacing)))
    n_z = max(1, int(round((z1 - z0) / spacing)))
    ga, gz = np.meshgrid(np.arange(n_a), np.arange(n_z), indexing="ij")
    ang = (ga.ravel() + rng.random(ga.size)) / n_a * 2 * math.pi
    z = z0 + (gz.ravel() + rng.random(gz.size)) / n_z * (z1 - z0)
    pts = [np.stack([center_xy[0] + radius * np.cos(ang), center_xy[1] + radius * np.sin(ang), z], 1)]
    if top:
        n_t = max(1, int(math.pi * radius**2 / spacing**2))
        r = radius * np.sqrt(rng.random(n_t))
        a = rng.random(n_t) * 2 * math.pi
        pts.append(np.stack([center_xy[0] + r * np.cos(a), center_xy[1] + r * np.sin(a), np.full(n_t, z1)], 1))
    return np.concatenate(pts)


def _yaw(points: np.ndarray, yaw: float, offset) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return points @ rot.T + np.asarray(offset, dtype=np.float64)


def _colours(rng: np.random.Generator, n: int, base, obj_sigma: float = 12.0,
             point_sigma: float = 7.0) -> np.ndarray:
    """(n, 3) uint8: base + per-object offset + per-point noise and brightness."""
    c = np.asarray(base, dtype=np.float64) + rng.normal(0.0, obj_sigma, 3)
    cols = c + rng.normal(0.0, point_sigma, (n, 3))
    cols *= rng.uniform(0.94, 1.04, (n, 1))
    return np.clip(np.rint(cols), 0, 255).astype(np.uint8)


class _Wall:
    """A vertical wall of the room: local (s along, off inward, z up) -> room coordinates."""

    def __init__(self, p0, d, n, length: float):
        self.p0 = np.asarray(p0, dtype=np.float64)
        self.basis = np.stack([np.asarray(d, float), np.asarray(n, float), np.array([0.0, 0.0, 1.0])])
        self.length = length
        self.cuts: list[tuple[float, float, float, float]] = []  # (s0, s1, z0, z1) hidden
        self.used: list[tuple[float, float]] = []

    def to_room(self, local: np.ndarray) -> np.ndarray:
        return self.p0 + local @ self.basis

    def place(self, rng: np.random.Generator, width: float, margin: float = 0.25,
              tries: int = 60) -> float | None:
        """Start s of a free interval of ``width`` along the wall, or None."""
        if width + 2 * margin > self.length:
            return None
        for _ in range(tries):
            s0 = rng.uniform(margin, self.length - margin - width)
            if all(s0 + width + 0.1 <= a or s0 >= b + 0.1 for a, b in self.used):
                self.used.append((s0, s0 + width))
                return s0
        return None


def _place_any(rng: np.random.Generator, walls: list[_Wall], order, width: float,
               margin: float = 0.25) -> tuple[_Wall | None, float]:
    """Place an interval of ``width`` on the first wall of ``order`` (indices) with room."""
    for wi in order:
        s0 = walls[int(wi)].place(rng, width, margin)
        if s0 is not None:
            return walls[int(wi)], s0
    return None, 0.0


def _drop_in_rects(points: np.ndarray, rects: list[tuple[float, float, float, float]],
                   ax0: int, ax1: int) -> np.ndarray:
    keep = np.ones(len(points), dtype=bool)
    for a0, a1, b0, b1 in rects:
        keep &= ~((points[:, ax0] > a0) & (points[:, ax0] < a1) & (points[:, ax1] > b0) & (points[:, ax1] < b1))
    return points[keep]


def make_s3dis_room(
    rng: np.random.Generator,
    size: tuple[float, float, float] | None = None,
    spacing: float = 0.04,
    noise: float = 0.005,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    beam: bool | None = None,
    column: bool | None = None,
    sofa: bool | None = None,
) -> list[SyntheticObject]:
    """Generate the objects of one room (coordinates in metres, rounded to mm).

    Args:
        rng: random generator (all randomness comes from it).
        size: (width x, length y, height z) in metres; default random ~3.6-5 x 4-6 x 2.8-3.2.
        spacing: sampling step of the surfaces in metres (point density 1/spacing^2).
        noise: std of the Gaussian position noise in metres.
        origin: offset of the room's corner in area coordinates.
        beam, column, sofa: include these optional classes (None = random).

    Returns objects in generation order; the writer names them ``<class>_<k>.txt``.
    """
    W, L, H = size if size is not None else (rng.uniform(3.6, 5.0), rng.uniform(4.0, 6.0), rng.uniform(2.8, 3.2))
    beam = bool(rng.random() < 0.35) if beam is None else beam
    column = bool(rng.random() < 0.35) if column is None else column
    sofa = bool(rng.random() < 0.35) if sofa is None else sofa
    walls = [
        _Wall((0, 0, 0), (1, 0, 0), (0, 1, 0), W),
        _Wall((W, 0, 0), (0, 1, 0), (-1, 0, 0), L),
        _Wall((W, L, 0), (-1, 0, 0), (0, -1, 0), W),
        _Wall((0, L, 0), (0, -1, 0), (1, 0, 0), L),
    ]
    objs: list[tuple[str, np.ndarray, Any]] = []  # (class, room-local points, colour base)
    floor_cuts: list[tuple[float, float, float, float]] = []  # (x0, x1, y0, y1)
    ceil_cuts: list[tuple[float, float, float, float]] = []

    def footprint(pts: np.ndarray) -> tuple[float, float, float, float]:
        return (pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max())

    if column:  # in the corner x=0, y=0
        cw = rng.uniform(0.35, 0.55)
        pts = _box(rng, (0, 0, 0), (cw, cw, H), spacing, skip=("-x", "-y", "-z", "+z"))
        objs.append(("column", pts, S3DIS_COLOURS["column"]))
        walls[0].used.append((0, cw))
        walls[0].cuts.append((0, cw, 0, H))
        walls[3].used.append((L - cw, L))
        walls[3].cuts.append((L - cw, L, 0, H))
        floor_cuts.append((0, cw, 0, cw))
        ceil_cuts.append((0, cw, 0, cw))
    if beam:  # across the room along y
        xb, bw, bd = rng.uniform(1.0, W - 1.0), rng.uniform(0.25, 0.4), rng.uniform(0.3, 0.45)
        pts = _box(rng, (xb - bw / 2, 0, H - bd), (xb + bw / 2, L, H), spacing, skip=("+z", "-y", "+y"))
        objs.append(("beam", pts, S3DIS_COLOURS["beam"]))
        ceil_cuts.append((xb - bw / 2, xb + bw / 2, 0, L))

    # Door, windows, board on the walls.
    door_wall = int(rng.integers(4))
    dw, dh = rng.uniform(0.85, 1.0), rng.uniform(2.0, 2.15)
    s0 = walls[door_wall].place(rng, dw)
    if s0 is not None:
        wall = walls[door_wall]
        local = _rect(rng, (s0, 0.03, 0.0), (dw, 0, 0), (0, 0, dh), spacing)
        door_base = S3DIS_COLOURS["door"] if rng.random() < 0.7 else (150, 150, 152)
        objs.append(("door", wall.to_room(local), door_base))
        wall.cuts.append((s0, s0 + dw, 0, dh))
    window_wall = (door_wall + 2) % 4
    for _ in range(int(rng.integers(1, 3))):
        wall = walls[window_wall]
        ww, wh, sill = rng.uniform(1.0, 1.6), rng.uniform(1.1, 1.4), rng.uniform(0.8, 1.0)
        s0 = wall.place(rng, ww)
        if s0 is None:
            continue
        frame_w = 0.06
        glass = _rect(rng, (s0, 0.01, sill), (ww, 0, 0), (0, 0, wh), spacing, density=0.35)
        frame = np.concatenate([
            _rect(rng, (s0, 0.02, sill), (ww, 0, 0), (0, 0, frame_w), spacing),
            _rect(rng, (s0, 0.02, sill + wh - frame_w), (ww, 0, 0), (0, 0, frame_w), spacing),
            _rect(rng, (s0, 0.02, sill), (frame_w, 0, 0), (0, 0, wh), spacing),
            _rect(rng, (s0 + ww - frame_w, 0.02, sill), (frame_w, 0, 0), (0, 0, wh), spacing),
            _rect(rng, (s0, 0.0, sill), (ww, 0, 0), (0, 0.12, 0), spacing),  # sill
        ])
        objs.append(("window", wall.to_room(np.concatenate([glass, frame])), S3DIS_COLOURS["window"]))
        wall.cuts.append((s0, s0 + ww, sill, sill + wh))
    others = [int(w) for w in rng.permutation([w for w in range(4) if w != window_wall])]
    bw_, bh_ = rng.uniform(1.2, 2.0), rng.uniform(0.9, 1.2)
    wall, s0 = _place_any(rng, walls, others + [window_wall], bw_)
    if wall is not None:
        local = np.concatenate([
            _rect(rng, (s0, 0.015, 0.9), (bw_, 0, 0), (0, 0, bh_), spacing),
            _rect(rng, (s0, 0.0, 0.88), (bw_, 0, 0), (0, 0.06, 0), spacing),  # marker tray
        ])
        objs.append(("board", wall.to_room(local), S3DIS_COLOURS["board"]))
        wall.cuts.append((s0, s0 + bw_, 0.9, 0.9 + bh_))

    # Sofa and bookcases against walls.
    if sofa:
        sw = rng.uniform(1.6, 2.0)
        wall, s0 = _place_any(rng, walls, rng.permutation(4), sw)
        if wall is not None:
            local = np.concatenate([
                _box(rng, (s0, 0, 0), (s0 + sw, 0.85, 0.42), spacing, skip=("-z", "-y")),
                _box(rng, (s0, 0, 0.42), (s0 + sw, 0.22, 0.85), spacing, skip=("-z", "-y")),
            ])
            pts = wall.to_room(local)
            objs.append(("sofa", pts, S3DIS_COLOURS["sofa"]))
            wall.cuts.append((s0, s0 + sw, 0, 0.85))
            floor_cuts.append(footprint(pts))

    for _ in range(int(rng.integers(1, 3))):
        bw_, bd_, bh_ = rng.uniform(0.8, 1.2), rng.uniform(0.3, 0.4), rng.uniform(1.8, 2.1)
        wall, s0 = _place_any(rng, walls, rng.permutation(4), bw_, margin=0.1)
        if wall is None:
            continue
        parts = [
            _box(rng, (s0, 0, 0), (s0 + 0.02, bd_, bh_), spacing, skip=("-z",)),
            _box(rng, (s0 + bw_ - 0.02, 0, 0), (s0 + bw_, bd_, bh_), spacing, skip=("-z",)),
            _rect(rng, (s0, 0.005, 0), (bw_, 0, 0), (0, 0, bh_), spacing),  # back panel
            _rect(rng, (s0, 0, bh_), (bw_, 0, 0), (0, bd_, 0), spacing),  # top
        ]
        for z in np.arange(0.08, bh_ - 0.1, rng.uniform(0.33, 0.4)):
            parts.append(_rect(rng, (s0, 0, z), (bw_, 0, 0), (0, bd_, 0), spacing))
        pts = wall.to_room(np.concatenate(parts))
        objs.append(("bookcase", pts, S3DIS_COLOURS["bookcase"]))
        wall.cuts.append((s0, s0 + bw_, 0, bh_))
        floor_cuts.append(footprint(pts))
    # Tables with chairs around them, clutter on tables.
    n_tables = 2 if W * L > 22 and rng.random() < 0.5 else 1
    for t in range(n_tables):
        tw, td, th = rng.uniform(1.2, 1.8), rng.uniform(0.7, 0.9), rng.uniform(0.72, 0.76)
        yaw = rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.05)
        margin = min(1.3, W / 2 - 0.05)
        cx = rng.uniform(margin, W - margin)
        cy = (t + 0.5) * L / n_tables + rng.uniform(-0.2, 0.2)
        centre = (cx, cy, 0.0)
        top = _box(rng, (-tw / 2, -td / 2, th - 0.03), (tw / 2, td / 2, th), spacing)
        legs = [
            _box(rng, (sx * (tw / 2 - 0.08) - 0.025, sy * (td / 2 - 0.08) - 0.025, 0),
                 (sx * (tw / 2 - 0.08) + 0.025, sy * (td / 2 - 0.08) + 0.025, th - 0.03),
                 spacing / 2, skip=("-z", "+z"))
            for sx in (-1, 1) for sy in (-1, 1)
        ]
        objs.append(("table", _yaw(np.concatenate([top] + legs), yaw, centre), S3DIS_COLOURS["table"]))
        for side in (-1, 1):
            for k in range(int(rng.integers(1, 3))):
                x = rng.uniform(-tw / 2 + 0.3, tw / 2 - 0.3)
                y = side * (td / 2 + rng.uniform(0.25, 0.45))
                cyaw = (0.0 if side > 0 else math.pi) + rng.normal(0, 0.25)
                chair = np.concatenate([
                    _box(rng, (-0.22, -0.22, 0.42), (0.22, 0.22, 0.47), spacing),
                    _box(rng, (-0.22, 0.19, 0.47), (0.22, 0.24, 0.92), spacing),
                    *[_box(rng, (sx * 0.19 - 0.015, sy * 0.19 - 0.015, 0), (sx * 0.19 + 0.015, sy * 0.19 + 0.015, 0.42),
                           spacing / 2, skip=("-z", "+z")) for sx in (-1, 1) for sy in (-1, 1)],
                ])
                chair = _yaw(_yaw(chair, cyaw, (x, y, 0)), yaw, centre)
                objs.append(("chair", chair, S3DIS_COLOURS["chair"]))
        for _ in range(int(rng.integers(1, 4))):  # monitors, boxes, papers on the table
            ow, od, oh = rng.uniform(0.1, 0.5), rng.uniform(0.05, 0.35), rng.uniform(0.02, 0.4)
            ox, oy = rng.uniform(-tw / 2 + ow, tw / 2 - ow), rng.uniform(-td / 2 + od, td / 2 - od)
            item = _box(rng, (ox - ow / 2, oy - od / 2, th), (ox + ow / 2, oy + od / 2, th + oh), spacing, skip=("-z",))
            objs.append(("clutter", _yaw(item, yaw, centre), rng.integers(30, 230, 3)))
    for _ in range(int(rng.integers(2, 5))):  # bins, boxes, plants on the floor near walls
        wall = walls[int(rng.integers(4))]
        w = rng.uniform(0.25, 0.5)
        s0 = wall.place(rng, w, margin=0.1)
        if s0 is None:
            continue
        h = rng.uniform(0.3, 0.8)
        if rng.random() < 0.5:
            local = _cylinder(rng, (s0 + w / 2, w / 2 + 0.03), w / 2, 0.0, h, spacing)
        else:
            local = _box(rng, (s0, 0.02, 0), (s0 + w, 0.02 + w, h), spacing, skip=("-z",))
        objs.append(("clutter", wall.to_room(local), rng.integers(30, 230, 3)))

    # Structural surfaces last so that cut-outs are known.
    floor = _drop_in_rects(_rect(rng, (0, 0, 0), (W, 0, 0), (0, L, 0), spacing), floor_cuts, 0, 1)
    ceiling = _drop_in_rects(_rect(rng, (0, 0, H), (W, 0, 0), (0, L, 0), spacing), ceil_cuts, 0, 1)
    structural = [("ceiling", ceiling, S3DIS_COLOURS["ceiling"]), ("floor", floor, S3DIS_COLOURS["floor"])]
    for wall in walls:
        local = _rect(rng, (0, 0, 0), (wall.length, 0, 0), (0, 0, H), spacing)
        local = _drop_in_rects(local, wall.cuts, 0, 2)
        structural.append(("wall", wall.to_room(local), S3DIS_COLOURS["wall"]))
    objs = structural + objs

    out = []
    org = np.asarray(origin, dtype=np.float64)
    for cls, pts, base in objs:
        if len(pts) == 0:
            continue
        p = pts + rng.normal(0.0, noise, pts.shape) + org
        out.append(SyntheticObject(cls, np.round(p, 3), _colours(rng, len(p), base)))
    return out


def _format_xyzrgb(points: np.ndarray, colors: np.ndarray) -> bytes:
    buf = io.StringIO()
    data = np.concatenate([points, colors.astype(np.float64)], axis=1)
    np.savetxt(buf, data, fmt="%.3f %.3f %.3f %d %d %d")
    return buf.getvalue().encode("ascii")


def write_s3dis_room(room_dir: Path, objects: Sequence[SyntheticObject]) -> list[str]:
    """Write ``room_dir/<room>.txt`` and ``room_dir/Annotations/<class>_<k>.txt``.

    Objects are numbered per class in the given order (k = 1, 2, ...). Returns the
    annotation file names in the order of ``objects``.
    """
    room_dir = Path(room_dir)
    counters: dict[str, int] = {}
    names, blobs = [], []
    for obj in objects:
        counters[obj.class_name] = counters.get(obj.class_name, 0) + 1
        name = f"{obj.class_name}_{counters[obj.class_name]}.txt"
        blob = _format_xyzrgb(obj.points, obj.colors)
        atomic_write_bytes(room_dir / "Annotations" / name, blob)
        names.append(name)
        blobs.append(blob)
    atomic_write_bytes(room_dir / f"{room_dir.name}.txt", b"".join(blobs))
    return names


def expected_s3dis_labels(objects: Sequence[SyntheticObject], names: Sequence[str]) -> dict[str, np.ndarray]:
    """What a correct reader returns for a room written by :func:`write_s3dis_room`:
    objects concatenated in ``sorted(names)`` order; instance = that position; semantic =
    class index (``stairs`` -> clutter). Keys: coords (N,3) float64, rgb (N,3) uint8,
    semantic (N,), instance (N,) int64."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    cls_index = {c: i for i, c in enumerate(S3DIS_CLASSES)}
    cls_index["stairs"] = cls_index["clutter"]
    coords, rgb, sem, inst = [], [], [], []
    for pos, i in enumerate(order):
        o = objects[i]
        coords.append(o.points)
        rgb.append(o.colors)
        sem.append(np.full(len(o.points), cls_index[o.class_name], dtype=np.int64))
        inst.append(np.full(len(o.points), pos, dtype=np.int64))
    return {
        "coords": np.concatenate(coords), "rgb": np.concatenate(rgb),
        "semantic": np.concatenate(sem), "instance": np.concatenate(inst),
    }


def inject_s3dis_damage(room_dir: Path) -> dict[str, Any]:
    """Damage a written room the way the real release is damaged; returns what was done.

    * ``ceiling_1.txt`` line 3: the space between g and b becomes a NUL byte (repairable);
    * ``floor_1.txt`` line 5: a 0x10 byte inside the x value (``12.3\\x1045``; skipped);
    * ``wall_1.txt`` line 2: the last column is dropped (skipped);
    * ``Annotations/.DS_Store``, ``Annotations/Icon`` (non-.txt), ``wall_1 (1).txt``
      (copy of the damaged wall_1.txt) and ``copy_Room_1.txt`` (misnamed) added.

    Returns {"nul": (file, line), "garbage": (file, line), "columns": (file, line),
    "stray": [names]} with 1-based line numbers.
    """
    ann = Path(room_dir) / "Annotations"

    def edit(name: str, lineno: int, fn) -> None:
        path = ann / name
        lines = path.read_bytes().split(b"\n")
        if len(lines) <= lineno:
            raise ValueError(f"{path} has fewer than {lineno} lines; cannot inject damage")
        lines[lineno - 1] = fn(lines[lineno - 1])
        atomic_write_bytes(path, b"\n".join(lines))

    def nul(line: bytes) -> bytes:
        toks = line.split(b" ")
        return b" ".join(toks[:4]) + b" " + toks[4] + b"\x00" + toks[5]

    def garbage(line: bytes) -> bytes:
        toks = line.split(b" ")
        x = toks[0]
        cut = x.index(b".") + 2 if b"." in x and len(x) > x.index(b".") + 2 else 1
        toks[0] = x[:cut] + b"\x10" + x[cut:]
        return b" ".join(toks)

    edit("ceiling_1.txt", 3, nul)
    edit("floor_1.txt", 5, garbage)
    edit("wall_1.txt", 2, lambda line: b" ".join(line.split(b" ")[:5]))
    atomic_write_bytes(ann / ".DS_Store", b"\x00\x00\x00\x01Bud1\x00\x00\x10\x00")
    atomic_write_bytes(ann / "Icon", b"")
    atomic_write_bytes(ann / "wall_1 (1).txt", (ann / "wall_1.txt").read_bytes())
    atomic_write_bytes(ann / "copy_Room_1.txt", (ann / "wall_1.txt").read_bytes())
    return {
        "nul": ("ceiling_1.txt", 3),
        "garbage": ("floor_1.txt", 5),
        "columns": ("wall_1.txt", 2),
        "stray": [".DS_Store", "Icon", "wall_1 (1).txt", "copy_Room_1.txt"],
    }


def write_synthetic_s3dis(
    root: Path,
    num_areas: int = 3,
    rooms_per_area: int = 2,
    seed: int = 0,
    spacing: float = 0.04,
    noise: float = 0.005,
    damage: bool = False,
    alignment_angles: bool = False,
) -> Path:
    """Write a small S3DIS-format dataset under ``root`` (``root/Area_N/<room>/...``).

    Defaults: 3 areas x 2 rooms of ~4x5 m with ~40-80k points each (use Areas 1-2 to train
    and Area_3 to validate: splits ``"Area_1+Area_2"`` and ``"Area_3"``). Every room has a
    sofa, even rooms a beam and odd rooms a column, so an area of two rooms holds all 13
    classes. ``damage=True``
    applies :func:`inject_s3dis_damage` to the first room of Area_1;
    ``alignment_angles=True`` also writes ``Area_N_alignmentAngle.txt`` (non-aligned
    release style, angles 0/90/180/270; points are not rotated). Returns ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for a in range(1, num_areas + 1):
        area = f"Area_{a}"
        counts: dict[str, int] = {}
        x0 = 0.0
        angle_lines = [f"## Global alignment angle per disjoint space in {area} ##",
                       "## Disjoint Space Name Angle ##"]
        for r in range(rooms_per_area):
            rtype = ROOM_TYPES[(a + r) % len(ROOM_TYPES)] if r else "office"
            counts[rtype] = counts.get(rtype, 0) + 1
            room = f"{rtype}_{counts[rtype]}"
            size = (rng.uniform(3.6, 4.6), rng.uniform(4.0, 5.2), rng.uniform(2.8, 3.1))
            objs = make_s3dis_room(rng, size=size, spacing=spacing, noise=noise, origin=(x0, 0.0, 0.0),
                                   beam=r % 2 == 0, column=r % 2 == 1 or rooms_per_area == 1, sofa=True)
            x0 += size[0] + 0.3
            write_s3dis_room(root / area / room, objs)
            angle_lines.append(f"{room} {int(rng.choice([0, 90, 180, 270]))}")
            if damage and a == 1 and r == 0:
                inject_s3dis_damage(root / area / room)
        if alignment_angles:
            atomic_write_text(root / area / f"{area}_alignmentAngle.txt", "\n".join(angle_lines) + "\n")
    return root


# =========================================================================== SemanticKITTI

_KITTI_LABELS: dict[int, str] = {
    0: "unlabeled", 1: "outlier", 10: "car", 11: "bicycle", 13: "bus", 15: "motorcycle",
    16: "on-rails", 18: "truck", 20: "other-vehicle", 30: "person", 31: "bicyclist",
    32: "motorcyclist", 40: "road", 44: "parking", 48: "sidewalk", 49: "other-ground",
    50: "building", 51: "fence", 52: "other-structure", 60: "lane-marking", 70: "vegetation",
    71: "trunk", 72: "terrain", 80: "pole", 81: "traffic-sign", 99: "other-object",
    252: "moving-car", 253: "moving-bicyclist", 254: "moving-person",
    255: "moving-motorcyclist", 256: "moving-on-rails", 257: "moving-bus",
    258: "moving-truck", 259: "moving-other-vehicle",
}
_KITTI_LEARNING: dict[int, int] = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8,
    40: 9, 44: 10, 48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17,
    80: 18, 81: 19, 99: 0, 252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}
_KITTI_LEARNING_INV: dict[int, int] = {
    0: 0, 1: 10, 2: 11, 3: 15, 4: 18, 5: 20, 6: 30, 7: 31, 8: 32, 9: 40, 10: 44, 11: 48,
    12: 49, 13: 50, 14: 51, 15: 70, 16: 71, 17: 72, 18: 80, 19: 81,
}


def semantic_kitti_config() -> dict[str, Any]:
    """The SemanticKITTI label configuration with the official structure and ids
    (``labels``, ``color_map`` (BGR), ``learning_map``, ``learning_map_inv``,
    ``learning_ignore``, ``split``), built here, not copied from a file."""
    rng = np.random.default_rng(12345)
    colours: dict[int, list[int]] = {}
    for k in _KITTI_LABELS:
        colours[k] = [int(c) for c in rng.integers(0, 256, 3)]
    for k in range(252, 260):  # moving classes share their static class's colour
        colours[k] = colours[_KITTI_LEARNING_INV[_KITTI_LEARNING[k]]]
    return {
        "labels": dict(_KITTI_LABELS),
        "color_map": colours,
        "learning_map": dict(_KITTI_LEARNING),
        "learning_map_inv": dict(_KITTI_LEARNING_INV),
        "learning_ignore": {k: k == 0 for k in _KITTI_LEARNING_INV},
        "split": {
            "train": [0, 1, 2, 3, 4, 5, 6, 7, 9, 10],
            "valid": [8],
            "test": list(range(11, 22)),
        },
    }


def write_semantic_kitti_yaml(path: Path) -> Path:
    """Write :func:`semantic_kitti_config` as yaml to ``path`` (atomic); returns ``path``."""
    text = "# SemanticKITTI label configuration (generated by pcseg data_prep.synthetic)\n"
    text += yaml.safe_dump(semantic_kitti_config(), sort_keys=False, default_flow_style=None)
    atomic_write_text(path, text)
    return Path(path)


@dataclass
class _Prims:
    """Ray-castable primitives of a street; every primitive has raw id, instance, reflectivity."""

    box_lo: list = field(default_factory=list)
    box_hi: list = field(default_factory=list)
    box_meta: list = field(default_factory=list)
    cyl: list = field(default_factory=list)  # (cx, cy, r, z0, z1)
    cyl_meta: list = field(default_factory=list)
    sph: list = field(default_factory=list)  # (cx, cy, cz, r)
    sph_meta: list = field(default_factory=list)

    def box(self, lo, hi, raw: int, inst: int, refl: float) -> None:
        self.box_lo.append(lo)
        self.box_hi.append(hi)
        self.box_meta.append((raw, inst, refl))


@dataclass
class KittiWorld:
    """A synthetic street along +x; ground at ``ground_z`` (sensor at z = 0)."""

    prims: _Prims
    ground_z: float
    road_half: float
    sidewalk_w: float
    parking: list[tuple[float, float, float]]  # (x0, x1, sign of y side)


def make_kitti_world(rng: np.random.Generator, x_range: tuple[float, float] = (-90.0, 120.0)) -> KittiWorld:
    """Random street scene (see module docstring); instance ids count from 1."""
    g = -1.73
    rh, sw, kerb = rng.uniform(3.5, 4.5), rng.uniform(2.0, 3.0), 0.12
    x0, x1 = x_range
    p = _Prims()
    inst = 0
    for side in (-1, 1):
        ylo, yhi = sorted((side * rh, side * (rh + sw)))
        p.box((x0, ylo, g), (x1, yhi, g + kerb), 48, 0, 0.3)
    parking = []
    for side in (-1, 1):
        x = x0 + rng.uniform(0, 20)
        while x < x1:
            if rng.random() < 0.3:
                ln = rng.uniform(10, 25)
                parking.append((x, x + ln, side))
                x += ln
            x += rng.uniform(10, 40)
    for side in (-1, 1):  # buildings, with gaps holding fences / other structures
        x = x0
        while x < x1:
            ln, gap = rng.uniform(8, 25), rng.uniform(2, 12)
            y0 = rh + sw + rng.uniform(5, 10)
            depth, h = rng.uniform(8, 15), rng.uniform(5, 14)
            ylo, yhi = sorted((side * y0, side * (y0 + depth)))
            p.box((x, ylo, g), (x + ln, yhi, g + h), 50, 0, rng.uniform(0.12, 0.4))
            gx = x + ln
            if rng.random() < 0.5:
                yf = side * (rh + sw + rng.uniform(1.0, 3.0))
                p.box((gx, yf - 0.03, g), (gx + gap, yf + 0.03, g + rng.uniform(0.9, 1.6)), 51, 0, 0.35)
            elif rng.random() < 0.3:
                ys = side * (rh + sw + rng.uniform(1.0, 2.0))
                p.box((gx + 0.5, min(ys, ys + side * 1.5), g), (gx + 2.5, max(ys, ys + side * 1.5), g + 2.4), 52, 0, 0.3)
            x += ln + gap
    for side in (-1, 1):  # trees and bushes on the terrain strip
        x = x0 + rng.uniform(0, 8)
        while x < x1:
            y = side * (rh + sw + rng.uniform(1.5, 4.0))
            if rng.random() < 0.7:
                tr, th, cr = rng.uniform(0.12, 0.25), rng.uniform(1.8, 3.0), rng.uniform(1.2, 2.5)
                p.cyl.append((x, y, tr, g, g + th))
                p.cyl_meta.append((71, 0, 0.3))
                p.sph.append((x, y, g + th + 0.6 * cr, cr))
                p.sph_meta.append((70, 0, 0.45))
            else:
                br = rng.uniform(0.5, 0.9)
                p.sph.append((x, y, g + 0.3, br))
                p.sph_meta.append((70, 0, 0.45))
            x += rng.uniform(6, 14)
    for side in (-1, 1):  # poles with traffic signs, bins, people on the sidewalk
        x = x0 + rng.uniform(0, 15)
        while x < x1:
            y = side * (rh + sw - 0.3)
            ph = rng.uniform(4.0, 7.0)
            p.cyl.append((x, y, 0.08, g + kerb, g + ph))
            p.cyl_meta.append((80, 0, 0.35))
            if rng.random() < 0.6:  # sign plate 2-3 m above the ground
                zs = g + rng.uniform(2.0, 2.5)
                p.box((x - 0.03, y - 0.35, zs), (x + 0.03, y + 0.35, zs + 0.65), 81, 0, 0.9)
            x += rng.uniform(15, 30)
        x = x0 + rng.uniform(0, 10)
        while x < x1:
            y = side * (rh + rng.uniform(0.6, sw - 0.6))
            kind = rng.random()
            if kind < 0.4:
                p.box((x - 0.3, y - 0.3, g + kerb), (x + 0.3, y + 0.3, g + kerb + 1.0), 99, 0, 0.25)
            elif kind < 0.75:
                inst += 1
                raw = 254 if rng.random() < 0.3 else 30
                p.cyl.append((x, y, 0.25, g + kerb, g + kerb + rng.uniform(1.55, 1.9)))
                p.cyl_meta.append((raw, inst, 0.3))
            else:
                inst += 1
                p.box((x - 0.85, y - 0.2, g + kerb), (x + 0.85, y + 0.2, g + kerb + 1.0), 11, inst, 0.4)
            x += rng.uniform(8, 25)
    for side in (-1, 1):  # parked cars along the kerbs
        x = x0 + rng.uniform(0, 6)
        while x < x1:
            if rng.random() < 0.35:
                inst += 1
                big = rng.random() < 0.12
                ln, wd = (rng.uniform(5.5, 7.0), 2.1) if big else (rng.uniform(3.9, 4.6), rng.uniform(1.7, 1.9))
                raw = 20 if big else 10
                yc = side * (rh - wd / 2 - 0.25)
                refl = rng.uniform(0.1, 0.6)
                body_h = rng.uniform(0.8, 1.0)
                p.box((x, yc - wd / 2, g + 0.25), (x + ln, yc + wd / 2, g + 0.25 + body_h), raw, inst, refl)
                if big:
                    p.box((x + 0.2, yc - wd / 2, g + 0.25 + body_h), (x + ln - 0.1, yc + wd / 2, g + 2.6), raw, inst, refl)
                else:
                    p.box((x + ln * 0.25, yc - wd / 2 + 0.1, g + 0.25 + body_h),
                          (x + ln * 0.75, yc + wd / 2 - 0.1, g + 0.25 + body_h + rng.uniform(0.45, 0.6)),
                          raw, inst, refl * 0.6)
                x += ln + rng.uniform(0.8, 3.0)
            else:
                x += rng.uniform(5, 15)
    for _ in range(int(rng.integers(1, 3))):  # moving cars in the lanes
        inst += 1
        x = rng.choice([-1, 1]) * rng.uniform(15, 60)  # ahead of / behind the sensor route
        yc = rh / 2
        p.box((x, yc - 0.9, g + 0.25), (x + 4.4, yc + 0.9, g + 1.2), 252, inst, rng.uniform(0.1, 0.6))
        p.box((x + 1.1, yc - 0.8, g + 1.2), (x + 3.3, yc + 0.8, g + 1.7), 252, inst, 0.2)
    return KittiWorld(p, g, rh, sw, parking)


def _ground_raw(world: KittiWorld, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Raw id of the ground plane at (x, y): road / lane marking / parking / terrain."""
    ay = np.abs(y)
    raw = np.where(ay < world.road_half, 40, 72)
    dashes = (ay < 0.08) & (np.mod(x, 6.0) < 3.0)
    edges = (ay > world.road_half - 0.35) & (ay < world.road_half - 0.22)
    raw = np.where((dashes | edges) & (ay < world.road_half), 60, raw)
    outer = world.road_half + world.sidewalk_w
    for px0, px1, side in world.parking:
        m = (x >= px0) & (x < px1) & (np.sign(y) == side) & (ay > outer) & (ay < outer + 5.0)
        raw = np.where(m, 44, raw)
    return raw


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


class _AzimuthIndex:
    """Rays sorted by azimuth, to select the rays that can hit a primitive."""

    def __init__(self, dirs: np.ndarray):
        az = np.arctan2(dirs[:, 1], dirs[:, 0])
        self.order = np.argsort(az, kind="stable")
        self.az = az[self.order]
        self.all = np.arange(len(dirs))

    def window(self, center: float, lo: float, hi: float) -> np.ndarray:
        """Ray indices with azimuth in [center + lo, center + hi] (radians, lo <= 0 <= hi)."""
        if hi - lo >= 2 * np.pi - 1e-6:
            return self.all
        a0 = float(_wrap(center + lo))
        a1 = a0 + (hi - lo)
        i0 = np.searchsorted(self.az, a0)
        if a1 <= np.pi:
            return self.order[i0:np.searchsorted(self.az, a1, side="right")]
        return np.concatenate([self.order[i0:], self.order[:np.searchsorted(self.az, a1 - 2 * np.pi, side="right")]])


def _raycast(world: KittiWorld, origin: np.ndarray, dirs: np.ndarray, max_range: float = 80.0):
    """Nearest hit of each ray: (t, raw, inst, refl, |cos incidence|), t = inf on a miss.

    Each primitive is tested only against the rays inside its azimuth window."""
    n = len(dirs)
    best = np.full(n, np.inf)
    raw = np.zeros(n, dtype=np.int64)
    inst = np.zeros(n, dtype=np.int64)
    refl = np.zeros(n)
    cosi = np.ones(n)
    index = _AzimuthIndex(dirs)
    pad = 1e-3

    def update(idx: np.ndarray, t: np.ndarray, meta, cos: np.ndarray) -> None:
        ok = t < best[idx]
        if ok.any():
            sel = idx[ok]
            best[sel] = t[ok]
            raw[sel], inst[sel], refl[sel] = meta
            cosi[sel] = cos[ok]

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = (world.ground_z - origin[2]) / dirs[:, 2]
        t = np.where((dirs[:, 2] < 0) & (t > 0), t, np.inf)
        update(index.all, t, (-1, 0, 0.0), np.abs(dirs[:, 2]))  # raw resolved below
        p = world.prims
        for lo, hi, meta in zip(p.box_lo, p.box_hi, p.box_meta):
            lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
            if np.linalg.norm(np.clip(origin, lo, hi) - origin) > max_range:
                continue
            if lo[0] <= origin[0] <= hi[0] and lo[1] <= origin[1] <= hi[1]:
                idx = index.all
            else:
                cx, cy = (lo[0] + hi[0]) / 2 - origin[0], (lo[1] + hi[1]) / 2 - origin[1]
                c = math.atan2(cy, cx)
                corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]]) - origin[:2]
                dlt = _wrap(np.arctan2(corners[:, 1], corners[:, 0]) - c)
                idx = index.window(c, dlt.min() - pad, dlt.max() + pad)
            if idx.size == 0:
                continue
            d = dirs[idx]
            inv = 1.0 / d
            t1 = (lo - origin) * inv
            t2 = (hi - origin) * inv
            tn = np.minimum(t1, t2)
            tmin = np.maximum(np.maximum(tn[:, 0], tn[:, 1]), tn[:, 2])
            tmax = np.minimum(np.minimum(np.maximum(t1[:, 0], t2[:, 0]), np.maximum(t1[:, 1], t2[:, 1])),
                              np.maximum(t1[:, 2], t2[:, 2]))
            hit = (tmax >= tmin) & (tmin > 1e-6)
            t = np.where(hit, tmin, np.inf)
            ax = tn.argmax(axis=1)
            update(idx, t, meta, np.abs(d[np.arange(len(idx)), ax]))
        for (cx, cy, r, z0, z1), meta in zip(p.cyl, p.cyl_meta):
            dist = math.hypot(cx - origin[0], cy - origin[1])
            if dist - r > max_range:
                continue
            if dist <= r:
                idx = index.all
            else:
                half = math.asin(r / dist) + pad
                idx = index.window(math.atan2(cy - origin[1], cx - origin[0]), -half, half)
            if idx.size == 0:
                continue
            d = dirs[idx]
            ox, oy = origin[0] - cx, origin[1] - cy
            a = d[:, 0] ** 2 + d[:, 1] ** 2
            b = 2 * (ox * d[:, 0] + oy * d[:, 1])
            c = ox**2 + oy**2 - r**2
            disc = b * b - 4 * a * c
            t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            z = origin[2] + t * d[:, 2]
            hit = (disc >= 0) & (a > 0) & (t > 1e-6) & (z >= z0) & (z <= z1)
            t = np.where(hit, t, np.inf)
            nx, ny = (ox + t * d[:, 0]) / r, (oy + t * d[:, 1]) / r
            update(idx, t, meta, np.abs(nx * d[:, 0] + ny * d[:, 1]))
        for (cx, cy, cz, r), meta in zip(p.sph, p.sph_meta):
            if math.dist((cx, cy, cz), origin) - r > max_range:
                continue
            dxy = math.hypot(cx - origin[0], cy - origin[1])
            if dxy <= r:
                idx = index.all
            else:
                half = math.asin(r / dxy) + pad
                idx = index.window(math.atan2(cy - origin[1], cx - origin[0]), -half, half)
            if idx.size == 0:
                continue
            d = dirs[idx]
            oc = origin - np.array([cx, cy, cz])
            b = 2 * d @ oc
            c = oc @ oc - r * r
            disc = b * b - 4 * c
            t = (-b - np.sqrt(np.maximum(disc, 0))) / 2
            t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
            normal = (oc + np.where(np.isfinite(t), t, 0)[:, None] * d) / r
            update(idx, t, meta, np.abs((normal * d).sum(1)))
    g = raw == -1
    if g.any():
        hp = origin + best[g, None] * dirs[g]
        graw = _ground_raw(world, hp[:, 0], hp[:, 1])
        raw[g] = graw
        refl[g] = np.select([graw == 60, graw == 40, graw == 44], [0.75, 0.22, 0.25], 0.38)
    return best, raw, inst, refl, cosi


def make_kitti_scan(
    world: KittiWorld,
    sensor_xy: tuple[float, float],
    rng: np.random.Generator,
    azimuth_steps: int = 1024,
    max_range: float = 80.0,
    range_noise: float = 0.015,
    outlier_rate: float = 0.001,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one 64-ring sweep from the sensor at (x, y, 0).

    Returns (points (N,4) float32 x y z remission in the sensor frame, labels (N,) uint32
    = instance << 16 | raw semantic id).
    """
    elev = np.deg2rad(np.linspace(-24.8, 2.0, 64))
    az = (np.arange(azimuth_steps) + 0.5) / azimuth_steps * 2 * np.pi
    el_g, az_g = np.meshgrid(elev, az, indexing="ij")
    az_g = az_g + rng.normal(0, 0.3 * 2 * np.pi / azimuth_steps, az_g.shape)
    dirs = np.stack([np.cos(el_g) * np.cos(az_g), np.cos(el_g) * np.sin(az_g), np.sin(el_g)], -1).reshape(-1, 3)
    origin = np.array([sensor_xy[0], sensor_xy[1], 0.0])
    t, raw, inst, refl, cosi = _raycast(world, origin, dirs, max_range)
    keep_p = 0.98 - 0.5 * (np.minimum(t, max_range) / max_range) ** 2
    keep = (t > 2.0) & (t < max_range) & (rng.random(len(t)) < keep_p * (0.3 + 0.7 * np.sqrt(cosi)))
    t, raw, inst, refl, cosi, dirs = t[keep], raw[keep], inst[keep], refl[keep], cosi[keep], dirs[keep]
    t = t + rng.normal(0, range_noise, len(t))
    out = rng.random(len(t)) < outlier_rate
    t[out] *= rng.uniform(0.2, 0.8, out.sum())
    raw[out], inst[out] = 1, 0
    rem = refl * (0.35 + 0.65 * cosi) * (1.0 - 0.25 * t / max_range) + rng.normal(0, 0.03, len(t))
    rem = np.round(np.clip(rem, 0.0, 0.99), 2)
    xyz = t[:, None] * dirs
    pts = np.concatenate([xyz, rem[:, None]], axis=1).astype(np.float32)
    labels = ((inst.astype(np.uint32) << np.uint32(16)) | raw.astype(np.uint32)).astype(np.uint32)
    return pts, labels


def write_synthetic_semantickitti(
    root: Path,
    sequences: Sequence[str] = ("00", "08"),
    scans_per_sequence: int = 4,
    seed: int = 0,
    azimuth_steps: int = 1024,
    step: float = 1.5,
    labelled: bool | None = None,
) -> Path:
    """Write ``root/dataset/sequences/XX/{velodyne,labels}/NNNNNN.{bin,label}`` and
    ``root/semantic-kitti.yaml``. Each sequence is its own street; scan k has the sensor
    at x = k * ``step`` metres. ``labelled=None`` writes labels except for the official
    test sequences (11-21). Returns ``root``.
    """
    root = Path(root)
    write_semantic_kitti_yaml(root / "semantic-kitti.yaml")
    for seq in sequences:
        seq = f"{int(seq):02d}"
        rng = np.random.default_rng([seed, int(seq)])
        world = make_kitti_world(rng)
        with_labels = (int(seq) < 11) if labelled is None else labelled
        base = root / "dataset" / "sequences" / seq
        for k in range(scans_per_sequence):
            pts, labels = make_kitti_scan(world, (k * step, rng.normal(0, 0.1)), rng, azimuth_steps=azimuth_steps)
            atomic_write_bytes(base / "velodyne" / f"{k:06d}.bin", pts.astype("<f4").tobytes())
            if with_labels:
                atomic_write_bytes(base / "labels" / f"{k:06d}.label", labels.astype("<u4").tobytes())
    return root


# =========================================================================== ScanNet

TSV_HEADER: tuple[str, ...] = (
    "id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass",
    "nyu40class", "eigen13class", "ModelNet40", "ModelNet10", "ShapeNetCore55",
    "synsetoffset", "wnsynsetid", "wnsynsetkey", "mpcat40", "mpcat40index",
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


def write_scannet_label_tsv(path: Path, line_ending: str = "\r\n",
                            categories: dict[str, tuple[str, int, str]] | None = None) -> Path:
    """Write a label tsv with the official header; ``line_ending`` '\\n', '\\r\\n' or
    '\\r\\r\\n'. One row carries trailing spaces in raw_category/category, one has its
    trailing empty cells dropped, as in copies found in the wild. Returns ``path``."""
    if line_ending not in ("\n", "\r\n", "\r\r\n"):
        raise ValueError(f"line_ending must be '\\n', '\\r\\n' or '\\r\\r\\n', got {line_ending!r}")
    cats = categories or SCANNET_CATEGORIES
    lines = ["\t".join(TSV_HEADER)]
    for i, (raw, (cat, nyu, nyucls)) in enumerate(cats.items()):
        cells = [str(i + 1), raw, cat, str(100 - i), str(nyu), "", cat, nyucls, "", "", "", "", "", "", "", nyucls, ""]
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
    q0, q1, q2, q3 = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([q0, q1, q2], 1), np.stack([q0, q2, q3], 1)])
    cell = (np.minimum((a * nu) // 4, 1e9).astype(np.int64) * 1000 + (b * nv // 4).astype(np.int64))
    return verts, faces, cell


def _mesh_box(rng, lo, hi, spacing, skip=()):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    dx, dy, dz = hi - lo
    ex, ey, ez = np.array([dx, 0, 0]), np.array([0, dy, 0]), np.array([0, 0, dz])
    faces = {"-z": (lo, ex, ey), "+z": (lo + ez, ex, ey), "-x": (lo, ey, ez), "+x": (lo + ex, ey, ez),
             "-y": (lo, ex, ez), "+y": (lo + ey, ex, ez)}
    return [_grid_mesh(rng, o, u, v, spacing) for k, (o, u, v) in faces.items() if k not in skip]


def make_scannet_scene(rng: np.random.Generator, scene_id: str, spacing: float = 0.1) -> SyntheticScanNetScene:
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
        ("office chair", _mesh_box(rng, (W - 1.3, 0.6, 0.0), (W - 0.85, 1.05, 1.0), spacing, skip=("-z",))),
        ("kitchen cabinet", _mesh_box(rng, (0.05, L - 0.65, 0.0), (1.2, L - 0.05, 0.9), spacing, skip=("-z",))),
        ("bookshelf", _mesh_box(rng, (W - 0.4, L - 1.3, 0.0), (W - 0.05, L - 0.2, 1.9), spacing, skip=("-z",))),
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
            groups.append({"id": object_id, "objectId": object_id, "segments": obj_segs, "label": label})
            object_id += 1
    order = rng.permutation(len(groups))  # groups listed in random order, as in real files
    groups = [groups[i] for i in order]
    xyz = np.concatenate(verts) + rng.normal(0, 0.003, (offset, 3))
    base = rng.integers(60, 200, 3)
    rgb = np.clip(base + rng.normal(0, 25, (offset, 3)), 0, 255).astype(np.uint8)
    yaw = rng.uniform(0, 2 * np.pi)
    c, s = math.cos(yaw), math.sin(yaw)
    axis = [c, -s, 0.0, rng.uniform(-2, 2), s, c, 0.0, rng.uniform(-2, 2), 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    return SyntheticScanNetScene(
        scene_id, xyz.astype(np.float32), rgb, np.concatenate(faces).astype(np.int32),
        np.concatenate(segs).astype(np.int64), groups, np.concatenate(sem).astype(np.int64),
        np.concatenate(inst).astype(np.int64), axis,
    )


def write_scannet_scene(scene_dir: Path, scene: SyntheticScanNetScene, with_labels: bool = True) -> Path:
    """Write ``<id>_vh_clean_2.ply`` (binary, with alpha and faces), ``<id>_vh_clean_2.0.010000.segs.json``,
    ``<id>.txt`` and, when ``with_labels``, ``<id>.aggregation.json`` into ``scene_dir``."""
    from plyfile import PlyData, PlyElement

    sid = scene.scene_id
    v = np.empty(len(scene.xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                        ("green", "u1"), ("blue", "u1"), ("alpha", "u1")])
    v["x"], v["y"], v["z"] = scene.xyz[:, 0], scene.xyz[:, 1], scene.xyz[:, 2]
    v["red"], v["green"], v["blue"] = scene.rgb[:, 0], scene.rgb[:, 1], scene.rgb[:, 2]
    v["alpha"] = 255
    f = np.empty(len(scene.faces), dtype=[("vertex_indices", "i4", (3,))])
    f["vertex_indices"] = scene.faces
    buf = io.BytesIO()
    PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")], byte_order="<").write(buf)
    scene_dir = Path(scene_dir)
    atomic_write_bytes(scene_dir / f"{sid}_vh_clean_2.ply", buf.getvalue())
    atomic_write_json(scene_dir / f"{sid}_vh_clean_2.0.010000.segs.json",
                      {"params": {"kThresh": "0.0001", "segMinVerts": "20", "minPoints": "750",
                                  "maxPoints": "30000", "thinThresh": "0.05", "flatThresh": "0.001",
                                  "minLength": "0.02", "maxLength": "1"},
                       "sceneId": f"{sid}_vh_clean_2", "segIndices": scene.seg_indices.tolist()})
    atomic_write_text(scene_dir / f"{sid}.txt",
                      "axisAlignment = " + " ".join(f"{x:.6f}" for x in scene.axis_alignment) + "\n"
                      "colorHeight = 968\ncolorWidth = 1296\nsceneType = Office\n")
    if with_labels:
        atomic_write_json(scene_dir / f"{sid}.aggregation.json",
                          {"sceneId": f"scannet.{sid}", "appId": "Aggregator.v2",
                           "segGroups": scene.seg_groups, "segmentsFile": f"scannet.{sid}_vh_clean_2.0.010000.segs.json"})
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
        write_scannet_scene(root / "scans_test" / sid, make_scannet_scene(rng, sid, spacing), with_labels=False)
    for name, ids in (("train", train_scenes), ("val", val_scenes), ("test", test_scenes)):
        atomic_write_text(root / "meta" / f"scannetv2_{name}.txt", "".join(f"{s}\n" for s in ids))
    return root


# =========================================================================== CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m data_prep.synthetic {s3dis,semantickitti,scannet} --out DIR [--seed N] ...``"""
    ap = argparse.ArgumentParser(description="Write a synthetic raw dataset.")
    ap.add_argument("dataset", choices=["s3dis", "semantickitti", "scannet"])
    ap.add_argument("--out", type=Path, required=True, help="output folder (raw dataset root)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--areas", type=int, default=3, help="s3dis: number of areas")
    ap.add_argument("--rooms-per-area", type=int, default=2, help="s3dis: rooms per area")
    ap.add_argument("--spacing", type=float, default=0.04, help="s3dis: surface sampling step (m)")
    ap.add_argument("--damage", action="store_true", help="s3dis: inject release-style damage into Area_1")
    ap.add_argument("--sequences", nargs="+", default=["00", "08"], help="semantickitti: sequences")
    ap.add_argument("--scans", type=int, default=4, help="semantickitti: scans per sequence")
    ap.add_argument("--azimuth-steps", type=int, default=1024, help="semantickitti: columns per sweep")
    args = ap.parse_args(argv)
    if args.dataset == "s3dis":
        root = write_synthetic_s3dis(args.out, args.areas, args.rooms_per_area, args.seed,
                                     spacing=args.spacing, damage=args.damage)
    elif args.dataset == "semantickitti":
        root = write_synthetic_semantickitti(args.out, args.sequences, args.scans, args.seed,
                                             azimuth_steps=args.azimuth_steps)
    else:
        root = write_synthetic_scannet(args.out, seed=args.seed)
    print(f"wrote synthetic {args.dataset} to {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
