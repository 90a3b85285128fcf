"""Batch norm folded into the preceding convolution (inference only).

In eval mode ``BN(conv(x)) = conv(x) * s + (beta - mean * s)`` with
``s = gamma / sqrt(var + eps)``, so the pair is one convolution with weight ``W * s`` (scaled
along C_out) and bias ``(b - mean) * s + beta``: one pass over the features fewer per layer,
and the bias is written by the convolution itself (:func:`pcseg.sparse.functional.
sparse_conv_inference`). The fold is computed in float64 and stored in the weight's dtype.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .nn import _ConvBase


def fold_batch_norm(conv: _ConvBase, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold the eval-mode ``bn`` (C_out channels, running statistics) into ``conv`` in place:
    ``conv.weight`` (K, C_in, C_out) scaled per output channel, ``conv.bias`` set.

    Raises ValueError when ``bn`` is in training mode, has no running statistics, or its
    channel count is not the conv's ``out_channels``."""
    if bn.training:
        raise ValueError("fold_batch_norm: the batch norm is in training mode (call .eval())")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batch_norm: the batch norm keeps no running statistics")
    if bn.num_features != conv.out_channels:
        raise ValueError(
            f"fold_batch_norm: batch norm of {bn.num_features} channels after a conv with "
            f"{conv.out_channels} output channels"
        )
    with torch.no_grad():
        w = conv.weight
        d = torch.float64
        scale = torch.rsqrt(bn.running_var.to(d) + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.to(d)
        shift = -bn.running_mean.to(d) * scale
        if conv.bias is not None:
            shift = shift + conv.bias.to(d) * scale
        if bn.bias is not None:
            shift = shift + bn.bias.to(d)
        conv.weight = nn.Parameter((w.to(d) * scale).to(w.dtype), requires_grad=w.requires_grad)
        conv.bias = nn.Parameter(shift.to(w.dtype), requires_grad=w.requires_grad)


def fold_pairs(pairs: Iterable[tuple[nn.Module, str, str]]) -> int:
    """For every ``(owner, conv_name, bn_name)``: fold ``owner.<bn_name>`` into
    ``owner.<conv_name>`` (:func:`fold_batch_norm`) and replace the batch norm by
    ``nn.Identity``. Returns the number of pairs folded; a pair whose conv is not a
    pure-PyTorch engine conv raises TypeError."""
    n = 0
    for owner, conv_name, bn_name in pairs:
        conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
        if not isinstance(conv, _ConvBase):
            raise TypeError(
                f"fold_pairs: {conv_name} is a {type(conv).__name__}, not a pcseg.sparse conv"
            )
        fold_batch_norm(conv, bn)
        setattr(owner, bn_name, nn.Identity())
        n += 1
    return n
