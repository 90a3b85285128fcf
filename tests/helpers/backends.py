"""Shared by the backend adapter tests: which optional backends are installed, a small
two-entry surface scene, and one MinkUNet14A on the torch backend and on another backend
(weights converted), compared on outputs and parameter gradients."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from pcseg.models import build_model
from pcseg.sparse import SparseTensor

HAS_ME = importlib.util.find_spec("MinkowskiEngine") is not None
HAS_SPCONV = importlib.util.find_spec("spconv") is not None
needs_spconv = pytest.mark.skipif(not HAS_SPCONV, reason="spconv not installed")


def small_scene(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batch entries of surfaces (floor + wall + a step), ~2k voxels; coords (M, 4)
    int32 [batch, x, y, z] with negative values, feats (M, 3) float64."""
    g = torch.Generator().manual_seed(seed)
    a = torch.arange(-15, 15)
    U, V = torch.meshgrid(a, a, indexing="ij")
    floor = torch.stack([U.flatten(), V.flatten(), torch.zeros(U.numel(), dtype=torch.long)], 1)
    Uw, Hw = torch.meshgrid(a, torch.arange(0, 15), indexing="ij")
    wall = torch.stack([Uw.flatten(), torch.full((Uw.numel(),), -15), Hw.flatten()], 1)
    step = floor[(floor[:, 0] > 4) & (floor[:, 1] > 4)] + torch.tensor([0, 0, 3])
    s0 = torch.unique(torch.cat([floor, wall, step]), dim=0)
    s1 = torch.unique(torch.cat([floor[::3], wall[::2]]), dim=0) + torch.tensor([7, -3, 1])
    coords = torch.cat(
        [
            torch.cat([torch.zeros(len(s0), 1, dtype=torch.long), s0], 1),
            torch.cat([torch.ones(len(s1), 1, dtype=torch.long), s1], 1),
        ]
    ).to(torch.int32)
    perm = torch.randperm(coords.shape[0], generator=g)  # rows in no particular order
    coords = coords[perm]
    feats = torch.rand(coords.shape[0], 3, generator=g, dtype=torch.float64)
    return coords, feats


def _model_pair(backend: str, to_backend) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A float64 MinkUNet14A on the torch backend with non-trivial BN statistics, and the same
    model on ``backend`` loaded from it through ``to_backend`` (a state-dict converter)."""
    torch.manual_seed(0)
    ref = build_model("MinkUNet14A", 3, 7, backend="torch").double()
    for mod in ref.modules():  # non-trivial BN statistics so eval mode is a real test
        if isinstance(mod, torch.nn.BatchNorm1d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    alt = build_model("MinkUNet14A", 3, 7, backend=backend).double()
    assert alt.backend.name == backend
    alt.load_state_dict(to_backend(ref.state_dict()))
    return ref, alt


def _check_same_outputs_and_grads(ref, alt, from_backend, train: bool) -> None:
    """Forward both models on small_scene(); logits / features to 1e-10, and in train mode
    every parameter gradient (mapped back through ``from_backend``) and BN running stats."""
    coords, feats = small_scene()
    ref.train(train)
    alt.train(train)
    logits1, feat1 = ref(SparseTensor(coords, feats))
    logits2, feat2 = alt(SparseTensor(coords, feats))
    assert logits1.shape == logits2.shape == (coords.shape[0], 7)
    assert feat2.shape == (coords.shape[0], alt.feature_dim)
    torch.testing.assert_close(logits2, logits1, rtol=0, atol=1e-10)
    torch.testing.assert_close(feat2, feat1, rtol=0, atol=1e-10)
    assert logits1.std() > 1e-3
    if not train:
        return
    target = torch.randn_like(logits1)
    ((logits1 - target) ** 2).mean().backward()
    ((logits2 - target) ** 2).mean().backward()
    g1 = {k: p.grad for k, p in ref.named_parameters()}
    g2 = from_backend({k: p.grad for k, p in alt.named_parameters()})
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-7, atol=1e-10, msg=k)
    sd1, sd2 = ref.state_dict(), from_backend(alt.state_dict())
    torch.testing.assert_close(sd2["bn0.running_mean"], sd1["bn0.running_mean"], rtol=0, atol=1e-12)
    torch.testing.assert_close(
        sd2["block8.0.norm2.running_var"], sd1["block8.0.norm2.running_var"], rtol=0, atol=1e-12
    )
