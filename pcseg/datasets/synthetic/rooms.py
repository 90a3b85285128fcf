"""Synthetic S3DIS-format rooms (the demo data): floor, ceiling, walls, doors, windows,
boards, bookcases, tables, chairs, clutter, beams, columns, sofas; exact per-point labels."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.data.classes import S3DIS_CLASSES
from pcseg.io.atomic import atomic_write_bytes, atomic_write_text

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


def _rect(
    rng: np.random.Generator, origin, u, v, spacing: float, density: float = 1.0
) -> np.ndarray:
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
        "-z": (lo, ex, ey),
        "+z": (lo + ez, ex, ey),
        "-x": (lo, ey, ez),
        "+x": (lo + ex, ey, ez),
        "-y": (lo, ex, ez),
        "+y": (lo + ey, ex, ez),
    }
    parts = [_rect(rng, o, u, v, spacing) for k, (o, u, v) in faces.items() if k not in skip]
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def _cylinder(
    rng: np.random.Generator,
    center_xy,
    radius: float,
    z0: float,
    z1: float,
    spacing: float,
    top: bool = True,
) -> np.ndarray:
    """Samples of a vertical cylinder's side (and top disk)."""
    n_a = max(6, int(round(2 * math.pi * radius / spacing)))
    n_z = max(1, int(round((z1 - z0) / spacing)))
    ga, gz = np.meshgrid(np.arange(n_a), np.arange(n_z), indexing="ij")
    ang = (ga.ravel() + rng.random(ga.size)) / n_a * 2 * math.pi
    z = z0 + (gz.ravel() + rng.random(gz.size)) / n_z * (z1 - z0)
    pts = [
        np.stack([center_xy[0] + radius * np.cos(ang), center_xy[1] + radius * np.sin(ang), z], 1)
    ]
    if top:
        n_t = max(1, int(math.pi * radius**2 / spacing**2))
        r = radius * np.sqrt(rng.random(n_t))
        a = rng.random(n_t) * 2 * math.pi
        pts.append(
            np.stack(
                [center_xy[0] + r * np.cos(a), center_xy[1] + r * np.sin(a), np.full(n_t, z1)], 1
            )
        )
    return np.concatenate(pts)


def _yaw(points: np.ndarray, yaw: float, offset) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return points @ rot.T + np.asarray(offset, dtype=np.float64)


def _colours(
    rng: np.random.Generator, n: int, base, obj_sigma: float = 12.0, point_sigma: float = 7.0
) -> np.ndarray:
    """(n, 3) uint8: base + per-object offset + per-point noise and brightness."""
    c = np.asarray(base, dtype=np.float64) + rng.normal(0.0, obj_sigma, 3)
    cols = c + rng.normal(0.0, point_sigma, (n, 3))
    cols *= rng.uniform(0.94, 1.04, (n, 1))
    return np.clip(np.rint(cols), 0, 255).astype(np.uint8)


class _Wall:
    """A vertical wall of the room: local (s along, off inward, z up) -> room coordinates."""

    def __init__(self, p0, d, n, length: float):
        self.p0 = np.asarray(p0, dtype=np.float64)
        self.basis = np.stack(
            [np.asarray(d, float), np.asarray(n, float), np.array([0.0, 0.0, 1.0])]
        )
        self.length = length
        self.cuts: list[tuple[float, float, float, float]] = []  # (s0, s1, z0, z1) hidden
        self.used: list[tuple[float, float]] = []

    def to_room(self, local: np.ndarray) -> np.ndarray:
        return self.p0 + local @ self.basis

    def place(
        self, rng: np.random.Generator, width: float, margin: float = 0.25, tries: int = 60
    ) -> float | None:
        """Start s of a free interval of ``width`` along the wall, or None."""
        if width + 2 * margin > self.length:
            return None
        for _ in range(tries):
            s0 = rng.uniform(margin, self.length - margin - width)
            if all(s0 + width + 0.1 <= a or s0 >= b + 0.1 for a, b in self.used):
                self.used.append((s0, s0 + width))
                return s0
        return None


def _place_any(
    rng: np.random.Generator, walls: list[_Wall], order, width: float, margin: float = 0.25
) -> tuple[_Wall | None, float]:
    """Place an interval of ``width`` on the first wall of ``order`` (indices) with room."""
    for wi in order:
        s0 = walls[int(wi)].place(rng, width, margin)
        if s0 is not None:
            return walls[int(wi)], s0
    return None, 0.0


def _drop_in_rects(
    points: np.ndarray, rects: list[tuple[float, float, float, float]], ax0: int, ax1: int
) -> np.ndarray:
    keep = np.ones(len(points), dtype=bool)
    for a0, a1, b0, b1 in rects:
        keep &= ~(
            (points[:, ax0] > a0)
            & (points[:, ax0] < a1)
            & (points[:, ax1] > b0)
            & (points[:, ax1] < b1)
        )
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
    W, L, H = (
        size
        if size is not None
        else (rng.uniform(3.6, 5.0), rng.uniform(4.0, 6.0), rng.uniform(2.8, 3.2))
    )
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
        pts = _box(
            rng, (xb - bw / 2, 0, H - bd), (xb + bw / 2, L, H), spacing, skip=("+z", "-y", "+y")
        )
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
        frame = np.concatenate(
            [
                _rect(rng, (s0, 0.02, sill), (ww, 0, 0), (0, 0, frame_w), spacing),
                _rect(rng, (s0, 0.02, sill + wh - frame_w), (ww, 0, 0), (0, 0, frame_w), spacing),
                _rect(rng, (s0, 0.02, sill), (frame_w, 0, 0), (0, 0, wh), spacing),
                _rect(rng, (s0 + ww - frame_w, 0.02, sill), (frame_w, 0, 0), (0, 0, wh), spacing),
                _rect(rng, (s0, 0.0, sill), (ww, 0, 0), (0, 0.12, 0), spacing),  # sill
            ]
        )
        objs.append(
            ("window", wall.to_room(np.concatenate([glass, frame])), S3DIS_COLOURS["window"])
        )
        wall.cuts.append((s0, s0 + ww, sill, sill + wh))
    others = [int(w) for w in rng.permutation([w for w in range(4) if w != window_wall])]
    bw_, bh_ = rng.uniform(1.2, 2.0), rng.uniform(0.9, 1.2)
    wall, s0 = _place_any(rng, walls, others + [window_wall], bw_)
    if wall is not None:
        local = np.concatenate(
            [
                _rect(rng, (s0, 0.015, 0.9), (bw_, 0, 0), (0, 0, bh_), spacing),
                _rect(rng, (s0, 0.0, 0.88), (bw_, 0, 0), (0, 0.06, 0), spacing),  # marker tray
            ]
        )
        objs.append(("board", wall.to_room(local), S3DIS_COLOURS["board"]))
        wall.cuts.append((s0, s0 + bw_, 0.9, 0.9 + bh_))

    # Sofa and bookcases against walls.
    if sofa:
        sw = rng.uniform(1.6, 2.0)
        wall, s0 = _place_any(rng, walls, rng.permutation(4), sw)
        if wall is not None:
            local = np.concatenate(
                [
                    _box(rng, (s0, 0, 0), (s0 + sw, 0.85, 0.42), spacing, skip=("-z", "-y")),
                    _box(rng, (s0, 0, 0.42), (s0 + sw, 0.22, 0.85), spacing, skip=("-z", "-y")),
                ]
            )
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
            _box(
                rng,
                (sx * (tw / 2 - 0.08) - 0.025, sy * (td / 2 - 0.08) - 0.025, 0),
                (sx * (tw / 2 - 0.08) + 0.025, sy * (td / 2 - 0.08) + 0.025, th - 0.03),
                spacing / 2,
                skip=("-z", "+z"),
            )
            for sx in (-1, 1)
            for sy in (-1, 1)
        ]
        objs.append(
            ("table", _yaw(np.concatenate([top] + legs), yaw, centre), S3DIS_COLOURS["table"])
        )
        for side in (-1, 1):
            for _ in range(int(rng.integers(1, 3))):
                x = rng.uniform(-tw / 2 + 0.3, tw / 2 - 0.3)
                y = side * (td / 2 + rng.uniform(0.25, 0.45))
                cyaw = (0.0 if side > 0 else math.pi) + rng.normal(0, 0.25)
                chair = np.concatenate(
                    [
                        _box(rng, (-0.22, -0.22, 0.42), (0.22, 0.22, 0.47), spacing),
                        _box(rng, (-0.22, 0.19, 0.47), (0.22, 0.24, 0.92), spacing),
                        *[
                            _box(
                                rng,
                                (sx * 0.19 - 0.015, sy * 0.19 - 0.015, 0),
                                (sx * 0.19 + 0.015, sy * 0.19 + 0.015, 0.42),
                                spacing / 2,
                                skip=("-z", "+z"),
                            )
                            for sx in (-1, 1)
                            for sy in (-1, 1)
                        ],
                    ]
                )
                chair = _yaw(_yaw(chair, cyaw, (x, y, 0)), yaw, centre)
                objs.append(("chair", chair, S3DIS_COLOURS["chair"]))
        for _ in range(int(rng.integers(1, 4))):  # monitors, boxes, papers on the table
            ow, od, oh = rng.uniform(0.1, 0.5), rng.uniform(0.05, 0.35), rng.uniform(0.02, 0.4)
            ox, oy = rng.uniform(-tw / 2 + ow, tw / 2 - ow), rng.uniform(-td / 2 + od, td / 2 - od)
            item = _box(
                rng,
                (ox - ow / 2, oy - od / 2, th),
                (ox + ow / 2, oy + od / 2, th + oh),
                spacing,
                skip=("-z",),
            )
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
    structural = [
        ("ceiling", ceiling, S3DIS_COLOURS["ceiling"]),
        ("floor", floor, S3DIS_COLOURS["floor"]),
    ]
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


def expected_s3dis_labels(
    objects: Sequence[SyntheticObject], names: Sequence[str]
) -> dict[str, np.ndarray]:
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
        "coords": np.concatenate(coords),
        "rgb": np.concatenate(rgb),
        "semantic": np.concatenate(sem),
        "instance": np.concatenate(inst),
    }


def write_synthetic_s3dis(
    root: Path,
    num_areas: int = 3,
    rooms_per_area: int = 2,
    seed: int = 0,
    spacing: float = 0.04,
    noise: float = 0.005,
    alignment_angles: bool = False,
) -> Path:
    """Write a small S3DIS-format dataset under ``root`` (``root/Area_N/<room>/...``).

    Defaults: 3 areas x 2 rooms of ~4x5 m with ~40-80k points each (use Areas 1-2 to train
    and Area_3 to validate: splits ``"Area_1+Area_2"`` and ``"Area_3"``). Every room has a
    sofa, even rooms a beam and odd rooms a column, so an area of two rooms holds all 13
    classes. ``alignment_angles=True`` also writes ``Area_N_alignmentAngle.txt`` (non-aligned
    release style, angles 0/90/180/270; points are not rotated). Returns ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for a in range(1, num_areas + 1):
        area = f"Area_{a}"
        counts: dict[str, int] = {}
        x0 = 0.0
        angle_lines = [
            f"## Global alignment angle per disjoint space in {area} ##",
            "## Disjoint Space Name Angle ##",
        ]
        for r in range(rooms_per_area):
            rtype = ROOM_TYPES[(a + r) % len(ROOM_TYPES)] if r else "office"
            counts[rtype] = counts.get(rtype, 0) + 1
            room = f"{rtype}_{counts[rtype]}"
            size = (rng.uniform(3.6, 4.6), rng.uniform(4.0, 5.2), rng.uniform(2.8, 3.1))
            objs = make_s3dis_room(
                rng,
                size=size,
                spacing=spacing,
                noise=noise,
                origin=(x0, 0.0, 0.0),
                beam=r % 2 == 0,
                column=r % 2 == 1 or rooms_per_area == 1,
                sofa=True,
            )
            x0 += size[0] + 0.3
            write_s3dis_room(root / area / room, objs)
            angle_lines.append(f"{room} {int(rng.choice([0, 90, 180, 270]))}")
        if alignment_angles:
            atomic_write_text(
                root / area / f"{area}_alignmentAngle.txt", "\n".join(angle_lines) + "\n"
            )
    return root
