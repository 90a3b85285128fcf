"""Shared by the pcseg.methods tests: sizes (K classes, D feature channels), a seeded batch
of float64 logits / features with chosen weak labels, and a numpy softmax."""

from __future__ import annotations

import math

import numpy as np
import torch

K, D = 4, 6


# ---------------------------------------------------------------- helpers
def make_batch(
    m: int = 40,
    labelled: dict[int, int] | None = None,
    seed: int = 0,
    k: int = K,
    d: int = D,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """float64 logits (m,k), features (m,d) and a batch whose weak labels are given by
    ``labelled`` {row: class}; hidden labels are random in [-1, k)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, k, generator=g, dtype=torch.float64) * 2.0
    features = torch.randn(m, d, generator=g, dtype=torch.float64)
    labels = torch.randint(-1, k, (m,), generator=g)
    weak = torch.full((m,), -1, dtype=torch.int64)
    if labelled is None:
        labelled = {i: i % k for i in range(2 * k)}
    for row, c in labelled.items():
        weak[row] = c
        labels[row] = c
    return logits, features, {"weak_labels": weak, "labels": labels}


def np_softmax_row(z: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    allowed = np.ones(len(z), bool) if allowed is None else allowed
    zmax = max(z[k] for k in range(len(z)) if allowed[k])
    e = np.array([math.exp(z[k] - zmax) if allowed[k] else 0.0 for k in range(len(z))])
    return e / e.sum()
