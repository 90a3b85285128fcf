"""A small 2D U-Net for CPU demos and tests of the image path.

Structure (``base`` = width of the first level, ``depth`` = number of down-samplings)::

    level 0   [conv 3x3, BN, ReLU] x 2 -> base                      (H, W)      -> skip 0
    level i   max-pool 2, [conv 3x3, BN, ReLU] x 2 -> base * 2^i     (H/2^i, W/2^i)
    up i      bilinear x2, concat skip, [conv 3x3, BN, ReLU] x 2 -> base * 2^(i-1)
    head      [dropout head_dropout, training only] 1x1 conv (with bias) -> num_classes

``forward(x (B, C, H, W)) -> (logits (B, K, H, W), features (B, base, H, W))``: the features
are the last decoder features before the classifier (``feature_dim == base``). Any H, W
works (odd sizes are matched by bilinear up-sampling to the skip's size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    """Small U-Net (see the module docstring).

    Args:
        in_channels: input channels (3 for RGB).
        num_classes: K.
        base: width of the first level (and of the returned features).
        depth: number of 2x down-samplings (levels - 1).
        head_dropout: dropout on the classifier's input in training mode, in [0, 1).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base: int = 16,
        depth: int = 3,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1 or base < 1:
            raise ValueError(f"UNet2D: depth and base must be >= 1, got {depth}, {base}")
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_double_conv(in_channels, widths[0])]
            + [_double_conv(widths[i - 1], widths[i]) for i in range(1, depth + 1)]
        )
        self.up = nn.ModuleList(
            [_double_conv(widths[i] + widths[i - 1], widths[i - 1]) for i in range(depth, 0, -1)]
        )
        self.dropout = nn.Dropout(head_dropout) if head_dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        self.feature_dim = widths[0]
        self.num_classes = int(num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, C, H, W) -> ``(logits (B, K, H, W), features (B, base, H, W))``."""
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.classifier(self.dropout(x)), x


__all__ = ["UNet2D"]
