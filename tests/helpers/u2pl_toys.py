"""Toy stand-ins shared by the U2PL tests: a pointwise "network", batches and steps.

A small MLP stands in for MinkUNet (the teacher input builder is injectable).
"""

from __future__ import annotations

import torch
from torch import nn

from pcseg.methods.u2pl import U2PL

K, C_IN, D = 5, 3, 16


class ToyNet(nn.Module):
    """Pointwise stand-in for MinkUNet: feats (M, C) -> (logits (M, K), features (M, D))."""

    def __init__(self, c_in: int = C_IN, d: int = D, k: int = K) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(c_in, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, d))
        self.cls = nn.Linear(d, k)
        self.feature_dim = d

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return self.cls(f), f


def feats_input(batch, device):
    return batch["feats"].to(device)


def toy_batch(m: int = 300, k: int = K, labelled_frac: float = 0.15, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (m,), generator=g)
    centres = torch.randn(k, C_IN, generator=g) * 2.0
    feats = centres[labels] + 0.7 * torch.randn(m, C_IN, generator=g)
    weak = torch.full((m,), -1, dtype=torch.int64)
    lab = torch.rand(m, generator=g) < labelled_frac
    weak[lab] = labels[lab]
    coords = torch.cat(
        [
            torch.zeros(m, 1, dtype=torch.int32),
            torch.randint(0, 50, (m, 3), generator=g, dtype=torch.int32),
        ],
        1,
    )
    return {"coords": coords, "feats": feats, "labels": labels, "weak_labels": weak}


def make_u2pl(**kw) -> U2PL:
    kw.setdefault("queue_capacity", 64)
    kw.setdefault("rep_dim", 8)
    kw.setdefault("num_anchors", 16)
    kw.setdefault("num_negatives", 10)
    return U2PL(K, D, input_builder=feats_input, **kw)


def train_step(model, method, opt, batch, it, total=100):
    logits, feats = model(batch["feats"])
    out = method(logits, feats, batch)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    method.after_optimizer_step(model, it, total)
    return out


def trainable(model, method):
    return list(model.parameters()) + [p for p in method.parameters() if p.requires_grad]


def run_steps(model, method, steps, start=0):
    opt = torch.optim.SGD(trainable(model, method), lr=0.05)
    outs = []
    for it in range(start, start + steps):
        outs.append(train_step(model, method, opt, toy_batch(seed=10 + it), it))
    return outs
