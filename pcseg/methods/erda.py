"""ERDA: Entropy-Regularized Distribution Alignment (Tang et al., NeurIPS 2023).

Loss = CE(q, y) on the labelled voxels + w * mean over the UNLABELLED voxels
(``weak_labels == -1``) of a divergence between the pseudo-label distribution p and the
prediction q = softmax(logits). The default divergence is
``H(p) + KL(p||q) = H(p, q) = -sum_k p_k log q_k`` (entropy regularisation + distribution
alignment), whose gradient w.r.t. the logits is ``q - p``.

Pseudo-label generator (prototype labeller of the official 3D code):

1. ``e = g(f)``, g = Linear(D,D) -> BatchNorm1d(D) -> ReLU -> Linear(D,D), on the last
   decoder features f; ``u = e / ||e||`` (L2-normalised embedding).
2. Per batch and class k present among the LABELLED voxels: ``mean_k`` = mean of ``u``
   over the labelled voxels of class k. Sums and counts are all-reduced across ranks
   (torch.distributed, when initialised) before the update, so every rank keeps
   identical prototypes.
3. EMA prototypes (a buffer, no gradient): ``c_k <- m c_k + (1 - m) mean_k``, m = 0.999,
   only for the classes present. Prototypes start at ZERO and follow this EMA from the
   first observation (as in the official code). Because the cosine below is scale
   invariant, a zero start is the bias-corrected EMA in direction: early batch means are
   weighted about equally instead of the prototype being locked for ~1/(1-m) steps onto
   the first batch mean of a randomly initialised head. The bool buffer
   ``proto_initialised`` records which classes have been observed at least once.
4. ``p_i = softmax_k(cos(u_i, c_k) / tau)``, tau = 1 by default. Classes whose prototype
   is not initialised yet get logit -inf, i.e. ``p_k = 0`` (no garbage from a zero
   prototype); while NO class is initialised the unlabelled term is skipped (it is 0,
   still connected to the graph so every parameter gets a zero, not missing, gradient).

Order within a training step: the prototypes are updated with this batch FIRST (no
gradient), then p is computed with the updated prototypes. In eval mode
(``method.eval()``) the prototypes are not updated. Gradients flow into both p (through
the projection head and the features, i.e. the backbone) and q; never into the
prototypes.

Ablation variants (``variant``), each averaged over the unlabelled voxels:
``erda`` H(p, q) = H(p) + KL(p||q); ``er`` H(p); ``da`` KL(p||q); ``kl_qp`` KL(q||p);
``js`` Jensen-Shannon 0.5 KL(p||m) + 0.5 KL(q||m), m = (p+q)/2; ``mse`` mean over classes
of (p_k - q_k)^2. ``0 log 0 = 0``; in ``kl_qp`` log p is clamped below at log(1e-8)
(p_k is exactly 0 for uninitialised classes, and may underflow for small tau).
"""
from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from pcseg.distributed import all_reduce_sum
from pcseg.methods.base import Method
from pcseg.methods.common import (
    NonNegative,
    Positive,
    SupervisionOptions,
    UnitInterval,
    at_least_float32,
    check_inputs,
    class_weights_tensor,
    hidden_accuracy,
    labelled_cross_entropy,
    resolve_options,
    supervision_diagnostics,
    zero_with_graph,
)

Variant = Literal["erda", "er", "da", "kl_qp", "js", "mse"]
VARIANTS: tuple[str, ...] = get_args(Variant)
#: floor of p inside log p for the ``kl_qp`` variant
KL_QP_EPS = 1e-8
_TINY = 1e-30


def erda_divergence(
    log_p: torch.Tensor, log_q: torch.Tensor, variant: str = "erda"
) -> torch.Tensor:
    """Per-point divergence between p and q for an ERDA variant.

    Args:
        log_p: (N, K) log pseudo-label distribution; -inf allowed where p_k = 0
            (uninitialised classes).
        log_q: (N, K) log prediction, ``log_softmax(logits)`` (finite).
        variant: one of :data:`VARIANTS`.
    Returns:
        (N,) per-point values (see the module docstring for the formulas).
    """
    if variant not in VARIANTS:
        raise ValueError(f"ERDA variant must be one of {VARIANTS}, got {variant!r}")
    p = log_p.exp()
    q = log_q.exp()
    # 0 log 0 = 0: where p == 0 use a finite log so that p * log p is 0 (and grads finite)
    zero_p = torch.isneginf(log_p)
    log_p0 = torch.where(zero_p, torch.zeros_like(log_p), log_p)
    if variant == "erda":  # H(p, q)
        return -(p * log_q).sum(1)
    if variant == "er":  # H(p)
        return -(p * log_p0).sum(1)
    if variant == "da":  # KL(p || q)
        return (p * (log_p0 - log_q)).sum(1)
    if variant == "kl_qp":  # KL(q || p)
        log_p_cl = torch.clamp(log_p, min=math.log(KL_QP_EPS))
        return (q * (log_q - log_p_cl)).sum(1)
    if variant == "js":
        log_m = torch.log(torch.clamp(0.5 * (p + q), min=_TINY))
        return 0.5 * (p * (log_p0 - log_m)).sum(1) + 0.5 * (q * (log_q - log_m)).sum(1)
    # mse
    return ((p - q) ** 2).mean(1)


class ERDAOptions(SupervisionOptions):
    """Options of :class:`ERDA` (see its docstring)."""

    #: w, weight of the unlabelled term
    weight: NonNegative = 0.1
    #: temperature of the prototype softmax
    tau: Positive = 1.0
    #: EMA momentum m of the prototypes
    momentum: UnitInterval = 0.999
    #: the divergence (ablation variants, see the module docstring)
    variant: Variant = "erda"


class ERDA(Method):
    """ERDA loss with a prototype pseudo-labeller (see the module docstring).

    Args:
        num_classes: K.
        feature_dim: D of the decoder features (and of the projection head).
        options: a validated :class:`ERDAOptions`, or keyword options:
        weight: w, weight of the unlabelled term (default 0.1).
        tau: temperature of the prototype softmax (default 1).
        momentum: EMA momentum m of the prototypes in [0, 1) (default 0.999).
        variant: ``'erda' | 'er' | 'da' | 'kl_qp' | 'js' | 'mse'`` (default ``'erda'``).
        class_weights: optional K weights of the labelled cross-entropy.
        label_smoothing: label smoothing of the labelled cross-entropy (default 0).

    forward returns ``loss`` (= loss_sup + w * loss_erda), ``loss_sup``, ``loss_erda``
    (unweighted mean divergence over the unlabelled voxels) and detached diagnostics:
    ``diag/pseudo_acc``, ``diag/pred_acc_unlabelled`` (argmax p / argmax q vs the hidden
    ground truth on unlabelled voxels with a label; omitted when there is none),
    ``diag/pseudo_entropy`` (mean H(p)), ``diag/pq_agreement`` (mean argmax p == argmax q),
    ``diag/protos_initialised`` (number of initialised prototypes), ``diag/labelled_frac``.
    The p-based diagnostics are omitted while the unlabelled term is skipped.
    """

    name = "erda"
    Options = ERDAOptions
    class_weights: torch.Tensor | None
    prototypes: torch.Tensor
    proto_initialised: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        options: ERDAOptions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, feature_dim)
        opts = resolve_options(ERDAOptions, self.name, options, kwargs)
        self.options = opts
        self.weight = opts.weight
        self.tau = opts.tau
        self.momentum = opts.momentum
        self.variant: str = opts.variant
        self.label_smoothing = opts.label_smoothing
        d = self.feature_dim
        self.head = nn.Sequential(
            nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, d)
        )
        self.register_buffer("prototypes", torch.zeros(self.num_classes, d))
        self.register_buffer("proto_initialised", torch.zeros(self.num_classes, dtype=torch.bool))
        self.register_buffer(
            "class_weights",
            class_weights_tensor(opts.class_weights, self.num_classes, self.name),
            persistent=False,
        )

    # ------------------------------------------------------------------ prototypes
    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """(M, D) features -> (M, D) L2-normalised projections u = g(f)/||g(f)|| (with grad)."""
        e = self.head(features.to(self.prototypes.dtype))
        return F.normalize(at_least_float32(e), dim=1)

    @torch.no_grad()
    def update_prototypes(self, u: torch.Tensor, weak_labels: torch.Tensor) -> torch.Tensor:
        """EMA update of the prototypes from normalised embeddings of labelled points.

        Must be called on EVERY rank at every step (it all-reduces).

        Args:
            u: (M, D) L2-normalised embeddings (any grad is ignored).
            weak_labels: (M,) int64, -1 = unlabelled.
        Returns:
            (K,) bool mask of the classes updated (present among the labelled points of
            the batch on any rank).
        """
        u = u.detach().to(self.prototypes.dtype)
        lab = weak_labels >= 0
        y = weak_labels[lab]
        sums = torch.zeros_like(self.prototypes).index_add_(0, y, u[lab])
        counts = torch.bincount(y, minlength=self.num_classes).to(self.prototypes.dtype)
        # one collective for both so the ranks stay in lock-step
        packed = all_reduce_sum(torch.cat([sums, counts[:, None]], dim=1))
        sums, counts = packed[:, :-1], packed[:, -1]
        present = counts > 0
        if bool(present.any()):
            mean = sums[present] / counts[present, None]
            m = self.momentum
            self.prototypes[present] = m * self.prototypes[present] + (1.0 - m) * mean
            self.proto_initialised |= present
        return present

    def pseudo_log_probs(self, u: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised embeddings -> (N, K) log p; -inf for uninitialised classes.

        Requires at least one initialised prototype. Prototypes enter detached.
        """
        # at least float32 also under autocast: with a small tau, bf16 cosines would be amplified
        with torch.autocast(device_type=u.device.type, enabled=False):
            u = at_least_float32(u)
            c = F.normalize(self.prototypes.detach().to(u.dtype), dim=1)
            sim = (u @ c.t()) / self.tau
            sim = sim.masked_fill(~self.proto_initialised[None, :], -math.inf)
            return F.log_softmax(sim, dim=1)

    @torch.no_grad()
    def pseudo_label_probs(
        self,
        logits: torch.Tensor,
        features: torch.Tensor,
        batch: dict[str, Any] | None = None,
    ) -> torch.Tensor | None:
        """(M, K) pseudo-label distribution p (0 on uninitialised classes), or None before
        any prototype is initialised.

        The projection head is evaluated in eval mode (BatchNorm running statistics) and
        restored to its previous mode, so calling this during training has no side effect.
        """
        if not bool(self.proto_initialised.any()):
            return None
        was_training = self.head.training
        self.head.eval()
        try:
            return self.pseudo_log_probs(self.embed(features)).exp()
        finally:
            self.head.train(was_training)

    # ------------------------------------------------------------------ loss
    def forward(
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """See :meth:`pcseg.methods.base.Method.forward` and the class docstring."""
        weak = check_inputs(logits, features, batch, self.num_classes, self.feature_dim, self.name)
        loss_sup = labelled_cross_entropy(logits, weak, self.class_weights, self.label_smoothing)
        u = self.embed(features)
        if self.training:
            self.update_prototypes(u, weak)
        unl = weak == -1
        out: dict[str, torch.Tensor] = {}
        if bool(unl.any()) and bool(self.proto_initialised.any()):
            log_p = self.pseudo_log_probs(u[unl])
            log_q = F.log_softmax(logits[unl].to(self.prototypes.dtype), dim=1)
            loss_erda = erda_divergence(log_p, log_q, self.variant).mean()
            out.update(self._pseudo_diagnostics(log_p, log_q, batch, unl))
        else:
            loss_erda = zero_with_graph(u, logits)
        loss = loss_sup + self.weight * loss_erda.to(loss_sup.dtype)
        out.update({"loss": loss, "loss_sup": loss_sup, "loss_erda": loss_erda})
        out.update(supervision_diagnostics(logits, weak, batch))
        out["diag/protos_initialised"] = (
            self.proto_initialised.sum().to(torch.float32).detach()
        )
        return out

    @torch.no_grad()
    def _pseudo_diagnostics(
        self,
        log_p: torch.Tensor,
        log_q: torch.Tensor,
        batch: dict[str, Any],
        unl: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        log_p = log_p.detach()
        p = log_p.exp()
        ent = -(p * torch.where(torch.isneginf(log_p), torch.zeros_like(log_p), log_p)).sum(1)
        pp = p.argmax(1)
        pq = log_q.detach().argmax(1)
        out = {
            "diag/pseudo_entropy": ent.mean().float(),
            "diag/pq_agreement": (pp == pq).double().mean().float(),
        }
        # hidden_accuracy takes a full-length (M,) prediction: scatter argmax p back
        full_pred = torch.full(unl.shape, -1, dtype=torch.int64, device=unl.device)
        full_pred[unl] = pp
        acc = hidden_accuracy(full_pred, batch, unl)
        if acc is not None:
            out["diag/pseudo_acc"] = acc
        return out
