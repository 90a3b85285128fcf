"""DeepLabV3+ (Chen et al., ECCV 2018) on a torchvision-layout ResNet (pcseg.models.resnet).

Shapes for an input (B, 3, H, W) at output stride ``os`` (16 or 8)::

    backbone   layer1 -> low (B, 256, H/4, W/4);  layer4 -> high (B, 2048, H/os, W/os)
    ASPP       1x1 conv, three 3x3 atrous convs (rates 6/12/18 at os 16, 12/24/36 at os 8),
               image pooling; each -> 256, BN, ReLU; concat (1280) -> 1x1 conv 256, BN,
               ReLU, dropout 0.5 (training)                           (B, 256, H/os, W/os)
    decoder    low -> 1x1 conv 48, BN, ReLU; ASPP output up-sampled bilinearly to H/4,
               concat (304) -> [3x3 conv 256, BN, ReLU] x 2           (B, 256, H/4, W/4)
    head       [dropout head_dropout, training only] 1x1 conv (with bias) -> (B, K, H/4, W/4)

``forward(x) -> (logits (B, K, H/4, W/4), features (B, 256, H/4, W/4))`` (``output_scale ==
4``): :class:`pcseg.models.dense.PixelRows` up-samples both to the input size.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcseg.models.resnet import load_resnet_weights, resnet


def _conv_bn_relu(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Sequential:
    pad = 0 if k == 1 else dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three 3x3 atrous branches, image pooling."""

    def __init__(self, cin: int, rates: tuple[int, int, int], cout: int = 256) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(cin, cout, 1)] + [_conv_bn_relu(cin, cout, 3, r) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv_bn_relu(cin, cout, 1))
        self.project = nn.Sequential(_conv_bn_relu(5 * cout, cout, 1), nn.Dropout(0.5))

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]
        pooled = self.pool(x)
        outs.append(pooled.expand(-1, -1, x.shape[-2], x.shape[-1]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ (see the module docstring).

    Args:
        in_channels: input channels (3; another width leaves ``conv1`` untrained).
        num_classes: K.
        backbone: ``resnet50`` | ``resnet101``.
        output_stride: 16 (ASPP rates 6/12/18) or 8 (12/24/36).
        pretrained: local path of a torchvision ResNet state dict (``.pth``), or None
            (random initialisation). Nothing is downloaded.
        head_dropout: dropout on the classifier's input in training mode.
    """

    output_scale = 4

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        backbone: str = "resnet50",
        output_stride: int = 16,
        pretrained: str | Path | None = None,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"DeepLabV3Plus: output_stride must be 8 or 16, got {output_stride}")
        self.backbone = resnet(backbone, in_channels, output_stride, with_fc=False)
        if pretrained is not None:
            load_resnet_weights(self.backbone, pretrained)
        scale = 16 // output_stride
        self.aspp = ASPP(2048, (6 * scale, 12 * scale, 18 * scale))
        self.low_proj = _conv_bn_relu(256, 48, 1)
        self.decoder = nn.Sequential(_conv_bn_relu(256 + 48, 256, 3), _conv_bn_relu(256, 256, 3))
        self.dropout = nn.Dropout(head_dropout) if head_dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(256, num_classes, 1)
        self.feature_dim = 256
        self.num_classes = int(num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, C, H, W) -> ``(logits (B, K, H/4, W/4), features (B, 256, H/4, W/4))``."""
        low, high = self.backbone(x)
        y = self.aspp(high)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        feats = self.decoder(torch.cat([y, self.low_proj(low)], dim=1))
        return self.classifier(self.dropout(feats)), feats


__all__ = ["ASPP", "DeepLabV3Plus"]
