"""MinkUNet family, following MinkowskiEngine's ``examples/minkunet.py`` (``MinkUNetBase``).

Structure (tensor strides in brackets)::

    stem    conv k=5 -> INIT_DIM=32, BN, ReLU                                   [1]  -> skip p1
    enc i   conv k=2 s=2 (keeps channels), BN, ReLU, LAYERS[i] blocks -> PLANES[i]  [2,4,8,16]
    dec i   transposed conv k=2 s=2 -> PLANES[4+i], BN, ReLU, concat skip,
            LAYERS[4+i] blocks -> PLANES[4+i]                                     [8,4,2,1]
    head    [dropout head_dropout, training only] 1x1 conv (with bias) -> num_classes

Blocks: BasicBlock (expansion 1: 3x3x3 conv, BN, ReLU, 3x3x3 conv, BN, +residual, ReLU)
or Bottleneck (expansion 4: 1-3-1 convs); the residual goes through a 1x1 conv + BN when
the channel count changes. The head takes ``PLANES[7] * expansion`` channels (MinkowskiEngine's
example hard-codes ``PLANES[7]``, which only matches BasicBlock).

Every sparse layer is built through a backend object (:func:`pcseg.sparse.get_backend`),
so the same definition runs on the pure-PyTorch engine or on an adapter.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from pcseg.sparse.backends import SparseBackend, TorchBackend, get_backend
from pcseg.sparse.fuse import fold_pairs
from pcseg.sparse.tensor import SparseTensor

DEFAULT_PLANES = (32, 64, 128, 256, 256, 128, 96, 96)
INIT_DIM = 32


class BasicBlock(nn.Module):
    """Two 3x3x3 submanifold convs with BN/ReLU and a residual connection (expansion 1)."""

    expansion = 1

    def __init__(
        self,
        backend: SparseBackend,
        inplanes: int,
        planes: int,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        bn_momentum: float = 0.1,
        key: str | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.conv1 = backend.subm_conv(inplanes, planes, 3, dilation, key=key)
        self.norm1 = backend.batch_norm(planes, momentum=bn_momentum)
        self.conv2 = backend.subm_conv(planes, planes, 3, dilation, key=key)
        self.norm2 = backend.batch_norm(planes, momentum=bn_momentum)
        self.relu = backend.relu(inplace=True)
        self.downsample = downsample

    def forward(self, x: Any) -> Any:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = self.downsample(x) if self.downsample is not None else x
        return self.relu(self.backend.add(out, residual))


class Bottleneck(nn.Module):
    """1x1 -> 3x3x3 -> 1x1 (x4 channels) submanifold convs with a residual (expansion 4)."""

    expansion = 4

    def __init__(
        self,
        backend: SparseBackend,
        inplanes: int,
        planes: int,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        bn_momentum: float = 0.1,
        key: str | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.conv1 = backend.subm_conv(inplanes, planes, 1, key=key)
        self.norm1 = backend.batch_norm(planes, momentum=bn_momentum)
        self.conv2 = backend.subm_conv(planes, planes, 3, dilation, key=key)
        self.norm2 = backend.batch_norm(planes, momentum=bn_momentum)
        self.conv3 = backend.subm_conv(planes, planes * self.expansion, 1, key=key)
        self.norm3 = backend.batch_norm(planes * self.expansion, momentum=bn_momentum)
        self.relu = backend.relu(inplace=True)
        self.downsample = downsample

    def forward(self, x: Any) -> Any:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        residual = self.downsample(x) if self.downsample is not None else x
        return self.relu(self.backend.add(out, residual))


BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class MinkUNet(nn.Module):
    """MinkUNet (MinkowskiEngine ``MinkUNetBase``); subclasses set BLOCK / LAYERS / PLANES.

    Args:
        in_channels: input feature channels C_in.
        num_classes: output classes K.
        backend: backend name (``torch`` / ``minkowski`` / ``spconv``), a backend object,
            or None (``$PCSEG_SPARSE_BACKEND``, default ``torch``).
        bn_momentum: BatchNorm momentum of the residual blocks (MinkowskiEngine: 0.1).
        head_dropout: dropout probability in [0, 1) on the classifier's input (official
            ERDA RandLA-Net: 0.5, ``dp.5``); 0 (default): no dropout layer at all.

    ``forward(x: SparseTensor) -> (logits (M, K), features (M, feature_dim))`` with rows
    in the order of ``x``'s coordinates; ``features`` are the last decoder features, always
    the clean ones; in training mode with ``head_dropout > 0`` the logits are computed from
    the dropped-out features (eval mode: no dropout).
    """

    BLOCK: type[nn.Module] = BasicBlock
    LAYERS: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 2, 2)
    PLANES: tuple[int, ...] = DEFAULT_PLANES
    INIT_DIM: int = INIT_DIM

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        backend: str | SparseBackend | None = None,
        bn_momentum: float = 0.1,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= float(head_dropout) < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {head_dropout}")
        if len(self.LAYERS) != 8 or len(self.PLANES) != 8:
            raise ValueError(f"{type(self).__name__}: LAYERS and PLANES need 8 entries each")
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}"
            )
        be = (
            backend
            if (backend is not None and not isinstance(backend, str))
            else get_backend(backend)
        )
        self.backend = be
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        block, exp, P, L = self.BLOCK, self.BLOCK.expansion, self.PLANES, self.LAYERS  # type: ignore[attr-defined]
        self._bn_momentum = bn_momentum

        self.inplanes = self.INIT_DIM
        self.conv0p1s1 = be.subm_conv(in_channels, self.inplanes, 5, key="s1k5")
        self.bn0 = be.batch_norm(self.inplanes)
        self.relu = be.relu(inplace=True)

        self.conv1p1s2 = be.down_conv(self.inplanes, self.inplanes, 2, 2, key="down1")
        self.bn1 = be.batch_norm(self.inplanes)
        self.block1 = self._make_layer(block, P[0], L[0], key="s2")
        self.conv2p2s2 = be.down_conv(self.inplanes, self.inplanes, 2, 2, key="down2")
        self.bn2 = be.batch_norm(self.inplanes)
        self.block2 = self._make_layer(block, P[1], L[1], key="s4")
        self.conv3p4s2 = be.down_conv(self.inplanes, self.inplanes, 2, 2, key="down4")
        self.bn3 = be.batch_norm(self.inplanes)
        self.block3 = self._make_layer(block, P[2], L[2], key="s8")
        self.conv4p8s2 = be.down_conv(self.inplanes, self.inplanes, 2, 2, key="down8")
        self.bn4 = be.batch_norm(self.inplanes)
        self.block4 = self._make_layer(block, P[3], L[3], key="s16")

        self.convtr4p16s2 = be.up_conv(self.inplanes, P[4], 2, 2, key="down8")
        self.bntr4 = be.batch_norm(P[4])
        self.inplanes = P[4] + P[2] * exp
        self.block5 = self._make_layer(block, P[4], L[4], key="s8")
        self.convtr5p8s2 = be.up_conv(self.inplanes, P[5], 2, 2, key="down4")
        self.bntr5 = be.batch_norm(P[5])
        self.inplanes = P[5] + P[1] * exp
        self.block6 = self._make_layer(block, P[5], L[5], key="s4")
        self.convtr6p4s2 = be.up_conv(self.inplanes, P[6], 2, 2, key="down2")
        self.bntr6 = be.batch_norm(P[6])
        self.inplanes = P[6] + P[0] * exp
        self.block7 = self._make_layer(block, P[6], L[6], key="s2")
        self.convtr7p2s2 = be.up_conv(self.inplanes, P[7], 2, 2, key="down1")
        self.bntr7 = be.batch_norm(P[7])
        self.inplanes = P[7] + self.INIT_DIM
        self.block8 = self._make_layer(block, P[7], L[7], key="s1")

        self.feature_dim = P[7] * exp
        self.final = nn.Linear(self.feature_dim, num_classes, bias=True)
        self.head_dropout = float(head_dropout)
        # no layer at 0: no random draw, the network is exactly the one without the option
        self.dropout = nn.Dropout(self.head_dropout) if self.head_dropout > 0 else None
        self._init_norms()

    def _make_layer(
        self, block: type[nn.Module], planes: int, blocks: int, key: str
    ) -> nn.Sequential:
        be = self.backend
        exp = block.expansion  # type: ignore[attr-defined]
        downsample = None
        if self.inplanes != planes * exp:
            downsample = nn.Sequential(
                be.subm_conv(self.inplanes, planes * exp, 1, key=key),
                be.batch_norm(planes * exp),
            )
        layers = [
            block(
                be,
                self.inplanes,
                planes,
                downsample=downsample,
                bn_momentum=self._bn_momentum,
                key=key,
            )
        ]
        self.inplanes = planes * exp
        for _ in range(1, blocks):
            layers.append(block(be, self.inplanes, planes, bn_momentum=self._bn_momentum, key=key))
        return nn.Sequential(*layers)

    def _init_norms(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    def forward(self, x: SparseTensor) -> tuple[Tensor, Tensor]:
        """(logits (M, num_classes), features (M, feature_dim)) for the M voxels of ``x``."""
        if isinstance(x, SparseTensor) and x.feats.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected {self.in_channels} input channels, "
                f"got {x.feats.shape[1]}"
            )
        be = self.backend
        inp = be.from_sparse_tensor(x)
        out_p1 = self.relu(self.bn0(self.conv0p1s1(inp)))

        out = self.relu(self.bn1(self.conv1p1s2(out_p1)))
        out_b1p2 = self.block1(out)
        out = self.relu(self.bn2(self.conv2p2s2(out_b1p2)))
        out_b2p4 = self.block2(out)
        out = self.relu(self.bn3(self.conv3p4s2(out_b2p4)))
        out_b3p8 = self.block3(out)
        out = self.relu(self.bn4(self.conv4p8s2(out_b3p8)))
        out = self.block4(out)

        out = self.relu(self.bntr4(self.convtr4p16s2(out)))
        out = self.block5(be.cat(out, out_b3p8))
        out = self.relu(self.bntr5(self.convtr5p8s2(out)))
        out = self.block6(be.cat(out, out_b2p4))
        out = self.relu(self.bntr6(self.convtr6p4s2(out)))
        out = self.block7(be.cat(out, out_b1p2))
        out = self.relu(self.bntr7(self.convtr7p2s2(out)))
        out = self.block8(be.cat(out, out_p1))

        feats = be.features(out)
        if self.dropout is None:
            return self.final(feats), feats
        return self.final(self.dropout(feats)), feats

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """Every ``(owner, conv_name, bn_name)`` whose batch norm directly follows the conv
        (stem, strided / transposed convs, the convs of every block and its shortcut)."""
        pairs: list[tuple[nn.Module, str, str]] = [(self, "conv0p1s1", "bn0")]
        pairs += [(self, f"conv{i}p{2 ** (i - 1)}s2", f"bn{i}") for i in range(1, 5)]
        pairs += [(self, f"convtr{i}p{2 ** (8 - i)}s2", f"bntr{i}") for i in range(4, 8)]
        for i in range(1, 9):
            for blk in getattr(self, f"block{i}"):
                pairs += [
                    (blk, f"conv{j}", f"norm{j}") for j in (1, 2, 3) if hasattr(blk, f"conv{j}")
                ]
                if blk.downsample is not None:
                    pairs.append((blk.downsample, "0", "1"))
        return pairs

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, num_classes={self.num_classes}, "
            f"feature_dim={self.feature_dim}, backend={getattr(self.backend, 'name', '?')}"
            + (f", head_dropout={self.head_dropout}" if self.head_dropout else "")
        )


def _variant(name: str, base: type[MinkUNet], **attrs: Any) -> type[MinkUNet]:
    cls = type(
        name,
        (base,),
        dict(
            attrs,
            __doc__=f"{name}: MinkowskiEngine examples/minkunet.py variant "
            f"(BLOCK={attrs.get('BLOCK', base.BLOCK).__name__}, "
            f"LAYERS={attrs.get('LAYERS', base.LAYERS)}, "
            f"PLANES={attrs.get('PLANES', base.PLANES)}).",
        ),
    )
    cls.__module__ = __name__
    return cls


MinkUNet14 = _variant("MinkUNet14", MinkUNet, BLOCK=BasicBlock, LAYERS=(1, 1, 1, 1, 1, 1, 1, 1))
MinkUNet18 = _variant("MinkUNet18", MinkUNet, BLOCK=BasicBlock, LAYERS=(2, 2, 2, 2, 2, 2, 2, 2))
MinkUNet34 = _variant("MinkUNet34", MinkUNet, BLOCK=BasicBlock, LAYERS=(2, 3, 4, 6, 2, 2, 2, 2))
MinkUNet50 = _variant("MinkUNet50", MinkUNet, BLOCK=Bottleneck, LAYERS=(2, 3, 4, 6, 2, 2, 2, 2))
MinkUNet101 = _variant("MinkUNet101", MinkUNet, BLOCK=Bottleneck, LAYERS=(2, 3, 4, 23, 2, 2, 2, 2))
MinkUNet14A = _variant("MinkUNet14A", MinkUNet14, PLANES=(32, 64, 128, 256, 128, 128, 96, 96))
MinkUNet14B = _variant("MinkUNet14B", MinkUNet14, PLANES=(32, 64, 128, 256, 128, 128, 128, 128))
MinkUNet14C = _variant("MinkUNet14C", MinkUNet14, PLANES=(32, 64, 128, 256, 192, 192, 128, 128))
MinkUNet14D = _variant("MinkUNet14D", MinkUNet14, PLANES=(32, 64, 128, 256, 384, 384, 384, 384))
MinkUNet18A = _variant("MinkUNet18A", MinkUNet18, PLANES=(32, 64, 128, 256, 128, 128, 96, 96))
MinkUNet18B = _variant("MinkUNet18B", MinkUNet18, PLANES=(32, 64, 128, 256, 128, 128, 128, 128))
MinkUNet18D = _variant("MinkUNet18D", MinkUNet18, PLANES=(32, 64, 128, 256, 384, 384, 384, 384))
MinkUNet34A = _variant("MinkUNet34A", MinkUNet34, PLANES=(32, 64, 128, 256, 256, 128, 64, 64))
MinkUNet34B = _variant("MinkUNet34B", MinkUNet34, PLANES=(32, 64, 128, 256, 256, 128, 64, 32))
MinkUNet34C = _variant("MinkUNet34C", MinkUNet34, PLANES=(32, 64, 128, 256, 256, 128, 96, 96))

MODELS: dict[str, type[MinkUNet]] = {
    c.__name__: c
    for c in (
        MinkUNet14,
        MinkUNet14A,
        MinkUNet14B,
        MinkUNet14C,
        MinkUNet14D,
        MinkUNet18,
        MinkUNet18A,
        MinkUNet18B,
        MinkUNet18D,
        MinkUNet34,
        MinkUNet34A,
        MinkUNet34B,
        MinkUNet34C,
        MinkUNet50,
        MinkUNet101,
    )
}


def build_model(
    name: str,
    in_channels: int,
    num_classes: int,
    backend: str | None = None,
    head_dropout: float = 0.0,
) -> MinkUNet:
    """Instantiate a MinkUNet by name (e.g. ``"MinkUNet34C"``).

    Args:
        name: one of :data:`MODELS` (case-sensitive, as in MinkowskiEngine).
        in_channels: input feature channels (3 for RGB, 1 for remission, ...).
        num_classes: number of output classes.
        backend: sparse backend name or None (``$PCSEG_SPARSE_BACKEND``, default torch).
        head_dropout: dropout on the classifier's input in training mode (0: none).
    Raises:
        ValueError: unknown name (the message lists the valid ones), head_dropout outside
            [0, 1).
    """
    cls = MODELS.get(name)
    if cls is None:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    return cls(in_channels, num_classes, backend=backend, head_dropout=head_dropout)


def fused_for_inference(model: nn.Module) -> nn.Module:
    """For a pure-PyTorch-engine :class:`MinkUNet`: an eval-mode copy with every batch norm
    folded into the convolution before it (:func:`pcseg.sparse.fuse.fold_batch_norm`), its
    outputs equal to the eval-mode model's up to float rounding, ``model`` untouched. Any
    other model / backend (whose layers are not this engine's): ``model`` itself, set to
    eval mode."""
    if not (isinstance(model, MinkUNet) and isinstance(model.backend, TorchBackend)):
        return model.eval()
    out = copy.deepcopy(model).eval()
    fold_pairs(out.conv_bn_pairs())
    return out


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "MinkUNet",
    "BasicBlock",
    "Bottleneck",
    "MODELS",
    "build_model",
    "count_parameters",
    "fused_for_inference",
    *MODELS,
]
