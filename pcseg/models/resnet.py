"""ResNet-50 / ResNet-101 with torchvision's module layout, so that a torchvision ``.pth``
state dict (``torchvision.models.resnet50(weights=...).state_dict()`` saved with torch.save)
loads from a local file; nothing is downloaded.

Layout (torchvision ``ResNet`` with ``Bottleneck`` blocks, "ResNet V1.5": the stride sits in
the 3x3 convolution)::

    conv1 (7x7 s2, 64) bn1 relu maxpool (3x3 s2)        stride 4
    layer1  3 blocks -> 256                              stride 4   (low-level features)
    layer2  4 blocks -> 512                              stride 8
    layer3  6 / 23 blocks -> 1024                        stride 16
    layer4  3 blocks -> 2048                             stride 32
    avgpool fc (2048 -> 1000)                            only with ``with_fc``

Block ``layerL.i``: ``conv1`` 1x1, ``bn1``, ``conv2`` 3x3, ``bn2``, ``conv3`` 1x1 (x4 width),
``bn3``, ``downsample.0`` (1x1 conv) / ``downsample.1`` (BN) on the first block of a layer.
``replace_stride_with_dilation`` (three bools for layer2..4) trades a stage's stride for
dilation as torchvision does: output stride 16 = ``[False, False, True]``, 8 =
``[False, True, True]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

#: blocks per layer of the two depths
RESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
}


class WeightsError(ValueError):
    """A pretrained-weights file that is missing, unreadable or does not fit the network."""


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (expansion 4, stride and dilation in the 3x3 conv)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision-layout ResNet (see the module docstring).

    Args:
        layers: blocks per layer (:data:`RESNET_LAYERS`).
        in_channels: input channels (3: the pretrained weights' RGB).
        replace_stride_with_dilation: three bools for layer2, layer3, layer4.
        with_fc: keep the 1000-way ``fc`` (torchvision's classifier); segmentation drops it.
    ``forward(x)`` returns ``(low (B, 256, H/4, W/4), high (B, 2048, H/os, W/os))``.
    """

    def __init__(
        self,
        layers: Sequence[int],
        in_channels: int = 3,
        replace_stride_with_dilation: Sequence[bool] = (False, False, False),
        with_fc: bool = True,
    ) -> None:
        super().__init__()
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation takes three bools (layer2..layer4)")
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        dil = list(replace_stride_with_dilation)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], 2, dil[0])
        self.layer3 = self._make_layer(256, layers[2], 2, dil[1])
        self.layer4 = self._make_layer(512, layers[3], 2, dil[2])
        self.fc: nn.Linear | None = None
        if with_fc:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(
        self, planes: int, blocks: int, stride: int = 1, dilate: bool = False
    ) -> nn.Sequential:
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        mods = [Bottleneck(self.inplanes, planes, stride, downsample, previous)]
        self.inplanes = planes * 4
        mods += [
            Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)
        ]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """``x`` (B, C, H, W) -> ``(layer1 output, layer4 output)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        high = self.layer4(self.layer3(self.layer2(low)))
        return low, high


def resnet(
    name: str,
    in_channels: int = 3,
    output_stride: int = 32,
    with_fc: bool = True,
) -> ResNet:
    """``resnet50`` / ``resnet101`` at output stride 32 (classification), 16 or 8."""
    if name not in RESNET_LAYERS:
        raise ValueError(f"unknown ResNet {name!r}; known: {', '.join(RESNET_LAYERS)}")
    dilation = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}
    if output_stride not in dilation:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    return ResNet(RESNET_LAYERS[name], in_channels, dilation[output_stride], with_fc)


def _state_dict_of(obj: object, path: Path) -> Mapping[str, Tensor]:
    """The tensor mapping inside a loaded file: a plain state dict, or one under
    ``state_dict`` / ``model``; a ``module.`` (DataParallel) prefix is dropped."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsError(f"pretrained weights {path}: not a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def load_resnet_weights(model: ResNet, path: str | Path) -> list[str]:
    """Copy a torchvision ResNet state dict from the local file ``path`` into ``model``.

    Every tensor of ``model`` must be in the file with the same shape (``fc.*`` is skipped
    when ``model`` has no ``fc``; a 3-channel ``conv1`` is not loaded into another input
    width: that tensor keeps its initialisation). Returns the names of the tensors loaded.
    Raises WeightsError naming the file and the first missing or mis-shaped tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"pretrained weights {path} do not exist (nothing is downloaded)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised naming the file
        raise WeightsError(f"pretrained weights {path} cannot be read: {e}") from e
    src = _state_dict_of(obj, path)
    own = model.state_dict()
    skip = (
        {"conv1.weight"}
        if own["conv1.weight"].shape != src.get("conv1.weight", own["conv1.weight"]).shape
        else set()
    )
    missing = [k for k in own if k not in src and k not in skip]
    shaped = [k for k in own if k in src and k not in skip and src[k].shape != own[k].shape]
    if missing or shaped:
        detail = ", ".join(missing[:3] + [f"{k} {tuple(src[k].shape)}" for k in shaped[:3]])
        raise WeightsError(
            f"pretrained weights {path} do not fit a torchvision ResNet of this depth "
            f"({len(missing)} missing, {len(shaped)} mis-shaped tensors: {detail})"
        )
    loaded = [k for k in own if k not in skip]
    model.load_state_dict({**own, **{k: src[k].to(own[k].dtype) for k in loaded}})
    return loaded


__all__ = ["RESNET_LAYERS", "Bottleneck", "ResNet", "WeightsError", "load_resnet_weights", "resnet"]
