"""Model and method from a config, shared by the trainer and the evaluator.

* :func:`build_model`, :func:`build_method`: the network and the training method.
* :class:`TrainModule`: both as one module (what DDP wraps).
* :func:`bn_buffer_owner`: the buffers averaged over ranks after every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pcseg.config import Config, is_image_data
from pcseg.models.inputs import network_input

if TYPE_CHECKING:
    from pcseg.methods.base import Method


def build_model(cfg: Config, in_channels: int, num_classes: int) -> nn.Module:
    """``pcseg.models.build_model(model.name, in_channels, num_classes, backend,
    head_dropout)``; for image data ``pcseg.models.dense.build_image_model`` (the network of
    ``model.name`` as pixel rows; ``model.init_dim`` is the U-Net's width, ``backbone`` /
    ``output_stride`` / ``pretrained`` DeepLabV3+'s).

    ``model.backend: auto`` passes None (``$PCSEG_SPARSE_BACKEND``, else the default backend).
    ``model.planes`` / ``layers`` / ``init_dim`` (optional) make a subclass of the named
    network with those stage widths / depths / stem width.
    """
    from pcseg import models

    if is_image_data(cfg.data):
        from pcseg.models.dense import build_image_model

        m = cfg.model
        return build_image_model(
            m.name,
            in_channels,
            num_classes,
            width=m.init_dim,
            backbone=m.backbone,
            output_stride=m.output_stride,
            pretrained=m.pretrained,
            head_dropout=m.head_dropout,
        )
    backend = None if cfg.model.backend in ("auto", "") else cfg.model.backend
    m = cfg.model
    if m.planes is None and m.layers is None and m.init_dim is None:
        return models.build_model(
            m.name, in_channels, num_classes, backend=backend, head_dropout=m.head_dropout
        )
    if m.name not in models.MODELS:
        raise ValueError(f"unknown model {m.name!r}; valid names: {', '.join(models.MODELS)}")
    base = models.MODELS[m.name]
    attrs: dict[str, Any] = {}
    if m.planes is not None:
        attrs["PLANES"] = tuple(int(v) for v in m.planes)
    if m.layers is not None:
        attrs["LAYERS"] = tuple(int(v) for v in m.layers)
    if m.init_dim is not None:
        attrs["INIT_DIM"] = int(m.init_dim)
    custom = type(f"{base.__name__}Custom", (base,), attrs)
    return custom(in_channels, num_classes, backend=backend, head_dropout=m.head_dropout)


def model_feature_dim(model: nn.Module) -> int:
    """Width of the network's per-voxel features (``model.feature_dim``)."""
    width: Any = model.feature_dim
    return int(width)


def build_method(cfg: Config, num_classes: int, feature_dim: int) -> Method:
    """``pcseg.methods.build_method(method.name, num_classes, feature_dim, options=cfg.method)``
    (``cfg.method`` is an instance of the method's own ``Options``)."""
    from pcseg.methods import build_method as _build

    return _build(cfg.method.name, num_classes, feature_dim, options=cfg.method)


class TrainModule(nn.Module):
    """Model + method as one module (so DDP synchronises the method's trainable head)."""

    def __init__(self, model: nn.Module, method: Method) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Loss terms of the method for one batch (see Method.forward)."""
        logits, feats = self.model(network_input(batch))
        return self.method(logits, feats, batch)


def bn_buffer_owner(module: TrainModule) -> nn.Module:
    """A module view holding the buffers :func:`pcseg.distributed.sync_buffers` must average.

    All buffers of the network, plus the buffers of BatchNorm layers inside the method
    (e.g. ERDA's projection head); the method's other buffers are its own business.
    """
    holder = nn.Module()
    holder.model = module.model
    bns = [m for m in module.method.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    holder.method_bns = nn.ModuleList(bns)
    return holder


__all__ = ["TrainModule", "bn_buffer_owner", "build_method", "build_model", "model_feature_dim"]
