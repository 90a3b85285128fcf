"""The small 2D U-Net: output shapes for any image size, features = the classifier's input,
parameter count from the definition."""

from __future__ import annotations

import pytest
import torch

from pcseg.models.unet2d import UNet2D


@pytest.mark.parametrize("size", [(32, 32), (35, 48), (17, 9)])
def test_shapes_for_any_size(size):
    net = UNet2D(3, 5, base=8, depth=3)
    logits, feats = net(torch.randn(2, 3, *size))
    assert logits.shape == (2, 5, *size)
    assert feats.shape == (2, 8, *size)
    assert net.feature_dim == 8


def test_logits_are_the_classifier_of_the_features():
    net = UNet2D(3, 4, base=8).eval()
    with torch.no_grad():
        logits, feats = net(torch.randn(1, 3, 20, 20))
        ref = torch.einsum("bdhw,kd->bkhw", feats, net.classifier.weight[:, :, 0, 0])
        ref = ref + net.classifier.bias[None, :, None, None]
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)


def test_parameter_count_from_the_definition():
    base, depth, cin, k = 8, 3, 3, 5
    w = [base * 2**i for i in range(depth + 1)]

    def double(a, b):  # two 3x3 convs without bias, two BN (weight + bias)
        return 9 * a * b + 2 * b + 9 * b * b + 2 * b

    want = double(cin, w[0]) + sum(double(w[i - 1], w[i]) for i in range(1, depth + 1))
    want += sum(double(w[i] + w[i - 1], w[i - 1]) for i in range(depth, 0, -1))
    want += w[0] * k + k
    net = UNet2D(cin, k, base=base, depth=depth)
    assert sum(p.numel() for p in net.parameters()) == want


def test_gradients_reach_the_first_layer():
    net = UNet2D(3, 3, base=4)
    logits, _ = net(torch.randn(2, 3, 16, 16))
    logits.sum().backward()
    assert net.down[0][0].weight.grad is not None
    assert float(net.down[0][0].weight.grad.abs().sum()) > 0


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="depth"):
        UNet2D(3, 3, depth=0)
