"""EMA teacher: decay schedule, parameter EMA and buffer copies after optimiser steps."""

from __future__ import annotations

import pytest
import torch
from helpers.u2pl_toys import D, ToyNet, make_u2pl
from torch import nn

from pcseg.methods.ema_teacher import EMATeacher, ema_decay_at


def test_ema_decay_two_steps_and_buffers():
    model, method = ToyNet(), make_u2pl()
    method.on_train_start(model)
    sp = lambda: {n: p.detach().clone() for n, p in model.named_parameters()}  # noqa: E731
    hp = lambda: {n: p.detach().clone() for n, p in method.contrast.rep_head.named_parameters()}  # noqa: E731
    with torch.no_grad():
        for p in list(model.parameters()) + list(method.contrast.rep_head.parameters()):
            p.add_(torch.randn_like(p))
    s1, h1 = sp(), hp()
    method.after_optimizer_step(model, 0, 100)  # decay min(1 - 1/1, .99) = 0 -> copy
    with torch.no_grad():
        for p in list(model.parameters()) + list(method.contrast.rep_head.parameters()):
            p.add_(torch.randn_like(p))
        model.body[1].running_mean.fill_(3.0)
    s2, h2 = sp(), hp()
    method.after_optimizer_step(model, 1, 100)  # decay min(1 - 1/2, .99) = 0.5
    for n, p in method.teacher.model.named_parameters():
        assert torch.allclose(p, 0.5 * s1[n] + 0.5 * s2[n], atol=1e-6), n
    for n, p in method.teacher.rep_head.named_parameters():
        assert torch.allclose(p, 0.5 * h1[n] + 0.5 * h2[n], atol=1e-6), n
    assert torch.equal(method.teacher.model.body[1].running_mean, torch.full((D,), 3.0))
    assert ema_decay_at(0, 0.99) == 0.0 and ema_decay_at(1, 0.99) == 0.5
    assert ema_decay_at(3, 0.99) == pytest.approx(0.75) and ema_decay_at(500, 0.99) == 0.99
    assert ema_decay_at(5, 0.99, start=5) == 0.0 and ema_decay_at(6, 0.99, start=5) == 0.5


def test_teacher_bn_mode_checked():
    with pytest.raises(ValueError, match="bn_mode"):
        EMATeacher(nn.Linear(2, 2), bn_mode="frozen")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="on_train_start"):
        EMATeacher(nn.Linear(2, 2)).predict({}, torch.device("cpu"))


def _erda_u2pl(**kw):
    from helpers.u2pl_toys import K, feats_input

    from pcseg.methods.erda_u2pl import ERDAWithU2PLNegatives

    return ERDAWithU2PLNegatives(
        K, D, queue_capacity=50, rep_dim=8, num_anchors=16, num_negatives=6,
        input_builder=feats_input, **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("build", "start"),
    [
        (lambda: make_u2pl(ema_decay=0.6), 0),
        (lambda: make_u2pl(ema_decay=0.6, sup_only_iterations=2), 2),
        (lambda: _erda_u2pl(ema_decay=0.6), 0),
    ],
    ids=["u2pl", "u2pl-warmup", "erda_u2pl"],
)
def test_shared_teacher_schedule_over_training_steps(build, start):
    """U2PL and ERDA + U2PL negatives share one schedule: after real training steps the
    teacher is the hand-computed EMA of the recorded students, with d = min(k/(k+1), cap)
    and k counted from the end of the warm-up; t and T of alpha_t follow the steps."""
    from helpers.u2pl_toys import toy_batch, train_step, trainable

    torch.manual_seed(0)
    model, method = ToyNet(), build()
    method.on_train_start(model)
    opt = torch.optim.SGD(trainable(model, method), lr=0.05)
    expect: dict[str, torch.Tensor] = {}
    for it in range(6):
        train_step(model, method, opt, toy_batch(seed=10 + it), it, total=40)
        k = it - start
        d = 0.0 if k <= 0 else min(k / (k + 1), 0.6)
        for n, p in model.named_parameters():
            s = p.detach().clone()
            expect[n] = s if d == 0.0 else d * expect[n] + (1 - d) * s
        assert int(method.steps_done) == it + 1 and int(method.total_steps) == 40
        assert method.alpha_t() == pytest.approx(method.alpha_0 * (1 - (it + 1) / 40))
    for n, p in method.teacher.model.named_parameters():
        assert torch.allclose(p, expect[n], atol=1e-6), n
