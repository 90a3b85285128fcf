"""Supervised-only baseline: cross-entropy on the weakly labelled voxels only."""

from __future__ import annotations

from typing import Any

import torch

from pcseg.methods.base import Method
from pcseg.methods.common import (
    SupervisionOptions,
    add_propagated_term,
    check_inputs,
    class_weights_tensor,
    resolve_options,
    supervised_cross_entropy,
    supervision_diagnostics,
)


class SupervisedOptions(SupervisionOptions):
    """Options of :class:`SupervisedOnly`: ``class_weights`` (default none),
    ``class_weighting`` (default ``"normalised"``, see
    :class:`~pcseg.methods.common.SupervisionOptions`) and ``label_smoothing`` in [0, 1)
    (default 0) of the cross-entropy."""


class SupervisedOnly(Method):
    """Cross-entropy on labelled points only (``weak_labels >= 0``).

    Args:
        num_classes: K.
        feature_dim: D (unused; part of the common constructor).
        options: a validated :class:`SupervisedOptions`, or keyword options:
            class_weights: optional K per-class weights of the cross-entropy (default none).
            class_weighting: ``'normalised'`` (default) | ``'raw'`` | ``'official_raw'``
                (see :class:`~pcseg.methods.common.SupervisionOptions`).
            label_smoothing: label smoothing of the cross-entropy in [0, 1) (default 0).

    Returns from forward: ``loss`` (= ``loss_sup``), ``diag/labelled_frac`` (fraction of
    labelled voxels) and ``diag/pred_acc_unlabelled`` (accuracy of argmax q on the
    unlabelled voxels against the hidden ground truth, when available). In training mode
    argmax q on the unlabelled voxels also enters the window confusion ``pred_unlabelled``
    (``diag/pred_unlabelled_macc`` / ``_miou`` from :meth:`window_diagnostics`).
    """

    name = "supervised"
    Options = SupervisedOptions
    class_weights: torch.Tensor | None

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        options: SupervisedOptions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, feature_dim)
        opts = resolve_options(SupervisedOptions, self.name, options, kwargs)
        self.options = opts
        self.label_smoothing = opts.label_smoothing
        w = class_weights_tensor(opts.class_weights, self.num_classes, self.name)
        # a buffer so it follows .to(device); not persistent: it comes from the config
        self.register_buffer("class_weights", w, persistent=False)

    def forward(
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """See :meth:`pcseg.methods.base.Method.forward`; ``features`` are ignored."""
        weak = check_inputs(logits, None, batch, self.num_classes, None, self.name)
        loss_sup = supervised_cross_entropy(logits, weak, self.class_weights, self.options)
        out: dict[str, torch.Tensor] = {"loss": loss_sup, "loss_sup": loss_sup}
        add_propagated_term(out, logits, batch, self.options, self.class_weights, self.name)
        out.update(supervision_diagnostics(logits, weak, batch))
        self.record_hidden("pred_unlabelled", logits.detach().argmax(1), batch, weak == -1)
        return out
