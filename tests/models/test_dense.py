"""Pixel rows: the row order the image labels are flattened in, up-sampling of coarse outputs,
the image model names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pcseg.models.dense import IMAGE_MODELS, PixelRows, build_image_model, rows


def test_rows_order():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    r = rows(x)
    for b in range(2):
        for y in range(4):
            for xx in range(5):
                assert torch.equal(r[b * 20 + y * 5 + xx], x[b, :, y, xx])


class _Coarse(nn.Module):
    """A net whose outputs are at 1/4 of the input (like DeepLabV3+)."""

    feature_dim, num_classes = 2, 3

    def forward(self, x):
        f = F.avg_pool2d(x[:, :2], 4)
        return torch.cat([f, f[:, :1]], 1), f


def test_coarse_outputs_are_upsampled_to_the_input():
    x = torch.randn(1, 3, 16, 12)
    logits, feats = PixelRows(_Coarse())(x)
    ref = F.interpolate(F.avg_pool2d(x[:, :2], 4), size=(16, 12), mode="bilinear")
    assert logits.shape == (16 * 12, 3) and feats.shape == (16 * 12, 2)
    torch.testing.assert_close(feats, rows(ref))


def test_builders():
    assert set(IMAGE_MODELS) == {"UNet2D", "DeepLabV3Plus"}
    m = build_image_model("UNet2D", 3, 4, width=8).eval()
    logits, feats = m(torch.randn(1, 3, 8, 8))
    assert logits.shape == (64, 4) and feats.shape == (64, 8) and m.feature_dim == 8
    with pytest.raises(ValueError, match="unknown image model"):
        build_image_model("MinkUNet14A", 3, 4)
