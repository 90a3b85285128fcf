"""Optimisers and per-iteration learning-rate schedules.

Schedules (stepped once per optimiser step, ``total`` = number of steps):

* ``poly``: ``lr * (1 - t / total) ** poly_power`` (MinkowskiEngine / ERDA recipe);
* ``cosine``: ``lr * (r + (1 - r) * (1 + cos(pi t / total)) / 2)`` with ``r = min_lr_ratio``;
* ``constant``: ``lr``;
* each of the three preceded by ``warmup`` linear warm-up steps from ``lr * warmup_factor``;
* ``onecycle``: :class:`torch.optim.lr_scheduler.OneCycleLR` (cosine up from
  ``lr / div_factor`` over ``pct_start`` of the steps, then down to
  ``lr / (div_factor * final_div_factor)``; momentum / beta1 cycled inversely).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from pcseg.config import TrainConfig


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: TrainConfig
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over ``params`` (those with requires_grad)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            params,
            lr=cfg.lr,
            betas=(float(cfg.betas[0]), float(cfg.betas[1])),
            weight_decay=cfg.weight_decay,
        )
    raise ValueError(f"train.optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")


def lr_factor_fn(cfg: TrainConfig, total: int) -> Callable[[int], float]:
    """Multiplier of the base lr at step ``t`` (0-based) for poly / cosine / constant + warm-up."""
    total = max(int(total), 1)
    warm = min(int(cfg.warmup), total - 1) if total > 1 else 0
    kind = cfg.scheduler

    def main(t: int) -> float:
        frac = min(max(t / total, 0.0), 1.0)
        if kind == "poly":
            return (1.0 - frac) ** cfg.poly_power
        if kind == "cosine":
            r = cfg.min_lr_ratio
            return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * frac))
        if kind == "constant":
            return 1.0
        raise ValueError(f"unknown scheduler {kind!r}")

    def factor(t: int) -> float:
        if warm > 0 and t < warm:
            alpha = t / warm
            return (cfg.warmup_factor * (1.0 - alpha) + alpha) * main(warm)
        return main(t)

    return factor


def onecycle_steps(total: int, pct_start: float) -> tuple[int, float]:
    """(total_steps, pct_start) for OneCycleLR over ``total`` optimiser steps such that its
    warm-up and its annealing each last at least one step (torch divides by their lengths,
    ``pct_start * T - 1`` and ``T - 1 - (pct_start * T - 1)``: a ZeroDivisionError at e.g. 20
    steps with pct_start 0.05): T = max(total, 3), pct_start clamped to [2 / T, (T - 1) / T]."""
    steps = max(int(total), 3)
    return steps, min(max(float(pct_start), 2.0 / steps), (steps - 1.0) / steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-iteration scheduler for ``total`` optimiser steps (call ``.step()`` after each)."""
    if cfg.scheduler == "onecycle":
        steps, pct = onecycle_steps(total, cfg.pct_start)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=cfg.lr,
            total_steps=steps,
            pct_start=pct,
            div_factor=cfg.div_factor,
            final_div_factor=cfg.final_div_factor,
            cycle_momentum=cfg.cycle_momentum and (cfg.optimizer == "adamw" or cfg.momentum > 0),
            base_momentum=0.85,
            max_momentum=max(cfg.momentum if cfg.optimizer == "sgd" else cfg.betas[0], 0.85),
        )
    if cfg.scheduler in ("poly", "cosine", "constant"):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, total))
    raise ValueError(
        f"train.scheduler must be onecycle | poly | cosine | constant, got {cfg.scheduler!r}"
    )
