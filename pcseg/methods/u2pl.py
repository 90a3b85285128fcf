"""U2PL: Using Unreliable Pseudo-Labels (Wang et al., CVPR 2022), adapted to sparse 3D labels.

The 2D method trains on labelled images plus unlabelled images. Here one batch of voxels
holds both: voxels with ``weak_labels >= 0`` are "labelled", voxels with
``weak_labels == -1`` are "unlabelled". Student and teacher see the SAME input (the batch's
voxels; no separate strong augmentation).

Per training step (forward):

The pieces live in their own modules: the EMA teacher in :mod:`pcseg.methods.ema_teacher`,
the entropy split in :mod:`pcseg.methods.entropy_split`, the contrastive term in
:mod:`pcseg.methods.contrastive`, the class queues in :mod:`pcseg.methods.class_queue`.

1. Teacher (an EMA copy of the student network AND of the representation head) runs on
   ``SparseTensor(batch["coords"], batch["feats"])`` under ``torch.no_grad``:
   teacher probabilities ``P = softmax(teacher logits)`` (M, K) and teacher
   representations ``r_t = rep_head_t(teacher features)`` (M, R).
2. Entropy ``H_i = -sum_k P_ik log(P_ik + 1e-10)``. Among the UNLABELLED voxels, the
   ``alpha_t`` % with the highest entropy are *unreliable*, the rest *reliable*:
   ``reliable = H < percentile(H_unlabelled, 100 - alpha_t)`` (linear interpolation, as
   ``numpy.percentile``), ``alpha_t = alpha_0 (1 - t/T)``, ``alpha_0 = 20``, t = optimiser
   steps taken so far, T = total steps (so alpha_t = alpha_0 before T is known).
   For ``alpha_t <= 0`` every unlabelled voxel is reliable.
3. ``L_unsup`` = mean cross-entropy of the student logits on the reliable unlabelled voxels
   with the teacher argmax as target (plain mean; the official 2D code additionally
   rescales by #pixels / #kept, which we do not).
4. Contrastive term (:class:`U2PLContrast`) on the representation head
   ``g = Linear(D, D) -> BatchNorm1d -> ReLU -> Linear(D, R)`` (R = ``rep_dim``):

   * negatives: per-class FIFO queues of teacher representations (detached). For class c
     the step pushes (a) unreliable unlabelled voxels whose teacher ranking puts c at a
     0-based position in ``[low_rank, min(high_rank, K))`` (defaults 3 and 20, i.e. the
     4th to 20th most likely classes: "confidently not c"), and (b) labelled voxels of
     another class whose TEACHER prediction ranks c in its top ``low_rank`` (positions
     ``[0, low_rank)``), both also requiring ``P_ic < neg_prob_threshold`` (delta_n = 1,
     i.e. no extra condition, as in the official config). Keys of this step are pushed
     BEFORE the negatives are sampled (as in the official code). Under DDP the keys of
     all ranks are all-gathered first (rank order) so the queues stay identical.
   * anchor candidates of class c: labelled voxels of class c, and reliable unlabelled
     voxels whose teacher argmax is c (``anchor_split="reliable"``, default; the official
     2D code instead takes the ``alpha_t`` % LOWEST-entropy unlabelled pixels for the
     contrastive anchors: ``anchor_split="lowest"``). Anchors are the candidates with
     ``P_ic > anchor_prob_threshold`` (0.3); at most ``num_anchors`` (256) per class, drawn
     WITHOUT replacement by the method's own ``torch.Generator`` (the official code draws
     256 with replacement).
   * positive: the class centre = mean teacher representation over the anchor
     CANDIDATES of class c (before the probability threshold, as in the official code).
   * negatives per anchor: ``num_negatives`` (50) keys drawn uniformly WITH replacement
     from class c's queue.
   * InfoNCE on cosine similarities with temperature T_c = 0.5:
     ``l = -log(exp(cos(a,pos)/T_c) / (exp(cos(a,pos)/T_c) + sum_n exp(cos(a,n)/T_c)))``,
     averaged over the anchors of a class, then over the classes that have at least one
     anchor and at least ``min_queue`` keys in their queue (classes with an empty queue
     are skipped; the official code divides by all classes with candidates instead).
     Anchors are STUDENT representations (gradient flows to the backbone and the student
     head); positives and negatives are teacher representations (no gradient).

``loss = L_sup + lambda_u L_unsup + lambda_c L_contrastive`` (1.0 and 0.1, the 2D paper's
defaults, kept by :class:`Options`; every shipped point-cloud config sets ``lambda_u`` 0.1 and
a supervised-only warm-up, chosen on a validation area: docs/U2PL_DEFAULTS.md).

EMA teacher: created by :meth:`U2PL.on_train_start` as a deep copy of the student
(``requires_grad=False``); after each optimiser step
``theta_t <- d theta_t + (1 - d) theta_s`` with ``d = min(1 - 1/(k + 1), ema_decay)``,
``k = iteration - sup_only_iterations`` (``iteration`` = the 0-based index of the step just
taken, as passed by the trainer; d = 0, i.e. a plain copy, while k <= 0). Buffers
(BatchNorm running statistics) are copied from the student. The same rule keeps the
teacher representation head an EMA of the student head. Under DDP every rank holds the
same student weights after the step, so the teachers stay identical without
communication.

Teacher BatchNorm mode (``teacher_bn="train"``, default): the teacher runs with batch
statistics, as the official U2PL teacher forward that produces the contrastive
representations and probabilities. This keeps the teacher self-consistent (its own EMA
weights with the statistics of the current batch) instead of mixing EMA weights with the
student's running statistics; its running buffers are then overwritten by the student's
after the step. ``teacher_bn="eval"`` uses the (copied) running statistics instead.
:meth:`U2PL.pseudo_label_probs` always evaluates the teacher in eval mode.

Memory: the queues are ``K * queue_capacity * rep_dim * 4`` bytes of float32 buffers
saved with every checkpoint. Default ``queue_capacity = 10000`` and ``rep_dim = 64``:
13 classes (S3DIS) -> 33 MB, 20 classes (ScanNet) -> 51 MB. The official 30000 x 256
per class would be 400 MB for S3DIS (30000 x 64: 100 MB), impractical for CPU runs and
checkpoints; set ``queue_capacity`` higher on GPU if wanted.

Resume: the teacher is a submodule of the method. A checkpoint loaded BEFORE
:meth:`on_train_start` (when the teacher does not exist yet) keeps the teacher weights
aside and :meth:`on_train_start` loads them into the fresh copy; loading after
``on_train_start`` restores them directly. The sampling generator's state is saved as the
module's extra state, so a resumed run draws the same anchors/negatives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from pcseg.methods.common import (
    NonNegative,
    SupervisionOptions,
    add_propagated_term,
    check_inputs,
    class_weights_tensor,
    resolve_options,
    supervised_cross_entropy,
    supervision_diagnostics,
    zero_with_graph,
)
from pcseg.methods.contrastive import ContrastOptions, U2PLContrast
from pcseg.methods.ema_teacher import TeacherOptions, TeacherSchedule
from pcseg.methods.entropy_split import (
    EntropySplitOptions,
    split_diagnostics,
    teacher_split,
)


class U2PLOptions(SupervisionOptions, ContrastOptions, EntropySplitOptions, TeacherOptions):
    """Options of :class:`U2PL`: the loss weights and warm-up below, plus those of the
    labelled cross-entropy, the contrastive term, the entropy split and the teacher."""

    #: lambda_u, weight of the unsupervised CE on reliable points
    lambda_u: NonNegative = 1.0
    #: lambda_c, weight of the contrastive term
    lambda_c: NonNegative = 0.1
    #: steps with the supervised loss only (the EMA counter starts after them)
    sup_only_iterations: int = Field(0, ge=0)


class U2PL(TeacherSchedule):
    """U2PL for sparse 3D weak labels (see the module docstring).

    Args:
        num_classes: K.
        feature_dim: D of the decoder features.
        options: a validated :class:`U2PLOptions`, or keyword options:
        lambda_u: weight of the unsupervised CE on reliable points (1.0).
        lambda_c: weight of the contrastive term (0.1).
        alpha_0: initial unreliable percentage (20).
        ema_decay: cap of the teacher EMA decay (0.99).
        sup_only_iterations: steps with the supervised loss only (teacher copies the
            student; EMA counter starts after them). Default 0.
        teacher_bn: ``"train"`` | ``"eval"`` BatchNorm mode of the teacher forward (train).
        anchor_split: ``"reliable"`` | ``"lowest"`` (reliable).
        rep_dim, queue_capacity, num_anchors, num_negatives, temperature,
        anchor_prob_threshold, neg_prob_threshold, low_rank, high_rank, min_queue, seed:
            see :class:`U2PLContrast` (64, 10000, 256, 50, 0.5, 0.3, 1.0, 3, 20, 1, 0).
        class_weights, label_smoothing: of the labelled cross-entropy.
        input_builder: ``(batch, device) -> model input`` for the teacher (default
            :func:`pcseg.models.inputs.network_input`, sharing the student's kernel maps).

    forward returns ``loss``, ``loss_sup``, ``loss_unsup``, ``loss_contrastive`` and the
    detached ``diag/pseudo_acc``, ``diag/reliable_frac``, ``diag/reliable_acc``,
    ``diag/queue_fill``, ``diag/alpha_t``, ``diag/contrast_classes``,
    ``diag/neg_keys_pushed``, ``diag/labelled_frac``, ``diag/pred_acc_unlabelled``
    (accuracies omitted when the batch has no hidden labels). During the
    ``sup_only_iterations`` warm-up the teacher is not run and only ``loss_sup`` is non-zero.
    """

    name = "u2pl"
    Options = U2PLOptions
    class_weights: torch.Tensor | None

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        options: U2PLOptions | None = None,
        *,
        input_builder: Callable[[dict[str, Any], torch.device], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, feature_dim)
        opts = resolve_options(U2PLOptions, self.name, options, kwargs)
        self.options = opts
        self.lambda_u = opts.lambda_u
        self.lambda_c = opts.lambda_c
        self.alpha_0 = opts.alpha_0
        self.sup_only_iterations = opts.sup_only_iterations
        self.anchor_split = opts.anchor_split
        self.label_smoothing = opts.label_smoothing
        self.contrast = U2PLContrast(self.num_classes, self.feature_dim, opts)
        self.init_teacher(opts, input_builder, start=self.sup_only_iterations)
        self.register_buffer(
            "class_weights",
            class_weights_tensor(opts.class_weights, self.num_classes, self.name),
            persistent=False,
        )

    # ---------------------------------------------------------------- hooks
    @torch.no_grad()
    def pseudo_label_probs(
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any] | None = None
    ) -> torch.Tensor | None:
        """(M, K) teacher probabilities (teacher in eval mode) for ``batch``; None when no
        teacher is attached or no batch is given (the teacher needs the input voxels)."""
        if batch is None or self.teacher is None or not self.teacher.attached:
            return None
        prob, _ = self.teacher.predict(batch, logits.device, train_bn=False)
        return prob

    # ---------------------------------------------------------------- loss
    def forward(
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """See :meth:`pcseg.methods.base.Method.forward` and the class docstring."""
        weak = check_inputs(logits, features, batch, self.num_classes, self.feature_dim, self.name)
        loss_sup = supervised_cross_entropy(logits, weak, self.class_weights, self.options)
        rep_s = self.contrast.rep_head(features)
        out: dict[str, torch.Tensor] = {}
        warmup = self.training and int(self.steps_done) < self.sup_only_iterations
        if warmup:
            loss_unsup = zero_with_graph(logits)
            loss_con = zero_with_graph(rep_s)
        else:
            prob, rep_t = self.teacher_outputs(batch, logits)
            alpha = self.alpha_t()
            split = teacher_split(prob, weak, alpha, self.anchor_split)
            rel = split["reliable"]
            if bool(rel.any()):
                loss_unsup = F.cross_entropy(logits[rel], split["pseudo"][rel])
            else:
                loss_unsup = zero_with_graph(logits)
            loss_con, info = self.contrast(
                rep_s,
                rep_t,
                prob,
                weak,
                split["anchor_ok"],
                split["unreliable"],
                update_queues=self.training,
            )
            out.update(split_diagnostics(split, batch, self.contrast.queues, alpha))
            out["diag/contrast_classes"] = torch.tensor(
                float(info["classes"]), device=logits.device
            )
            out["diag/neg_keys_pushed"] = info["pushed"].sum().to(torch.float32).to(logits.device)
        loss = (
            loss_sup
            + self.lambda_u * loss_unsup.to(loss_sup.dtype)
            + self.lambda_c * loss_con.to(loss_sup.dtype)
        )
        out.update(
            {
                "loss": loss,
                "loss_sup": loss_sup,
                "loss_unsup": loss_unsup,
                "loss_contrastive": loss_con,
            }
        )
        add_propagated_term(out, logits, batch, self.options, self.class_weights, self.name)
        out.update(supervision_diagnostics(logits, weak, batch))
        return out
