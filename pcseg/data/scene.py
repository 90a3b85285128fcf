"""The in-memory scene every raw reader returns and every later stage consumes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Scene:
    """One scan at full resolution.

    Attributes:
        name: unique scene id usable as a file stem, e.g. ``Area_1_office_1``,
            ``scene0000_00``, ``00_000000`` (no path separators).
        dataset: ``'s3dis' | 'scannet' | 'semantickitti'``.
        coords: (N, 3) float32, metres.
        feats: (N, 3) float32 RGB in [0, 1], or (N, 1) float32 remission.
        semantic: (N,) int64 class index in [0, K) or -1 (ignored / unlabelled scan).
        instance: (N,) int64 instance id >= 0, or -1 when none / unknown.
        source: path of the raw data this came from.
        extra: reader-specific metadata (JSON-serialisable), e.g. ScanNet vertex count.
    """

    name: str
    dataset: str
    coords: np.ndarray
    feats: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "/" in self.name or "\\" in self.name:
            raise ValueError(f"scene name {self.name!r} must not contain path separators")
        n = len(self.coords)
        if self.coords.ndim != 2 or self.coords.shape[1] != 3:
            raise ValueError(f"scene {self.name}: coords must be (N, 3), got {self.coords.shape}")
        for key in ("feats", "semantic", "instance"):
            arr = getattr(self, key)
            if len(arr) != n:
                raise ValueError(
                    f"scene {self.name}: {key} has {len(arr)} rows, coords has {n}"
                )

    @property
    def num_points(self) -> int:
        return int(len(self.coords))

    @property
    def has_labels(self) -> bool:
        """False for unlabelled scans (benchmark test sets)."""
        return bool((self.semantic >= 0).any())
