"""pcseg.benchmarks.sparse_measure: which implementations can run, one in-process step."""

from __future__ import annotations

import importlib.util

import torch

from pcseg.benchmarks import sparse_measure


def test_impl_available():
    assert sparse_measure.impl_available("pcseg", "cpu") is None
    assert sparse_measure.impl_available("nonesuch", "cpu") == "unknown implementation 'nonesuch'"
    spconv = sparse_measure.impl_available("spconv", "cpu")
    assert (spconv is None) == (importlib.util.find_spec("spconv") is not None)


def test_conv_steps_forward_is_the_submanifold_conv():
    """Case a's pcseg forward is the conv of the features (same output as calling the layer)."""
    torch.manual_seed(0)
    coords = torch.cat([torch.zeros(50, 1, dtype=torch.int32), torch.randint(0, 6, (50, 3))], 1)
    coords = torch.unique(coords, dim=0).int()
    feats = torch.randn(len(coords), 4)
    torch.manual_seed(1)
    step = sparse_measure.conv_steps("pcseg", coords, feats, 4, torch.device("cpu"))
    assert step["kmap"]() >= 0.0
    from pcseg.sparse import SparseTensor, SubMConv3d

    torch.manual_seed(1)
    ref = SubMConv3d(4, 4, 3)(SparseTensor(coords, feats.detach())).feats
    assert torch.allclose(step["forward"](), ref, atol=1e-6)
