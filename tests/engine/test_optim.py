"""pcseg.engine.optim: OneCycle for any iteration count >= 1 (the zero-length warm-up of
issue 25: 20 iterations at pct_start 0.05 divided by zero inside OneCycleLR)."""

from __future__ import annotations

import math

import pytest
import torch

from pcseg.config import TrainConfig
from pcseg.engine.optim import build_optimizer, build_scheduler, onecycle_steps


@pytest.mark.parametrize("pct_start", [0.05, 0.1, 0.3])
@pytest.mark.parametrize("iterations", [1, 2, 5, 10, 20])
def test_onecycle_runs_for_short_schedules(iterations, pct_start):
    cfg = TrainConfig(
        iterations=iterations, scheduler="onecycle", lr=0.1, pct_start=pct_start, warmup=0
    )
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], cfg)
    sch = build_scheduler(opt, cfg, iterations)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(iterations):
        opt.step()
        sch.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(math.isfinite(v) and v > 0 for v in lrs)
    assert lrs[0] == pytest.approx(0.1 / cfg.div_factor)
    steps, pct = onecycle_steps(iterations, pct_start)
    peak = round(pct * steps - 1)  # torch's end of the warm-up phase, >= 1
    assert peak >= 1 and max(lrs) <= 0.1 * (1 + 1e-9)
    if iterations >= peak:
        assert lrs[peak] == pytest.approx(0.1)
    if iterations >= 3:  # the last step's lr is the end of the cycle: lr / (div * final_div)
        assert lrs[iterations - 1] == pytest.approx(
            0.1 / (cfg.div_factor * cfg.final_div_factor), rel=1e-6
        )


def test_onecycle_steps_keep_long_schedules_and_clamp_short_ones():
    assert onecycle_steps(1000, 0.05) == (1000, 0.05)  # unchanged where torch is safe
    assert onecycle_steps(20, 0.05) == (20, 0.1)  # 20 * 0.05 - 1 = 0: a zero-length warm-up
    assert onecycle_steps(1, 0.3) == (3, 2 / 3)
    assert onecycle_steps(4, 0.9) == (4, 0.75)  # annealing of at least one step
