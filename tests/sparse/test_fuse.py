"""pcseg.sparse.fuse: an eval-mode batch norm folded into the conv before it gives the same
outputs as conv then batch norm, computed independently (torch's BatchNorm1d)."""

from __future__ import annotations

import pytest
import torch
from helpers.sparse import DT, random_coords

from pcseg.sparse import Conv3d, SparseTensor, SubMConv3d
from pcseg.sparse.fuse import fold_batch_norm, fold_pairs


def _bn(c: int) -> torch.nn.BatchNorm1d:
    bn = torch.nn.BatchNorm1d(c).to(DT)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.3, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return bn.eval()


@pytest.mark.parametrize("conv_bias", [False, True])
@pytest.mark.parametrize("kind", ["subm3", "subm1", "down2"])
def test_folded_conv_equals_conv_then_batch_norm(kind, conv_bias):
    torch.manual_seed(0)
    c = random_coords(2, 8, 0.3)
    x = SparseTensor(c, torch.randn(len(c), 3, dtype=DT))
    if kind == "down2":
        conv = Conv3d(3, 5, 2, bias=conv_bias).to(DT)
    else:
        conv = SubMConv3d(3, 5, int(kind[-1]), bias=conv_bias).to(DT)
    bn = _bn(5)
    with torch.no_grad():
        want = bn(conv(x).feats)
        fold_batch_norm(conv, bn)
        got = conv(x).feats
    assert conv.bias is not None and conv.weight.requires_grad
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fold_pairs_replaces_the_norms_and_rejects_bad_input():
    owner = torch.nn.Module()
    owner.conv = SubMConv3d(2, 4, 3)
    owner.bn = _bn(4).float()
    assert fold_pairs([(owner, "conv", "bn")]) == 1
    assert isinstance(owner.bn, torch.nn.Identity)
    with pytest.raises(ValueError, match="training mode"):
        fold_batch_norm(SubMConv3d(2, 4, 3), torch.nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="4 output channels"):
        fold_batch_norm(SubMConv3d(2, 4, 3), torch.nn.BatchNorm1d(3).eval())
    other = torch.nn.Module()
    other.conv = torch.nn.Linear(2, 4)
    other.bn = torch.nn.BatchNorm1d(4).eval()
    with pytest.raises(TypeError, match="not a pcseg.sparse conv"):
        fold_pairs([(other, "conv", "bn")])
