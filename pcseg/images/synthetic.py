"""Synthetic images for the 2D demo and the tests (``pcseg synthetic images --out DIR``).

Each image (default 96 x 96) is a smooth background with 2-6 objects of four classes, each
with its own shape AND texture: ``disc`` (radial shading), ``box`` (stripes of random
orientation), ``triangle`` (checkerboard), ``bar`` (a long thin rotated rectangle with
speckle). Colours are drawn per object around a class mean with a spread wide enough that
the classes' colour ranges overlap each other and the background's, and pixel noise is
added, so colour alone does not tell the classes apart: shape and texture do. Later
objects occlude earlier ones; the instance mask numbers the visible objects 1, 2, ...

The output is the "images/ + masks/" folder ``pcseg prepare images`` reads
(:mod:`pcseg.images.folder`)::

    OUT/CLASSES.yaml                    names, ignore [255], colors, splits (globs)
    OUT/images/<split>/<nnnn>.png       RGB
    OUT/masks/<split>/<nnnn>.png        class index per pixel
    OUT/instances/<split>/<nnnn>.png    16-bit instance id, 0 = background

Image ``i`` of split ``s`` is drawn from ``default_rng([seed, crc32(s), i])`` only.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from pcseg.images.processed import png_bytes
from pcseg.io.atomic import atomic_write_bytes, atomic_write_text

CLASSES: list[str] = ["background", "disc", "box", "triangle", "bar"]
COLORS: dict[str, list[int]] = {
    "background": [90, 90, 90],
    "disc": [230, 80, 60],
    "box": [60, 160, 230],
    "triangle": [240, 200, 50],
    "bar": [120, 210, 90],
}
#: per-class mean colour of the objects; each object's colour is the mean + U(-SPREAD, SPREAD)
_MEAN_COLOR: dict[int, tuple[int, int, int]] = {
    1: (150, 110, 100),
    2: (110, 140, 130),
    3: (130, 120, 150),
    4: (120, 150, 110),
}
SPREAD = 70
NOISE_SIGMA = 12.0


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return yy, xx


def _disc(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, c: np.ndarray) -> np.ndarray:
    r = rng.uniform(0.08, 0.17) * yy.shape[0]
    return np.asarray((yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r, dtype=bool)


def _box(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, c: np.ndarray) -> np.ndarray:
    h, w = rng.uniform(0.15, 0.32, size=2) * yy.shape[0]
    return np.asarray((np.abs(yy - c[0]) <= h / 2) & (np.abs(xx - c[1]) <= w / 2), dtype=bool)


def _triangle(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, c: np.ndarray
) -> np.ndarray:
    r = rng.uniform(0.12, 0.22) * yy.shape[0]
    a0 = rng.uniform(0, 2 * np.pi)
    ang = a0 + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
    vy, vx = c[0] + r * np.sin(ang), c[1] + r * np.cos(ang)
    inside = np.ones(yy.shape, dtype=bool)
    for i in range(3):  # counter-clockwise vertices: inside = left of every edge
        j = (i + 1) % 3
        cross = (vx[j] - vx[i]) * (yy - vy[i]) - (vy[j] - vy[i]) * (xx - vx[i])
        inside &= cross >= 0
    return inside


def _bar(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, c: np.ndarray) -> np.ndarray:
    length = rng.uniform(0.35, 0.55) * yy.shape[0]
    thick = rng.uniform(0.05, 0.09) * yy.shape[0]
    t = rng.uniform(0, np.pi)
    u = (xx - c[1]) * np.cos(t) + (yy - c[0]) * np.sin(t)
    v = -(xx - c[1]) * np.sin(t) + (yy - c[0]) * np.cos(t)
    return np.asarray((np.abs(u) <= length / 2) & (np.abs(v) <= thick / 2), dtype=bool)


_SHAPES: dict[int, Callable[[np.random.Generator, np.ndarray, np.ndarray, np.ndarray], np.ndarray]]
_SHAPES = {1: _disc, 2: _box, 3: _triangle, 4: _bar}


def _texture(
    cls: int, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, c: np.ndarray
) -> np.ndarray:
    """(H, W) brightness offset of class ``cls``'s texture (about +-35)."""
    if cls == 1:  # radial shading: bright centre
        d = np.sqrt((yy - c[0]) ** 2 + (xx - c[1]) ** 2)
        return np.asarray(35.0 - 3.0 * d, dtype=np.float64)
    if cls == 2:  # stripes, period 6 px, random orientation
        t = rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * (xx * np.cos(t) + yy * np.sin(t)) / 6.0)
        return np.asarray(35.0 * np.sign(wave), dtype=np.float64)
    if cls == 3:  # checkerboard, 4 px squares
        return np.asarray(35.0 * (((yy // 4 + xx // 4) % 2) * 2 - 1), dtype=np.float64)
    return np.asarray(rng.choice([-40.0, 40.0], size=yy.shape), dtype=np.float64)  # speckle


def synthetic_image(
    rng: np.random.Generator, size: int = 96
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic image: (image (S, S, 3) uint8, mask (S, S) uint8 class index,
    instances (S, S) uint16, 0 = background, visible objects numbered 1, 2, ...)."""
    yy, xx = _grid(size)
    base = rng.uniform(40, 200, size=3)
    img = np.empty((size, size, 3), dtype=np.float64)
    for ch in range(3):  # low-frequency background field
        fy, fx = rng.uniform(0.5, 2.0, size=2) * 2 * np.pi / size
        img[..., ch] = base[ch] + 25.0 * np.sin(fy * yy + rng.uniform(0, 6.3)) * np.cos(
            fx * xx + rng.uniform(0, 6.3)
        )
    mask = np.zeros((size, size), dtype=np.uint8)
    inst = np.zeros((size, size), dtype=np.int64)
    for k in range(1, int(rng.integers(2, 7)) + 1):
        cls = int(rng.integers(1, 5))
        centre = rng.uniform(0.15, 0.85, size=2) * size
        region = _SHAPES[cls](rng, yy, xx, centre)
        colour = np.asarray(_MEAN_COLOR[cls], dtype=np.float64) + rng.uniform(-SPREAD, SPREAD, 3)
        tex = _texture(cls, rng, yy, xx, centre)
        img[region] = colour + tex[region][:, None]
        mask[region] = cls
        inst[region] = k
    img += rng.normal(0.0, NOISE_SIGMA, size=img.shape)
    visible = [i for i in np.unique(inst) if i > 0]
    renumber = np.zeros(inst.max() + 1, dtype=np.uint16)
    renumber[visible] = np.arange(1, len(visible) + 1, dtype=np.uint16)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask, renumber[inst]


def classes_yaml(splits: list[str]) -> dict[str, object]:
    """The CLASSES.yaml of a synthetic folder with these splits."""
    return {
        "names": list(CLASSES),
        "ignore": [255],
        "colors": {k: list(v) for k, v in COLORS.items()},
        "splits": {s: f"{s}/*" for s in splits},
    }


def write_synthetic_images(
    out: Path, train: int = 48, val: int = 16, test: int = 16, size: int = 96, seed: int = 0
) -> Path:
    """Write a synthetic "images/ + masks/" folder (module docstring) with ``train`` / ``val``
    / ``test`` images of ``size`` x ``size`` pixels; returns ``out``."""
    out = Path(out)
    counts = {"train": train, "val": val, "test": test}
    for split, n in counts.items():
        for i in range(n):
            rng = np.random.default_rng([seed, zlib.crc32(split.encode()), i])
            img, mask, inst = synthetic_image(rng, size)
            name = f"{split}/{i:04d}.png"
            atomic_write_bytes(out / "images" / name, png_bytes(img))
            atomic_write_bytes(out / "masks" / name, png_bytes(mask))
            atomic_write_bytes(out / "instances" / name, png_bytes(inst))
    splits = [s for s, n in counts.items() if n > 0]
    atomic_write_text(out / "CLASSES.yaml", yaml.safe_dump(classes_yaml(splits), sort_keys=False))
    return out
