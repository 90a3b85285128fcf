"""Confidence-thresholded hard pseudo-labels (the selective self-training ERDA argues against).

Loss = CE(q, y) on the labelled voxels + w * CE(q, argmax q) averaged over the UNLABELLED
voxels (``weak_labels == -1``) whose max softmax probability is strictly greater than the
threshold. The hard pseudo-label ``argmax q`` and the selection are computed from the
DETACHED prediction, so the gradient of the pseudo term w.r.t. the logits of a selected
voxel is ``(q - onehot(argmax q)) / N_selected``. When no voxel is selected the term is 0
(connected to the graph, not NaN).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from pcseg.methods.base import Method
from pcseg.methods.common import (
    NonNegative,
    SupervisionOptions,
    UnitInterval,
    add_propagated_term,
    check_inputs,
    class_weights_tensor,
    hidden_accuracy,
    resolve_options,
    supervised_cross_entropy,
    supervision_diagnostics,
    zero_with_graph,
)


class PseudoThresholdOptions(SupervisionOptions):
    """Options of :class:`PseudoThreshold` (see its docstring)."""

    #: w, weight of the pseudo-label term (the FixMatch / U2PL unsupervised-loss weight)
    weight: NonNegative = 1.0
    #: a voxel is selected when max_k q_k > threshold
    threshold: UnitInterval = 0.95


class PseudoThreshold(Method):
    """Labelled CE + w * CE on confident unlabelled voxels with detached hard pseudo-labels.

    Args:
        num_classes: K.
        feature_dim: D (unused; part of the common constructor).
        options: a validated :class:`PseudoThresholdOptions`, or keyword options:
        weight: w, weight of the pseudo-label term (default 1.0, the FixMatch / U2PL
            unsupervised-loss weight).
        threshold: a voxel is selected when max_k q_k > threshold (default 0.95).
        class_weights: optional K weights of the labelled cross-entropy.
        label_smoothing: label smoothing of the labelled cross-entropy (default 0).

    forward returns ``loss`` (= loss_sup + w * loss_pseudo), ``loss_sup``, ``loss_pseudo``
    (mean CE over the selected voxels), ``diag/pseudo_selected_frac`` (selected / unlabelled
    voxels; omitted when there is no unlabelled voxel), ``diag/pseudo_acc`` (accuracy of the
    selected pseudo-labels vs the hidden ground truth; omitted when undefined),
    ``diag/pred_acc_unlabelled``, ``diag/labelled_frac``.
    """

    name = "pseudo_threshold"
    Options = PseudoThresholdOptions
    class_weights: torch.Tensor | None

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        options: PseudoThresholdOptions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, feature_dim)
        opts = resolve_options(PseudoThresholdOptions, self.name, options, kwargs)
        self.options = opts
        self.weight = opts.weight
        self.threshold = opts.threshold
        self.label_smoothing = opts.label_smoothing
        self.register_buffer(
            "class_weights",
            class_weights_tensor(opts.class_weights, self.num_classes, self.name),
            persistent=False,
        )

    @torch.no_grad()
    def select(
        self, logits: torch.Tensor, weak_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Detached selection: ((M,) bool mask of selected unlabelled voxels, (M,) argmax q)."""
        x = logits.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        conf, pseudo = torch.softmax(x, dim=1).max(1)
        return (weak_labels == -1) & (conf > self.threshold), pseudo

    def forward(
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """See :meth:`pcseg.methods.base.Method.forward`; ``features`` are ignored."""
        weak = check_inputs(logits, None, batch, self.num_classes, None, self.name)
        loss_sup = supervised_cross_entropy(logits, weak, self.class_weights, self.options)
        sel, pseudo = self.select(logits, weak)
        if bool(sel.any()):
            loss_pseudo = F.cross_entropy(logits[sel], pseudo[sel])
        else:
            loss_pseudo = zero_with_graph(logits)
        out: dict[str, torch.Tensor] = {
            "loss": loss_sup + self.weight * loss_pseudo,
            "loss_sup": loss_sup,
            "loss_pseudo": loss_pseudo,
        }
        unl = weak == -1
        n_unl = int(unl.sum())
        if n_unl:
            out["diag/pseudo_selected_frac"] = torch.tensor(
                float(sel.sum()) / n_unl, device=logits.device
            )
        acc = hidden_accuracy(pseudo, batch, sel)
        if acc is not None:
            out["diag/pseudo_acc"] = acc
        add_propagated_term(out, logits, batch, self.options, self.class_weights, self.name)
        out.update(supervision_diagnostics(logits, weak, batch))
        return out
