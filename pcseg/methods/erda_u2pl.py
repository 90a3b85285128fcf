"""ERDA + U2PL negatives: ERDA's soft pseudo-label loss plus U2PL's contrastive term.

``loss = ERDA loss + lambda_c * L_contrastive`` where

* the ERDA loss is computed by an owned :class:`pcseg.methods.erda.ERDA` (composition:
  ``CE on labelled voxels + w * mean_unlabelled H(p, q)``, prototype pseudo-labeller,
  all of ERDA's options via ``erda={...}``);
* ``L_contrastive`` is U2PL's InfoNCE term (:class:`pcseg.methods.contrastive.U2PLContrast`):
  anchors of class c are labelled voxels of class c and reliable unlabelled voxels whose
  predicted class is c (with prob(c) > 0.3), the positive is the class centre, and the
  negatives come from per-class FIFO queues filled with unreliable voxels that are
  confidently NOT c (c ranked in [low_rank, high_rank) of the prediction) and with
  labelled voxels of another class that rank c in their top ``low_rank``.

Where the probabilities and the keys come from (``use_teacher``):

* ``True`` (default): an EMA teacher of the student network and representation head, as
  in U2PL (:class:`pcseg.methods.ema_teacher.EMATeacher`, decay ``min(1 - 1/(k+1), ema_decay)``).
  The teacher's probabilities define the entropy split, the ranks and the anchor
  threshold; its representations are the class centres and the queue keys. Costs one
  extra forward pass (no backward) per step.
* ``False``: no teacher; the student's own detached prediction ``softmax(logits)`` and
  detached representations play the teacher's role (cheaper; keys drift faster).

The reliable/unreliable split is U2PL's: among the unlabelled voxels the alpha_t % with
the highest entropy are unreliable, ``alpha_t = alpha_0 (1 - t/T)`` (see
:mod:`pcseg.methods.u2pl`). Only the contrastive term uses it; ERDA's loss still covers
ALL unlabelled voxels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pcseg.methods.common import NonNegative, resolve_options
from pcseg.methods.contrastive import ContrastOptions, U2PLContrast
from pcseg.methods.ema_teacher import TeacherOptions, TeacherSchedule
from pcseg.methods.entropy_split import (
    EntropySplitOptions,
    split_diagnostics,
    teacher_split,
)
from pcseg.methods.erda import ERDA, ERDAOptions


class ERDAWithU2PLNegativesOptions(ContrastOptions, EntropySplitOptions, TeacherOptions):
    """Options of :class:`ERDAWithU2PLNegatives`: those below plus the contrastive term's,
    the entropy split's and the teacher's."""

    #: options of the owned ERDA loss (None: ERDA's defaults)
    erda: ERDAOptions | None = None
    #: lambda_c, weight of the contrastive term
    lambda_c: NonNegative = 0.1
    #: EMA teacher (True) or the detached student (False) as the source of
    #: probabilities and keys
    use_teacher: bool = True


class ERDAWithU2PLNegatives(TeacherSchedule):
    """ERDA loss + lambda_c * U2PL contrastive loss with unreliable negatives.

    Args:
        num_classes: K.
        feature_dim: D of the decoder features.
        options: a validated :class:`ERDAWithU2PLNegativesOptions`, or keyword options:
        erda: keyword arguments of :class:`pcseg.methods.erda.ERDA` (weight, tau,
            momentum, variant, class_weights, label_smoothing); defaults are ERDA's.
        lambda_c: weight of the contrastive term (0.1).
        use_teacher: EMA teacher (True) or the detached student (False) as the source of
            probabilities and keys.
        alpha_0, ema_decay, teacher_bn, anchor_split: as in :class:`pcseg.methods.u2pl.U2PL`
            (20, 0.99, "train", "reliable").
        rep_dim, queue_capacity, num_anchors, num_negatives, temperature,
        anchor_prob_threshold, neg_prob_threshold, low_rank, high_rank, min_queue, seed:
            see :class:`pcseg.methods.contrastive.ContrastOptions`.
        input_builder: teacher input builder (default: :func:`pcseg.models.inputs.network_input`).

    forward returns ERDA's terms and diagnostics (``loss_sup``, ``loss_erda``,
    ``diag/pseudo_acc`` = ERDA's p accuracy, ...), ``loss_contrastive``, ``loss`` (=
    ERDA's ``loss`` + lambda_c * ``loss_contrastive``) and ``diag/teacher_acc`` (argmax of
    the teacher / detached student on unlabelled voxels vs hidden GT),
    ``diag/reliable_frac``, ``diag/reliable_acc``, ``diag/queue_fill``, ``diag/alpha_t``,
    ``diag/contrast_classes``, ``diag/neg_keys_pushed``.
    """

    name = "erda_u2pl"
    Options = ERDAWithU2PLNegativesOptions

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        options: ERDAWithU2PLNegativesOptions | None = None,
        *,
        input_builder: Callable[[dict[str, Any], torch.device], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, feature_dim)
        opts = resolve_options(ERDAWithU2PLNegativesOptions, self.name, options, kwargs)
        self.options = opts
        self.erda = ERDA(self.num_classes, self.feature_dim, opts.erda)
        self.lambda_c = opts.lambda_c
        self.use_teacher = opts.use_teacher
        self.alpha_0 = opts.alpha_0
        self.anchor_split = opts.anchor_split
        self.contrast = U2PLContrast(self.num_classes, self.feature_dim, opts)
        self.init_teacher(opts, input_builder, use_teacher=self.use_teacher)

    @torch.no_grad()
    def pseudo_label_probs(
        self,
        logits: torch.Tensor,
        features: torch.Tensor,
        batch: dict[str, Any] | None = None,
    ) -> torch.Tensor | None:
        """ERDA's pseudo-label distribution p (the soft targets of the unlabelled loss)."""
        return self.erda.pseudo_label_probs(logits, features)

    def forward(
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """See :meth:`pcseg.methods.base.Method.forward` and the class docstring."""
        out: dict[str, torch.Tensor] = self.erda(logits, features, batch)  # validates inputs
        weak = batch["weak_labels"].to(device=logits.device, dtype=torch.int64)
        rep_s = self.contrast.rep_head(features)
        if self.teacher is not None:
            prob, rep_t = self.teacher_outputs(batch, logits)
        else:
            prob = torch.softmax(logits.detach().float(), dim=1)
            rep_t = rep_s.detach()
        alpha = self.alpha_t()
        split = teacher_split(prob, weak, alpha, self.anchor_split)
        loss_con, info = self.contrast(
            rep_s,
            rep_t,
            prob,
            weak,
            split["anchor_ok"],
            split["unreliable"],
            update_queues=self.training,
        )
        diags = split_diagnostics(split, batch, self.contrast.queues, alpha)
        if "diag/pseudo_acc" in diags:  # keep ERDA's diag/pseudo_acc (accuracy of p)
            diags["diag/teacher_acc"] = diags.pop("diag/pseudo_acc")
        out.update(diags)
        out["diag/contrast_classes"] = torch.tensor(float(info["classes"]), device=logits.device)
        out["diag/neg_keys_pushed"] = info["pushed"].sum().to(torch.float32).to(logits.device)
        out["loss_contrastive"] = loss_con
        out["loss"] = out["loss"] + self.lambda_c * loss_con.to(out["loss"].dtype)
        return out
