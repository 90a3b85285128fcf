"""Segmentation networks: the MinkUNet family on pluggable sparse backends.

``build_model(name, in_channels, num_classes, backend=None, head_dropout=0.0) -> MinkUNet``;
``model(x: SparseTensor) -> (logits (M, K), features (M, model.feature_dim))`` (with
``head_dropout`` the training-mode logits come from dropped-out features, the features are
clean).
"""

from .minkunet import (
    MODELS,
    BasicBlock,
    Bottleneck,
    MinkUNet,
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
    build_model,
    count_parameters,
)

__all__ = [
    "MODELS",
    "BasicBlock",
    "Bottleneck",
    "MinkUNet",
    "MinkUNet14",
    "MinkUNet14A",
    "MinkUNet14B",
    "MinkUNet14C",
    "MinkUNet14D",
    "MinkUNet18",
    "MinkUNet18A",
    "MinkUNet18B",
    "MinkUNet18D",
    "MinkUNet34",
    "MinkUNet34A",
    "MinkUNet34B",
    "MinkUNet34C",
    "MinkUNet50",
    "MinkUNet101",
    "build_model",
    "count_parameters",
]
