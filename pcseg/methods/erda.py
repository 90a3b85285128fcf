"""ERDA: Entropy-Regularized Distribution Alignment (Tang et al., "All Points Matter:
Entropy-Regularized Distribution Alignment for Weakly-supervised 3D Segmentation", NeurIPS
2023; the modality-agnostic extension: arXiv 2408.16520). Official code: LiyaoTang/ERDA
(TensorFlow), ``models/head.py`` (``cls_contrast_head``, ``pseudo_head``), ``config/head.py``
(class ``pseudo``) and ``utils/tf_graph_builder.py`` (``get_momentum_update``).

Loss = CE(q, y) on the labelled voxels + w * mean over the UNLABELLED voxels
(``weak_labels == -1``) of a divergence between the pseudo-label distribution p and the
prediction q = softmax(logits). The default divergence is
``H(p) + KL(p||q) = H(p, q) = -sum_k p_k log q_k`` (entropy regularisation + distribution
alignment), whose gradient w.r.t. the logits is ``q - p``.

Pseudo-label generator (prototype labeller of the official 3D code):

1. ``e = g(f)``, g = Linear(D,D) -> BatchNorm1d(D) -> ReLU -> Linear(D,D), on the last
   decoder features f; ``u = e / ||e||`` (L2-normalised embedding).
2. Per batch and class k present among the LABELLED voxels: ``mean_k`` = mean over the
   labelled voxels of class k of ``u`` (``proto_mean="normalised"``, pcseg's default) or of
   the un-normalised ``e`` (``"raw"``, official: ``models/head.py`` l. 682 feeds the
   projected features to ``collect_target_cur``, whose class mean is l. 488; normalisation
   happens only inside the cosine, l. 695-696). In per-device mode sums and counts are
   all-reduced across ranks (torch.distributed, when initialised) before the update, so
   every rank keeps identical prototypes (with one process this is the official per-device
   update).
3. EMA prototypes (a buffer, no gradient), m = ``momentum`` (0.999), per-device mode
   (``cross_device="none"``), updated with this batch BEFORE p is computed:

   * ``absent="keep"`` (pcseg's default): ``c_k <- m c_k + (1 - m) mean_k`` only for the
     classes present; absent classes keep their prototype.
   * ``absent="reset"`` (official, ``models/head.py`` l. 508-516: the momentum factor is
     multiplied by the presence mask, l. 511): ``c_k <- (m [k present]) c_k + (1 - m
     [k present]) mean_k`` with ``mean_k = 0`` for an absent class, so an absent class's
     prototype is set to ZERO (the stored variable too: its EMA restarts when it returns).

4. Prototype initialisation (``proto_init``): ``"zeros"`` (pcseg's default, and the
   official one without the ``I`` token, ``config/head.py`` l. 148) or ``"glorot"``
   (official weak-label configs, token ``mom-I``: ``init = 'xavier'``, ``config/s3dis.py``
   l. 86, i.e. ``glorot_uniform``, ``models/head.py`` l. 504-505 and ``models/basic_operators.py``
   l. 334): U(-a, a), ``a = sqrt(6 / (K + D))``, drawn from torch's global RNG at
   construction (the same on every rank: the trainer seeds all ranks alike before
   building). With a zero start and ``absent="keep"`` the EMA follows the batch means from
   the first observation; because the cosine is scale invariant, a zero start is the
   bias-corrected EMA in direction (early batch means are weighted about equally instead
   of the prototype being locked for ~1/(1-m) steps onto a random start or the first batch
   mean of a randomly initialised head). The bool buffer ``proto_initialised`` records
   which classes have been observed at least once.
5. ``p_i = softmax_k(cos(u_i, c_k) / tau)``, tau = 1 by default (the official code has no
   temperature: ``normdot`` with scale ``neg`` is the plain cosine). ``learn_tau: true``:
   tau = exp(s) with a learnable scalar s = ``log_tau`` starting at log(``tau``) (tau 1 by
   default; a parameter of the method, so the trainer's optimiser trains it with the
   network, weight decay included), logged as ``diag/tau``; its gradient comes through p
   only. With
   ``absent="keep"``, classes never observed get logit -inf, i.e. ``p_k = 0`` (no garbage
   from a zero or random prototype), and while NO class is observed the unlabelled term is
   skipped (it is 0, still connected to the graph so every parameter gets a zero, not
   missing, gradient). With ``absent="reset"`` nothing is masked (official: ``target_cls_mask
   = None``, l. 533): a zero prototype has cosine 0 with every point, so its logit is 0
   (``F.normalize`` of a zero vector is zero, like ``tf.nn.l2_normalize``), and the term is
   never skipped (p is uniform when every prototype is zero).

Cross-device mode (``cross_device="sum"`` / ``"avg"``, official tokens ``Gsum`` / ``Gavg``,
``config/head.py`` l. 141-144, ``models/head.py`` l. 519-523 and ``utils/tf_graph_builder.py``
l. 266-274): p is computed with the PREVIOUS step's prototypes; then every rank computes
its own class means (0 for a class absent from its labelled points) and ALL classes are
updated, ``c <- m c + (1 - m) R``, R = the sum (``sum``) or the mean (``avg``) over ranks of
the per-rank class means (one ``all_reduce_sum``; a single process is world size 1, where
both give R = the batch's class means). An absent class's prototype thus decays by m (its
direction is kept). ``absent`` then only chooses the masking of step 5 (``"reset"`` =
official: no mask).

Order within a training step (per-device mode): the prototypes are updated with this
batch FIRST (no gradient), then p is computed with the updated prototypes. In eval mode
(``method.eval()``) the prototypes are not updated. Gradients flow into both p (through
the projection head and the features, i.e. the backbone) and q; never into the
prototypes.

Official loss weights w (``w.1`` / ``w.01`` in the config names): 0.01 at 1 % labels for
CloserLook3D and Point Transformer (``config/s3dis/weaksup.01_closerlook_erda.yaml`` l. 6,
``weaksup.01_pt_erda.yaml`` l. 46, in ``Gsum`` mode) and for ScanNet 20 points
(``config/scannet/weaksup20_closerlook_erda.yaml`` l. 6); 0.1 for RandLA-Net
(``config/s3dis/weaksup.01_randla_erda.yaml`` l. 26) and for full supervision.

Presets (``preset``): ``"official"`` fills every option not given explicitly with the
official per-device weak-label setting of S3DIS 1 % with RandLA-Net,
``config/s3dis/weaksup.01_randla_erda.yaml`` (l. 25 the segmentation head
``mlp-1-xen-dp.5-class``, l. 26 the ERDA head ``pseudo-fout-pmlp2-mom-I-normdot-w.1``):

* ``proto_mean="raw"``: ``models/head.py`` l. 682 and l. 488 (class means of the
  un-normalised projections);
* ``absent="reset"``: ``models/head.py`` l. 508-516 (momentum times the presence mask);
* ``proto_init="glorot"``: token ``mom-I``, ``config/s3dis.py`` l. 86 (``init = 'xavier'``),
  ``models/head.py`` l. 504-505;
* ``cross_device="none"``: no ``Gsum`` / ``Gavg`` token (``config/head.py`` l. 141-144);
* ``tau=1``: ``normdot`` (plain cosine, no temperature);
* ``momentum=0.999``: ``config/head.py`` l. 139 (the default of the ``mom`` token);
* ``weight=0.1``: token ``w.1`` of l. 26 (CloserLook3D's
  ``weaksup.01_closerlook_erda.yaml`` l. 6 uses 0.01 on a plain CE: give ``weight: 0.01``
  and ``class_weighting: normalised`` next to the preset);
* ``class_weighting="official_raw"``: token ``class`` of l. 25: the supervised CE times the
  raw class weights 1 / (freq + 0.02) (``models/head.py`` l. 177 in ``get_class_weight``,
  applied per point l. 437-449, then ``tf.reduce_mean`` l. 451), about 8-10x the plain CE,
  so w = 0.1 is ~0.01 relative to it.

The head dropout of the same config (``dp.5``, l. 25 and ``drop: dp.5`` l. 58: dropout 0.5
on the classifier's input, ``models/head.py`` l. 356-362, while the ERDA head reads the clean
``f_out``) belongs to the network: ``model.head_dropout: 0.5``
(:class:`pcseg.models.minkunet.MinkUNet`), set by ``configs/*/erda_official.yaml``. The
logits the method receives are then q after dropout (both the CE and the ERDA term use
them) and the features are the clean ones (p). Options given explicitly override the
preset.

Ablation variants (``variant``), each averaged over the unlabelled voxels:
``erda`` H(p, q) = H(p) + KL(p||q); ``er`` H(p); ``da`` KL(p||q); ``kl_qp`` KL(q||p);
``js`` Jensen-Shannon 0.5 KL(p||m) + 0.5 KL(q||m), m = (p+q)/2; ``mse`` mean over classes
of (p_k - q_k)^2. ``0 log 0 = 0``; in ``kl_qp`` log p is clamped below at log(1e-8)
(p_k is exactly 0 for masked classes, and may underflow for small tau).
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import nn

from pcseg.distributed import all_reduce_sum, get_world_size
from pcseg.methods.base import Method
from pcseg.methods.common import (
    NonNegative,
    Positive,
    SupervisionOptions,
    UnitInterval,
    add_propagated_term,
    at_least_float32,
    check_inputs,
    class_weights_tensor,
    hidden_accuracy,
    propagated_labels,
    resolve_options,
    supervised_cross_entropy,
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


ProtoMean = Literal["normalised", "raw"]
Absent = Literal["keep", "reset"]
ProtoInit = Literal["zeros", "glorot"]
CrossDevice = Literal["none", "sum", "avg"]
Preset = Literal["official"]

#: the options a preset sets (each overridable by giving it explicitly); see the module
#: docstring for the official file and line of each value
PRESETS: dict[str, dict[str, Any]] = {
    "official": {
        "proto_mean": "raw",
        "absent": "reset",
        "proto_init": "glorot",
        "cross_device": "none",
        "tau": 1.0,
        "momentum": 0.999,
        "weight": 0.1,
        "class_weighting": "official_raw",
    },
}


class ERDAOptions(SupervisionOptions):
    """Options of :class:`ERDA` (see its docstring and the module docstring)."""

    #: fill the options not given with a named setting ("official": the official per-device
    #: weak-label mode of S3DIS 1 %, see the module docstring); None: the defaults below
    preset: Preset | None = None
    #: w, weight of the unlabelled term
    weight: NonNegative = 0.1
    #: temperature of the prototype softmax (the official code has none: 1); with
    #: ``learn_tau`` the initial value
    tau: Positive = 1.0
    #: learn the temperature: tau = exp(log_tau), a parameter starting at log(tau)
    learn_tau: bool = False
    #: EMA momentum m of the prototypes
    momentum: UnitInterval = 0.999
    #: the divergence (ablation variants, see the module docstring)
    variant: Variant = "erda"
    #: what the class mean averages: the L2-normalised projections u ("normalised") or the
    #: un-normalised projections g(f) ("raw", official)
    proto_mean: ProtoMean = "normalised"
    #: classes absent from the batch's labelled points: "keep" their prototype and mask the
    #: never-observed ones with logit -inf, or "reset" (official): momentum factor times the
    #: presence mask, so the prototype becomes 0 and its cosine logit 0, nothing masked
    absent: Absent = "keep"
    #: prototype initialisation: "zeros", or "glorot" uniform (official weak-label token mom-I)
    proto_init: ProtoInit = "zeros"
    #: "none": per-device mode (update, then p); "sum" / "avg" (official Gsum / Gavg): p from
    #: the previous step's prototypes, then all classes updated with the sum / mean over
    #: ranks of the per-rank class means
    cross_device: CrossDevice = "none"

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            return {**PRESETS[data["preset"]], **data}
        return data


class ERDA(Method):
    """ERDA loss with a prototype pseudo-labeller (see the module docstring).

    Args:
        num_classes: K.
        feature_dim: D of the decoder features (and of the projection head).
        options: a validated :class:`ERDAOptions`, or keyword options:
        preset: ``None`` | ``'official'`` (fills the options not given, see the module
            docstring).
        weight: w, weight of the unlabelled term (default 0.1).
        tau: temperature of the prototype softmax (default 1); the initial one with
            ``learn_tau``.
        learn_tau: learn the temperature (a parameter ``log_tau`` starting at log tau).
        momentum: EMA momentum m of the prototypes in [0, 1) (default 0.999).
        variant: ``'erda' | 'er' | 'da' | 'kl_qp' | 'js' | 'mse'`` (default ``'erda'``).
        proto_mean: ``'normalised'`` (default) | ``'raw'`` (official).
        absent: ``'keep'`` (default) | ``'reset'`` (official).
        proto_init: ``'zeros'`` (default) | ``'glorot'`` (official weak-label configs).
        cross_device: ``'none'`` (default, per-device mode) | ``'sum'`` | ``'avg'``.
        class_weights: optional K weights of the labelled cross-entropy.
        class_weighting: ``'normalised'`` (default) | ``'raw'`` | ``'official_raw'`` (see
            :class:`~pcseg.methods.common.SupervisionOptions`; the preset's choice).
        label_smoothing: label smoothing of the labelled cross-entropy (default 0).

    forward returns ``loss`` (= loss_sup + w * loss_erda), ``loss_sup``, ``loss_erda``
    (unweighted mean divergence over the unlabelled voxels) and detached diagnostics:
    ``diag/pseudo_acc``, ``diag/pred_acc_unlabelled`` (argmax p / argmax q vs the hidden
    ground truth on unlabelled voxels with a label; omitted when there is none),
    ``diag/pseudo_entropy`` (mean H(p)), ``diag/pq_agreement`` (mean argmax p == argmax q),
    ``diag/protos_initialised`` (number of classes observed so far), ``diag/labelled_frac``,
    ``diag/tau`` (with ``learn_tau``). The p-based diagnostics are omitted while the
    unlabelled term is skipped. In training mode argmax p and argmax q on the unlabelled
    voxels enter the window confusions ``pseudo`` and ``pred_unlabelled``: per-class
    accuracy and mIoU over a logging window, ``diag/pseudo_macc`` / ``diag/pseudo_miou`` /
    ``diag/pred_unlabelled_macc`` / ``diag/pred_unlabelled_miou`` from
    :meth:`~pcseg.methods.base.Method.window_diagnostics`.
    """

    name = "erda"
    Options = ERDAOptions
    class_weights: torch.Tensor | None
    prototypes: torch.Tensor
    proto_initialised: torch.Tensor
    log_tau: nn.Parameter | None

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
        #: with ``learn_tau`` the initial temperature (``log_tau`` trains)
        self.tau = opts.tau
        self.momentum = opts.momentum
        self.variant: str = opts.variant
        self.label_smoothing = opts.label_smoothing
        d = self.feature_dim
        self.head = nn.Sequential(
            nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, d)
        )
        self.register_buffer("prototypes", torch.zeros(self.num_classes, d))
        if opts.proto_init == "glorot":  # U(-a, a), a = sqrt(6 / (K + D)), as tf glorot_uniform
            nn.init.xavier_uniform_(self.prototypes)
        self.register_buffer("proto_initialised", torch.zeros(self.num_classes, dtype=torch.bool))
        self.log_tau = nn.Parameter(torch.tensor(math.log(opts.tau))) if opts.learn_tau else None
        self.register_buffer(
            "class_weights",
            class_weights_tensor(opts.class_weights, self.num_classes, self.name),
            persistent=False,
        )

    def temperature(self) -> float | torch.Tensor:
        """tau: the fixed float, or ``exp(log_tau)`` (0-dim, with grad) when learned."""
        return self.tau if self.log_tau is None else self.log_tau.exp()

    @property
    def masks_unobserved(self) -> bool:
        """True when never-observed classes get logit -inf (``absent="keep"``)."""
        return self.options.absent == "keep"

    # ------------------------------------------------------------------ prototypes
    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(M, D) features -> (M, D) un-normalised projections e = g(f) (with grad)."""
        return at_least_float32(self.head(features.to(self.prototypes.dtype)))

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """(M, D) features -> (M, D) L2-normalised projections u = g(f)/||g(f)|| (with grad)."""
        return F.normalize(self.project(features), dim=1)

    @torch.no_grad()
    def update_prototypes(self, v: torch.Tensor, weak_labels: torch.Tensor) -> torch.Tensor:
        """EMA update of the prototypes from the projections of the labelled points.

        Must be called on EVERY rank at every step (it all-reduces).

        Args:
            v: (M, D) projections to average: the normalised u (``proto_mean="normalised"``)
                or the raw g(f) (``"raw"``); any grad is ignored.
            weak_labels: (M,) int64, -1 = unlabelled.
        Returns:
            (K,) bool mask of the classes present among the labelled points of the batch on
            any rank.
        """
        v = v.detach().to(self.prototypes.dtype)
        lab = weak_labels >= 0
        y = weak_labels[lab]
        sums = torch.zeros_like(self.prototypes).index_add_(0, y, v[lab])
        counts = torch.bincount(y, minlength=self.num_classes).to(self.prototypes.dtype)
        m = self.momentum
        if self.options.cross_device != "none":
            # per-rank class means (0 where absent), then their sum over ranks (Gsum) or
            # mean (Gavg); every class is updated (an absent one decays by m)
            local = sums / counts.clamp(min=1.0)[:, None]
            packed = all_reduce_sum(torch.cat([local, counts[:, None]], dim=1))
            r, counts = packed[:, :-1], packed[:, -1]
            if self.options.cross_device == "avg":
                r = r / get_world_size()
            self.prototypes.mul_(m).add_((1.0 - m) * r)
            present = counts > 0
            self.proto_initialised |= present
            return present
        # one collective for both so the ranks stay in lock-step
        packed = all_reduce_sum(torch.cat([sums, counts[:, None]], dim=1))
        sums, counts = packed[:, :-1], packed[:, -1]
        present = counts > 0
        if self.options.absent == "reset":
            # official: momentum factor times the presence mask; an absent class's mean is 0
            mean = sums / counts.clamp(min=1.0)[:, None]
            mom = m * present.to(self.prototypes.dtype)[:, None]
            self.prototypes.copy_(mom * self.prototypes + (1.0 - mom) * mean)
        elif bool(present.any()):
            mean = sums[present] / counts[present, None]
            self.prototypes[present] = m * self.prototypes[present] + (1.0 - m) * mean
        self.proto_initialised |= present
        return present

    def pseudo_log_probs(self, u: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised embeddings -> (N, K) log p; -inf for never-observed classes
        when ``absent="keep"`` (then at least one class must have been observed).

        Prototypes enter detached (and normalised; a zero prototype gives cosine 0).
        """
        # at least float32 also under autocast: with a small tau, bf16 cosines would be amplified
        with torch.autocast(device_type=u.device.type, enabled=False):
            u = at_least_float32(u)
            c = F.normalize(self.prototypes.detach().to(u.dtype), dim=1)
            tau = self.temperature()
            sim = (u @ c.t()) / (tau if isinstance(tau, float) else tau.to(u.dtype))
            if self.masks_unobserved:
                sim = sim.masked_fill(~self.proto_initialised[None, :], -math.inf)
            return F.log_softmax(sim, dim=1)

    def _has_pseudo_labels(self) -> bool:
        return not self.masks_unobserved or bool(self.proto_initialised.any())

    @torch.no_grad()
    def pseudo_label_probs(
        self,
        logits: torch.Tensor,
        features: torch.Tensor,
        batch: dict[str, Any] | None = None,
    ) -> torch.Tensor | None:
        """(M, K) pseudo-label distribution p (0 on masked classes), or None while no
        class has been observed (``absent="keep"``).

        The projection head is evaluated in eval mode (BatchNorm running statistics) and
        restored to its previous mode, so calling this during training has no side effect.
        """
        if not self._has_pseudo_labels():
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
        loss_sup = supervised_cross_entropy(logits, weak, self.class_weights, self.options)
        e = self.project(features)
        u = F.normalize(e, dim=1)
        source = e if self.options.proto_mean == "raw" else u
        unl = weak == -1
        prop = propagated_labels(batch, self.options.propagated_weight, self.name)
        if prop is not None:
            # a propagated label is the target there: p is a one-hot on it, and
            # H(p) + KL(p||q) is then the propagated cross-entropy added below
            unl = unl & (prop.to(unl.device) < 0)
        cross = self.options.cross_device != "none"
        log_p = None
        if cross and bool(unl.any()) and self._has_pseudo_labels():
            log_p = self.pseudo_log_probs(u[unl])  # the previous step's prototypes
        if self.training:
            self.update_prototypes(source, weak)
        if not cross and bool(unl.any()) and self._has_pseudo_labels():
            log_p = self.pseudo_log_probs(u[unl])  # this step's (updated) prototypes
        out: dict[str, torch.Tensor] = {}
        if log_p is not None:
            log_q = F.log_softmax(logits[unl].to(self.prototypes.dtype), dim=1)
            loss_erda = erda_divergence(log_p, log_q, self.variant).mean()
            out.update(self._pseudo_diagnostics(log_p, log_q, batch, unl))
        else:
            graph = (u, logits) if self.log_tau is None else (u, logits, self.log_tau)
            loss_erda = zero_with_graph(*graph)
        loss = loss_sup + self.weight * loss_erda.to(loss_sup.dtype)
        out.update({"loss": loss, "loss_sup": loss_sup, "loss_erda": loss_erda})
        add_propagated_term(out, logits, batch, self.options, self.class_weights, self.name)
        out.update(supervision_diagnostics(logits, weak, batch))
        out["diag/protos_initialised"] = self.proto_initialised.sum().to(torch.float32).detach()
        if self.log_tau is not None:
            out["diag/tau"] = self.log_tau.detach().exp().float()
        self.record_hidden("pred_unlabelled", logits.detach().argmax(1), batch, unl)
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
        self.record_hidden("pseudo", full_pred, batch, unl)
        return out
