"""Shared by the pcseg.viz tests: a synthetic room (regular grids on a floor, a ceiling, two
walls, a table top and a chair seat with known S3DIS classes), the `pcseg view` child
process, and PNG pixel counting. The ``room`` fixture built from it is in tests/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers.paths import REPO
from pcseg.data.classes import S3DIS_CLASSES

PY = sys.executable
VIEW = ["-m", "pcseg", "view"]  # the `pcseg view` command, run as a child process
CLS = {n: i for i, n in enumerate(S3DIS_CLASSES)}
PRESENT_TOP = ("floor", "wall", "table", "chair")  # ceiling is hidden in top views


# ----------------------------------------------------------------------- the synthetic room
def _grid(
    a: tuple[float, float], b: tuple[float, float], step: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(
        np.arange(a[0], a[1] + 1e-9, step), np.arange(b[0], b[1] + 1e-9, step), indexing="ij"
    )
    return u.ravel(), v.ravel()


def _room(with_chair: bool = True) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    x, y = _grid((0, 4), (0, 3))
    parts.append((np.stack([x, y, np.zeros_like(x)], 1), "floor"))
    parts.append((np.stack([x, y, np.full_like(x, 2.8)], 1), "ceiling"))
    y2, z2 = _grid((0, 3), (0.05, 2.75))
    parts.append((np.stack([np.zeros_like(y2), y2, z2], 1), "wall"))
    x3, z3 = _grid((0.05, 4), (0.05, 2.75))
    parts.append((np.stack([x3, np.full_like(x3, 3.0), z3], 1), "wall"))
    x4, y4 = _grid((1.5, 2.5), (1.0, 2.0), 0.04)
    parts.append((np.stack([x4, y4, np.full_like(x4, 0.75)], 1), "table"))
    if with_chair:
        x5, y5 = _grid((0.5, 0.9), (0.5, 0.9), 0.03)
        parts.append((np.stack([x5, y5, np.full_like(x5, 0.45)], 1), "chair"))
    coords = np.concatenate([p for p, _ in parts]).astype(np.float32)
    sem = np.concatenate([np.full(len(p), CLS[c]) for p, c in parts]).astype(np.int64)
    return coords, sem


def _run_tool(
    args: list[str], timeout: float = 120, env: dict | None = None
) -> subprocess.CompletedProcess:
    e = dict(os.environ if env is None else env)
    e.setdefault("PYTHONPATH", str(REPO))
    return subprocess.run(
        [PY, *VIEW, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        cwd=REPO,
    )


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _count(img: np.ndarray, rgb, tol: int = 3) -> int:
    return int((np.abs(img.astype(int) - np.asarray(rgb, int)).max(-1) <= tol).sum())


def _headless_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(REPO)
    return env
