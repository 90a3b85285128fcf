"""DeepLabV3+: the documented output shapes at output stride 16 and 8, the ASPP rates, the
48-channel low-level projection, pretrained backbone weights from a local file."""

from __future__ import annotations

import pytest
import torch

from pcseg.models.deeplab import DeepLabV3Plus
from pcseg.models.resnet import resnet


@pytest.mark.parametrize("output_stride, rates", [(16, (6, 12, 18)), (8, (12, 24, 36))])
def test_shapes_at_output_stride(output_stride, rates):
    net = DeepLabV3Plus(3, 7, output_stride=output_stride).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        low, high = net.backbone(x)
        logits, feats = net(x)
    assert low.shape == (2, 256, 16, 24)
    assert high.shape == (2, 2048, 64 // output_stride, 96 // output_stride)
    assert net.aspp(high).shape == (2, 256, 64 // output_stride, 96 // output_stride)
    assert logits.shape == (2, 7, 16, 24)
    assert feats.shape == (2, 256, 16, 24)
    assert net.feature_dim == 256 and net.output_scale == 4
    got = tuple(b[0].dilation[0] for b in net.aspp.branches[1:])
    assert got == rates
    assert net.low_proj[0].out_channels == 48
    assert net.decoder[0][0].in_channels == 256 + 48


def test_pretrained_backbone_from_a_local_file(tmp_path):
    src = resnet("resnet50")
    path = tmp_path / "r50.pth"
    torch.save(src.state_dict(), path)
    net = DeepLabV3Plus(3, 3, pretrained=path)
    # the dilated backbone holds the same tensors (dilation changes no shape)
    torch.testing.assert_close(net.backbone.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    assert not hasattr(net.backbone, "avgpool")


def test_bad_output_stride():
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabV3Plus(3, 3, output_stride=32)
