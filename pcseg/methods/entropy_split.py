"""U2PL's entropy split of the unlabelled points into reliable and unreliable ones.

Among the unlabelled points the ``alpha_t`` % with the highest teacher entropy
``H_i = -sum_k P_ik log(P_ik + 1e-10)`` are unreliable, the rest reliable;
``alpha_t = alpha_0 (1 - t/T)`` (:func:`unreliable_percent`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

import torch
from pydantic import Field

from pcseg.methods.class_queue import ClassQueues
from pcseg.methods.common import MethodOptions, hidden_accuracy

#: added inside the log of the entropy (as in the official code)
ENTROPY_EPS = 1e-10
AnchorSplit = Literal["reliable", "lowest"]
ANCHOR_SPLITS: tuple[str, ...] = get_args(AnchorSplit)


class EntropySplitOptions(MethodOptions):
    """Options of the reliable / unreliable split."""

    #: alpha_0, initial unreliable percentage
    alpha_0: float = Field(20.0, ge=0.0, le=100.0)
    #: contrastive anchor candidates among the unlabelled points: the reliable ones, or
    #: the alpha_t % lowest-entropy ones (the official 2D code)
    anchor_split: AnchorSplit = "reliable"


def prediction_entropy(prob: torch.Tensor) -> torch.Tensor:
    """(M, K) probabilities -> (M,) entropy ``-sum_k p_k log(p_k + 1e-10)`` (nats)."""
    if prob.dim() != 2:
        raise ValueError(f"prediction_entropy: prob must be (M, K), got {tuple(prob.shape)}")
    return -(prob * torch.log(prob + ENTROPY_EPS)).sum(1)


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q``-th percentile (q in [0, 100]) of ``values`` with linear interpolation.

    Same definition as ``numpy.percentile(values, q)`` (method ``"linear"``): with the
    values sorted ascending as v_0..v_{n-1}, ``pos = q/100 * (n - 1)`` and the result is
    ``v_floor(pos) + (v_ceil(pos) - v_floor(pos)) * frac(pos)``. Computed in float64.

    Args:
        values: any shape, at least one element, floating.
        q: percentile in [0, 100].
    Returns:
        0-dim float64 tensor on the device of ``values``.
    """
    if not 0.0 <= float(q) <= 100.0:
        raise ValueError(f"percentile: q must be in [0, 100], got {q}")
    v = values.detach().flatten().to(torch.float64)
    n = v.numel()
    if n == 0:
        raise ValueError("percentile: values is empty")
    v = torch.sort(v).values
    pos = float(q) / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return v[lo] + (v[hi] - v[lo]) * frac


def unreliable_percent(alpha_0: float, step: int, total_steps: int) -> float:
    """alpha_t = alpha_0 (1 - t/T) in percent; alpha_0 when T <= 0 (unknown); t/T clipped
    to [0, 1]."""
    if total_steps <= 0:
        return float(alpha_0)
    frac = min(max(float(step) / float(total_steps), 0.0), 1.0)
    return float(alpha_0) * (1.0 - frac)


def reliable_mask(entropy: torch.Tensor, alpha_percent: float) -> torch.Tensor:
    """Reliable points: entropy strictly below the (100 - alpha) percentile.

    Args:
        entropy: (N,) entropies of the candidate (unlabelled) points.
        alpha_percent: alpha_t in [0, 100], the percentage of points declared unreliable
            (the highest-entropy ones). ``alpha <= 0`` -> every point is reliable.
    Returns:
        (N,) bool; all False for N = 0.
    """
    if entropy.dim() != 1:
        raise ValueError(f"reliable_mask: entropy must be (N,), got {tuple(entropy.shape)}")
    if entropy.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=entropy.device)
    if alpha_percent <= 0.0:
        return torch.ones_like(entropy, dtype=torch.bool)
    thresh = percentile(entropy, 100.0 - min(float(alpha_percent), 100.0))
    return entropy.to(torch.float64) < thresh


def lowest_entropy_mask(entropy: torch.Tensor, alpha_percent: float) -> torch.Tensor:
    """(N,) bool: entropy <= the alpha percentile (the official contrastive anchor set)."""
    if entropy.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=entropy.device)
    thresh = percentile(entropy, min(max(float(alpha_percent), 0.0), 100.0))
    return entropy.to(torch.float64) <= thresh


@torch.no_grad()
def teacher_split(
    prob: torch.Tensor,
    weak_labels: torch.Tensor,
    alpha_percent: float,
    anchor_split: str = "reliable",
) -> dict[str, torch.Tensor]:
    """Entropy-based split of the unlabelled points.

    Args:
        prob: (M, K) teacher probabilities.
        weak_labels: (M,) int64, -1 = unlabelled.
        alpha_percent: alpha_t, percent of unlabelled points declared unreliable.
        anchor_split: ``"reliable"`` (anchor candidates = reliable points) or ``"lowest"``
            (the alpha_t % lowest-entropy points, the official contrastive choice).
    Returns:
        dict of (M,) tensors: ``entropy`` float, ``pseudo`` int64 argmax, ``unlabelled``,
        ``reliable``, ``unreliable`` and ``anchor_ok`` bool (all False on labelled points).
    """
    if anchor_split not in ANCHOR_SPLITS:
        raise ValueError(f"anchor_split must be one of {ANCHOR_SPLITS}, got {anchor_split!r}")
    ent = prediction_entropy(prob)
    unl = weak_labels < 0
    reliable = torch.zeros_like(unl)
    reliable[unl] = reliable_mask(ent[unl], alpha_percent)
    unreliable = unl & ~reliable
    if anchor_split == "reliable":
        anchor_ok = reliable
    else:
        anchor_ok = torch.zeros_like(unl)
        anchor_ok[unl] = lowest_entropy_mask(ent[unl], alpha_percent)
    return {
        "entropy": ent,
        "pseudo": prob.argmax(1),
        "unlabelled": unl,
        "reliable": reliable,
        "unreliable": unreliable,
        "anchor_ok": anchor_ok,
    }


@torch.no_grad()
def split_diagnostics(
    split: dict[str, torch.Tensor],
    batch: Mapping[str, Any],
    queues: ClassQueues,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """Detached ``diag/pseudo_acc`` (teacher argmax vs hidden GT on unlabelled points),
    ``diag/reliable_frac``, ``diag/reliable_acc``, ``diag/queue_fill``, ``diag/alpha_t``."""
    unl, rel = split["unlabelled"], split["reliable"]
    dev = unl.device
    out: dict[str, torch.Tensor] = {}
    n_unl = int(unl.sum())
    out["diag/reliable_frac"] = (
        torch.tensor(float(rel.sum()) / n_unl, device=dev) if n_unl else torch.zeros((), device=dev)
    )
    acc = hidden_accuracy(split["pseudo"], batch, unl)
    if acc is not None:
        out["diag/pseudo_acc"] = acc
    acc = hidden_accuracy(split["pseudo"], batch, rel)
    if acc is not None:
        out["diag/reliable_acc"] = acc
    out["diag/queue_fill"] = queues.fill_fraction().to(dev)
    out["diag/alpha_t"] = torch.tensor(float(alpha), device=dev)
    return out
