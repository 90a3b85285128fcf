"""U2PL's contrastive term: InfoNCE between student anchors, teacher class centres and
negatives drawn from per-class queues (see :mod:`pcseg.methods.u2pl` for the full rule).

* negatives of class c (:func:`negative_key_mask`): unreliable unlabelled points that
  rank c in ``[low_rank, min(high_rank, K))`` and labelled points of another class that
  rank c in their top ``low_rank``, all with ``P_ic < neg_prob_threshold``; pushed to
  the class queues before sampling.
* anchor candidates of class c (:func:`anchor_candidate_mask`): labelled points of class
  c and allowed (reliable) unlabelled points predicted c; anchors additionally need
  ``P_ic > anchor_prob_threshold``; at most ``num_anchors`` per class, drawn without
  replacement; ``num_negatives`` negatives per anchor drawn with replacement.
* positive: the mean teacher representation of the candidates; loss :func:`info_nce`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from pcseg.methods.class_queue import ClassQueues
from pcseg.methods.common import (
    MethodOptions,
    Positive,
    at_least_float32,
    resolve_options,
    zero_with_graph,
)


def class_ranks(prob: torch.Tensor) -> torch.Tensor:
    """(M, K) probabilities -> (M, K) int64 0-based rank of each class (0 = argmax).

    Ties are broken by class index (stable sort), so the result is deterministic.
    """
    order = torch.sort(prob, dim=1, descending=True, stable=True).indices
    m, k = prob.shape
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(k, device=prob.device).expand(m, k).contiguous())
    return ranks


def negative_key_mask(
    prob: torch.Tensor,
    weak_labels: torch.Tensor,
    unreliable: torch.Tensor,
    low_rank: int = 3,
    high_rank: int = 20,
    neg_prob_threshold: float = 1.0,
) -> torch.Tensor:
    """Which points are negative keys of which class (see the module docstring).

    Args:
        prob: (M, K) teacher probabilities.
        weak_labels: (M,) int64, -1 = unlabelled.
        unreliable: (M,) bool, unreliable unlabelled points (ignored where labelled).
        low_rank, high_rank: unlabelled point i is a negative of class c when
            ``low_rank <= rank_i(c) < min(high_rank, K)``; labelled point i (label y != c)
            when ``rank_i(c) < low_rank``.
        neg_prob_threshold: additionally require ``prob[i, c] < neg_prob_threshold``.
    Returns:
        (M, K) bool mask.
    """
    m, k = prob.shape
    ranks = class_ranks(prob)
    hi = min(int(high_rank), k)
    lab = weak_labels >= 0
    unl_neg = (~lab & unreliable)[:, None] & (ranks >= int(low_rank)) & (ranks < hi)
    cls = torch.arange(k, device=prob.device)[None, :]
    lab_neg = lab[:, None] & (ranks < int(low_rank)) & (cls != weak_labels[:, None])
    return (unl_neg | lab_neg) & (prob < float(neg_prob_threshold))


def anchor_candidate_mask(
    prob: torch.Tensor, weak_labels: torch.Tensor, unlabelled_ok: torch.Tensor
) -> torch.Tensor:
    """(M, K) bool: point i is an anchor candidate of class c.

    Labelled points are candidates of their label; unlabelled points with
    ``unlabelled_ok`` (reliable) are candidates of their argmax class.
    """
    m, k = prob.shape
    cls = torch.arange(k, device=prob.device)[None, :]
    lab = weak_labels >= 0
    lab_c = lab[:, None] & (weak_labels[:, None] == cls)
    pseudo = prob.argmax(1)
    unl_c = (~lab & unlabelled_ok)[:, None] & (pseudo[:, None] == cls)
    return lab_c | unl_c


def info_nce(
    anchors: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Mean InfoNCE loss over anchors with cosine similarity.

    Args:
        anchors: (A, R) (with gradient).
        positive: (R,) shared positive or (A, R) one per anchor.
        negatives: (A, N, R).
        temperature: T > 0.
    Returns:
        Scalar ``mean_a -log(e^{cos(a,p)/T} / (e^{cos(a,p)/T} + sum_n e^{cos(a,n)/T}))``.
    """
    # at least float32, also under autocast: cosines / T with a small T amplify bf16 rounding
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        a = F.normalize(at_least_float32(anchors), dim=-1)
        p = F.normalize(positive.to(a.dtype), dim=-1)
        if p.dim() == 1:
            p = p[None, :].expand_as(a)
        n = F.normalize(negatives.to(a.dtype), dim=-1)
        pos = (a * p).sum(-1, keepdim=True)
        neg = torch.einsum("ar,anr->an", a, n)
        logits = torch.cat([pos, neg], dim=1) / float(temperature)
        return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


class RepresentationHead(nn.Sequential):
    """g = Linear(D, D) -> BatchNorm1d(D) -> ReLU -> Linear(D, R): (M, D) -> (M, R)."""

    def __init__(self, in_dim: int, rep_dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, in_dim),
            nn.BatchNorm1d(in_dim),
            nn.ReLU(inplace=True),
            nn.Linear(in_dim, rep_dim),
        )


class ContrastOptions(MethodOptions):
    """Options of :class:`U2PLContrast` (shared by the methods that use the term)."""

    #: R of the representations
    rep_dim: int = Field(64, ge=1)
    #: keys per class queue
    queue_capacity: int = Field(10000, ge=1)
    #: max anchors per class
    num_anchors: int = Field(256, ge=1)
    #: negatives per anchor
    num_negatives: int = Field(50, ge=1)
    #: InfoNCE temperature
    temperature: Positive = 0.5
    #: anchors need teacher prob of their class > this
    anchor_prob_threshold: float = 0.3
    #: negatives of c need prob(c) < this (delta_n)
    neg_prob_threshold: float = 1.0
    #: negative rank window [low_rank, high_rank) of unlabelled points (see above)
    low_rank: int = Field(3, ge=1)
    high_rank: int = 20
    #: a class contributes only when its queue holds at least this many keys
    min_queue: int = Field(1, ge=1)
    #: seed of the sampling generator
    seed: int = 0

    @model_validator(mode="after")
    def _rank_window(self) -> ContrastOptions:
        if self.high_rank <= self.low_rank:
            raise ValueError(
                f"high_rank must be > low_rank, got low_rank={self.low_rank}, "
                f"high_rank={self.high_rank}"
            )
        return self


class U2PLContrast(nn.Module):
    """U2PL's contrastive term: student representation head, per-class queues, sampling.

    Args:
        num_classes: K.
        feature_dim: D of the decoder features.
        options: a validated :class:`ContrastOptions`, or keyword options:
        rep_dim: R of the representations (default 64).
        queue_capacity: keys per class queue (default 10000).
        num_anchors: max anchors per class (default 256).
        num_negatives: negatives per anchor (default 50).
        temperature: InfoNCE temperature (default 0.5).
        anchor_prob_threshold: anchors need teacher prob of their class > this (0.3).
        neg_prob_threshold: negatives of c need prob(c) < this (delta_n, default 1.0).
        low_rank, high_rank: negative rank window (defaults 3, 20; see module docstring).
        min_queue: a class contributes only when its queue holds at least this many keys.
        seed: seed of the sampling generator.
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        options: ContrastOptions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        opts = resolve_options(ContrastOptions, "U2PLContrast", options, kwargs)
        self.num_classes = int(num_classes)
        self.num_anchors = opts.num_anchors
        self.num_negatives = opts.num_negatives
        self.temperature = opts.temperature
        self.anchor_prob_threshold = opts.anchor_prob_threshold
        self.neg_prob_threshold = opts.neg_prob_threshold
        self.low_rank = opts.low_rank
        self.high_rank = opts.high_rank
        self.min_queue = opts.min_queue
        self.rep_head = RepresentationHead(int(feature_dim), opts.rep_dim)
        self.queues = ClassQueues(self.num_classes, opts.queue_capacity, opts.rep_dim)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(opts.seed)

    # the generator state travels with the state dict (exact resume of the sampling)
    def get_extra_state(self) -> dict[str, Any]:
        """Extra state saved in the state dict: the sampling generator's state."""
        return {"generator_state": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the sampling generator's state."""
        self.generator.set_state(state["generator_state"].cpu())

    def sample_anchors(self, n_candidates: int, device: torch.device) -> torch.Tensor:
        """min(n, num_anchors) distinct indices in [0, n), drawn by the method's generator."""
        if n_candidates <= self.num_anchors:
            return torch.arange(n_candidates, device=device)
        perm = torch.randperm(n_candidates, generator=self.generator)
        return perm[: self.num_anchors].to(device)

    def sample_negatives(
        self, queue_count: int, num_anchors: int, device: torch.device
    ) -> torch.Tensor:
        """(A, num_negatives) indices drawn uniformly with replacement from [0, queue_count)."""
        idx = torch.randint(
            queue_count, (num_anchors, self.num_negatives), generator=self.generator
        )
        return idx.to(device)

    def forward(
        self,
        rep_s: torch.Tensor,
        rep_t: torch.Tensor,
        prob: torch.Tensor,
        weak_labels: torch.Tensor,
        anchor_ok: torch.Tensor,
        unreliable: torch.Tensor,
        update_queues: bool = True,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Contrastive loss of one batch.

        Args:
            rep_s: (M, R) student representations (with gradient): the anchors.
            rep_t: (M, R) teacher representations: class centres and queue keys (detached
                here).
            prob: (M, K) teacher probabilities (detached here).
            weak_labels: (M,) int64, -1 = unlabelled.
            anchor_ok: (M,) bool, unlabelled points allowed as anchor candidates.
            unreliable: (M,) bool, unreliable unlabelled points (negative-key sources).
            update_queues: push this batch's negative keys first (training); under DDP a
                collective, so every rank must pass the same value.
        Returns:
            (loss, info): scalar loss (0 connected to ``rep_s`` when no class contributes)
            and ``info`` with ``classes`` (int, classes that contributed), ``pushed`` (K,)
            keys pushed, and ``samples``: list of ``(c, anchor_rows, negative_slots)``
            where ``anchor_rows`` (A,) index rows of ``rep_s`` and ``negative_slots``
            (A, N) index ``queues.keys[c]`` (for checks and debugging).
        """
        rep_t = rep_t.detach()
        prob = prob.detach()
        k = self.num_classes
        if update_queues:
            neg = negative_key_mask(
                prob,
                weak_labels,
                unreliable,
                self.low_rank,
                self.high_rank,
                self.neg_prob_threshold,
            )
            pushed = self.queues.push_masked(rep_t, neg)
        else:
            pushed = torch.zeros(k, dtype=torch.int64, device=prob.device)
        cand = anchor_candidate_mask(prob, weak_labels, anchor_ok)
        anchors_mask = cand & (prob > self.anchor_prob_threshold)
        cand_n = cand.sum(0).tolist()
        anch_n = anchors_mask.sum(0).tolist()
        counts = self.queues.count.tolist()
        losses: list[torch.Tensor] = []
        samples: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        for c in range(k):
            if cand_n[c] == 0 or anch_n[c] == 0 or counts[c] < self.min_queue:
                continue
            positive = rep_t[cand[:, c]].to(torch.float32).mean(0)
            rows = torch.nonzero(anchors_mask[:, c], as_tuple=False).squeeze(1)
            rows = rows[self.sample_anchors(rows.numel(), rows.device)]
            slots = self.sample_negatives(counts[c], rows.numel(), rows.device)
            negatives = self.queues.keys[c][slots.to(self.queues.keys.device)].to(rep_s.device)
            losses.append(
                info_nce(rep_s[rows].to(torch.float32), positive, negatives, self.temperature)
            )
            samples.append((c, rows, slots))
        if losses:
            loss = torch.stack(losses).mean()
        else:
            loss = zero_with_graph(rep_s)
        return loss, {"classes": len(losses), "pushed": pushed, "samples": samples}
