"""Image networks as the methods see them: one row per pixel.

The methods (pcseg.methods) take ``(M, K)`` logits, ``(M, D)`` features and ``(M,)`` labels
and know nothing of voxels or pixels. :class:`PixelRows` wraps a dense network
(``net(x (B, C, H, W)) -> (logits (B, K, h, w), features (B, D, h, w))`` at ``h = H /
net.output_scale``) so that ``PixelRows(net)(x)`` returns the pixels as rows, ``M = B * H *
W``, row ``b * H * W + y * W + x``: the order in which ``pcseg.images.dataset`` flattens the
labels. Outputs at a coarser scale (DeepLabV3+: 1/4) are up-sampled bilinearly to the input
size first, features included, so every labelled pixel has its own feature row.
:meth:`PixelRows.dense` gives the same outputs as images (evaluation, prediction).

``IMAGE_MODELS`` maps a config's ``model.name`` to its builder; :func:`build_image_model`
builds the wrapped network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from pcseg.models.deeplab import DeepLabV3Plus
from pcseg.models.unet2d import UNet2D


def rows(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B * H * W, C), row ``b * H * W + y * W + x``."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


class PixelRows(nn.Module):
    """A dense network whose outputs come back as pixel rows (see the module docstring).

    ``feature_dim`` and ``num_classes`` are the wrapped network's; ``classifier_prefix`` names
    the classifier's tensors (``--init`` keeps them only for the same class list).
    """

    classifier_prefix = "net.classifier."

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.feature_dim = int(net.feature_dim)  # type: ignore[arg-type]
        self.num_classes = int(net.num_classes)  # type: ignore[arg-type]

    def dense(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, C, H, W) -> ``(logits (B, K, H, W), features (B, D, H, W))``."""
        logits, feats = self.net(x)
        size = x.shape[-2:]
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        if feats.shape[-2:] != size:
            feats = F.interpolate(feats, size=size, mode="bilinear", align_corners=False)
        return logits, feats

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, C, H, W) -> ``(logits (B*H*W, K), features (B*H*W, D))``."""
        logits, feats = self.dense(x)
        return rows(logits), rows(feats)


def _unet(in_channels: int, num_classes: int, **kw: Any) -> nn.Module:
    return UNet2D(
        in_channels,
        num_classes,
        base=kw.get("width") or 16,
        head_dropout=kw.get("head_dropout", 0.0),
    )


def _deeplab(in_channels: int, num_classes: int, **kw: Any) -> nn.Module:
    return DeepLabV3Plus(
        in_channels,
        num_classes,
        backbone=kw.get("backbone", "resnet50"),
        output_stride=kw.get("output_stride", 16),
        pretrained=kw.get("pretrained"),
        head_dropout=kw.get("head_dropout", 0.0),
    )


#: ``model.name`` of an image config -> builder ``(in_channels, num_classes, **options)``
IMAGE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "UNet2D": _unet,
    "DeepLabV3Plus": _deeplab,
}


def build_image_model(
    name: str,
    in_channels: int,
    num_classes: int,
    *,
    width: int | None = None,
    backbone: str = "resnet50",
    output_stride: int = 16,
    pretrained: str | Path | None = None,
    head_dropout: float = 0.0,
) -> PixelRows:
    """The network ``name`` of :data:`IMAGE_MODELS` wrapped in :class:`PixelRows`.

    ``width``: the U-Net's first-level width (default 16); ``backbone``, ``output_stride``,
    ``pretrained`` (a local torchvision ResNet ``.pth``): DeepLabV3+'s.
    """
    if name not in IMAGE_MODELS:
        raise ValueError(f"unknown image model {name!r}; known: {', '.join(IMAGE_MODELS)}")
    net = IMAGE_MODELS[name](
        in_channels,
        num_classes,
        width=width,
        backbone=backbone,
        output_stride=output_stride,
        pretrained=pretrained,
        head_dropout=head_dropout,
    )
    return PixelRows(net)


__all__ = ["IMAGE_MODELS", "PixelRows", "build_image_model", "rows"]
