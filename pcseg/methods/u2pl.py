"""U2PL: Using Unreliable Pseudo-Labels (Wang et al., CVPR 2022), adapted to sparse 3D labels.

The 2D method trains on labelled images plus unlabelled images. Here one batch of voxels
holds both: voxels with ``weak_labels >= 0`` are "labelled", voxels with
``weak_labels == -1`` are "unlabelled". Student and teacher see the SAME input (the batch's
voxels; no separate strong augmentation).

Per training step (forward):

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

``loss = L_sup + lambda_u L_unsup + lambda_c L_contrastive`` (1.0 and 0.1).

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

import copy
import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pcseg.models.inputs import sparse_input
from pcseg.methods.base import Method
from pcseg.distributed import all_gather_rows
from pcseg.methods.supervised import (
    at_least_float32,
    check_inputs,
    check_nonnegative,
    check_unit_interval,
    _class_weights_tensor,
    hidden_accuracy,
    labelled_cross_entropy,
    supervision_diagnostics,
    zero_with_graph,
)

#: added inside the log of the entropy (as in the official code)
ENTROPY_EPS = 1e-10
ANCHOR_SPLITS = ("reliable", "lowest")
TEACHER_BN_MODES = ("train", "eval")


# ---------------------------------------------------------------------------- pure pieces
def prediction_entropy(prob: torch.Tensor) -> torch.Tensor:
    """(M, K) probabilities -> (M,) entropy ``-sum_k p_k log(p_k + 1e-10)`` (nats)."""
    if prob.dim() != 2:
        raise ValueError(f"prediction_entropy: prob must be (M, K), got {tuple(prob.shape)}")
    return -(prob * torch.log(prob + ENTROPY_EPS)).sum(1)


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q``-th percentile (q in [0, 100]) of ``values`` with linear interpolation.

    Same definition as ``numpy.percentile(values, q)`` (method ``"linear"``): with the
    values sorted ascending as v_0..v_{n-1}, ``pos = q/100 * (n - 1)`` and the result is
    ``v_floor(pos) + (v_ceil(pos) - v_floor(pos)) * frac(pos)``. Computed in float64.

    Args:
        values: any shape, at least one element, floating.
        q: percentile in [0, 100].
    Returns:
        0-dim float64 tensor on the device of ``values``.
    """
    if not 0.0 <= float(q) <= 100.0:
        raise ValueError(f"percentile: q must be in [0, 100], got {q}")
    v = values.detach().flatten().to(torch.float64)
    n = v.numel()
    if n == 0:
        raise ValueError("percentile: values is empty")
    v = torch.sort(v).values
    pos = float(q) / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return v[lo] + (v[hi] - v[lo]) * frac


def unreliable_percent(alpha_0: float, step: int, total_steps: int) -> float:
    """alpha_t = alpha_0 (1 - t/T) in percent; alpha_0 when T <= 0 (unknown); t/T clipped to [0, 1]."""
    if total_steps <= 0:
        return float(alpha_0)
    frac = min(max(float(step) / float(total_steps), 0.0), 1.0)
    return float(alpha_0) * (1.0 - frac)


def reliable_mask(entropy: torch.Tensor, alpha_percent: float) -> torch.Tensor:
    """Reliable points: entropy strictly below the (100 - alpha) percentile.

    Args:
        entropy: (N,) entropies of the candidate (unlabelled) points.
        alpha_percent: alpha_t in [0, 100], the percentage of points declared unreliable
            (the highest-entropy ones). ``alpha <= 0`` -> every point is reliable.
    Returns:
        (N,) bool; all False for N = 0.
    """
    if entropy.dim() != 1:
        raise ValueError(f"reliable_mask: entropy must be (N,), got {tuple(entropy.shape)}")
    if entropy.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=entropy.device)
    if alpha_percent <= 0.0:
        return torch.ones_like(entropy, dtype=torch.bool)
    thresh = percentile(entropy, 100.0 - min(float(alpha_percent), 100.0))
    return entropy.to(torch.float64) < thresh


def lowest_entropy_mask(entropy: torch.Tensor, alpha_percent: float) -> torch.Tensor:
    """(N,) bool: entropy <= the alpha percentile (the official contrastive anchor set)."""
    if entropy.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=entropy.device)
    thresh = percentile(entropy, min(max(float(alpha_percent), 0.0), 100.0))
    return entropy.to(torch.float64) <= thresh


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


def ema_decay_at(iteration: int, ema_decay: float, start: int = 0) -> float:
    """U2PL teacher decay ``min(1 - 1/(k + 1), ema_decay)`` with ``k = iteration - start``; 0 for k <= 0."""
    k = int(iteration) - int(start)
    if k <= 0:
        return 0.0
    return min(1.0 - 1.0 / (k + 1.0), float(ema_decay))


# ---------------------------------------------------------------------------- modules
class RepresentationHead(nn.Sequential):
    """g = Linear(D, D) -> BatchNorm1d(D) -> ReLU -> Linear(D, R): (M, D) -> (M, R)."""

    def __init__(self, in_dim: int, rep_dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, in_dim),
            nn.BatchNorm1d(in_dim),
            nn.ReLU(inplace=True),
            nn.Linear(in_dim, rep_dim),
        )


class ClassQueues(nn.Module):
    """Per-class FIFO ring buffers of keys with bounded memory.

    Buffers (saved in the state dict): ``keys`` (K, capacity, R) float32, ``ptr`` (K,)
    int64 next write position, ``count`` (K,) int64 number of valid keys (<= capacity).
    While ``count < capacity`` the valid keys are ``keys[c, :count]``; once full every slot
    is valid and the oldest key sits at ``ptr``.
    """

    def __init__(self, num_classes: int, capacity: int, dim: int) -> None:
        super().__init__()
        if int(capacity) < 1 or int(dim) < 1 or int(num_classes) < 1:
            raise ValueError(
                f"ClassQueues: num_classes, capacity and dim must be >= 1, got "
                f"{num_classes}, {capacity}, {dim}"
            )
        self.num_classes = int(num_classes)
        self.capacity = int(capacity)
        self.dim = int(dim)
        self.register_buffer("keys", torch.zeros(self.num_classes, self.capacity, self.dim))
        self.register_buffer("ptr", torch.zeros(self.num_classes, dtype=torch.int64))
        self.register_buffer("count", torch.zeros(self.num_classes, dtype=torch.int64))

    @torch.no_grad()
    def push(self, c: int, new_keys: torch.Tensor) -> None:
        """Append (n, R) keys to class c's queue (oldest keys are overwritten first)."""
        if new_keys.dim() != 2 or new_keys.shape[1] != self.dim:
            raise ValueError(
                f"ClassQueues.push: keys must be (n, {self.dim}), got {tuple(new_keys.shape)}"
            )
        if not 0 <= int(c) < self.num_classes:
            raise ValueError(f"ClassQueues.push: class {c} out of range [0, {self.num_classes})")
        n = new_keys.shape[0]
        if n == 0:
            return
        cap = self.capacity
        buf = self.keys[c]
        new_keys = new_keys.detach().to(device=buf.device, dtype=buf.dtype)
        if n >= cap:
            buf.copy_(new_keys[n - cap :])
            self.ptr[c] = 0
            self.count[c] = cap
            return
        p = int(self.ptr[c])
        end = p + n
        if end <= cap:
            buf[p:end] = new_keys
        else:
            first = cap - p
            buf[p:] = new_keys[:first]
            buf[: n - first] = new_keys[first:]
        self.ptr[c] = end % cap
        self.count[c] = min(int(self.count[c]) + n, cap)

    @torch.no_grad()
    def push_masked(self, keys: torch.Tensor, mask: torch.Tensor, gather: bool = True) -> torch.Tensor:
        """Push ``keys[mask[:, c]]`` to every class c, keeping the row order.

        Args:
            keys: (N, R) keys (detached).
            mask: (N, K) bool.
            gather: all-gather (keys, mask) rows over ranks first (rank order) so every
                rank pushes the same keys; a collective, call it on every rank.
        Returns:
            (K,) int64 number of keys pushed per class (after gathering).
        """
        if mask.shape != (keys.shape[0], self.num_classes):
            raise ValueError(
                f"ClassQueues.push_masked: mask must be ({keys.shape[0]}, {self.num_classes}), "
                f"got {tuple(mask.shape)}"
            )
        keys = keys.detach().to(self.keys.dtype)
        any_c = mask.any(1)
        rows = torch.cat([keys[any_c], mask[any_c].to(keys.dtype)], dim=1)
        if gather:
            rows = all_gather_rows(rows)
        keys, mask = rows[:, : self.dim], rows[:, self.dim :] > 0.5
        pushed = mask.sum(0).to(torch.int64)
        for c in range(self.num_classes):
            if int(pushed[c]) > 0:
                self.push(c, keys[mask[:, c]])
        return pushed

    def ordered(self, c: int) -> torch.Tensor:
        """(count_c, R) keys of class c from oldest to newest."""
        n = int(self.count[c])
        if n < self.capacity:
            return self.keys[c, :n]
        p = int(self.ptr[c])
        return torch.cat([self.keys[c, p:], self.keys[c, :p]], dim=0)

    def fill_fraction(self) -> torch.Tensor:
        """0-dim float: mean over classes of count / capacity."""
        return (self.count.to(torch.float32) / self.capacity).mean()


class U2PLContrast(nn.Module):
    """U2PL's contrastive term: student representation head, per-class queues, sampling.

    Args:
        num_classes: K.
        feature_dim: D of the decoder features.
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
        rep_dim: int = 64,
        queue_capacity: int = 10000,
        num_anchors: int = 256,
        num_negatives: int = 50,
        temperature: float = 0.5,
        anchor_prob_threshold: float = 0.3,
        neg_prob_threshold: float = 1.0,
        low_rank: int = 3,
        high_rank: int = 20,
        min_queue: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        checks = {
            "rep_dim": int(rep_dim) >= 1,
            "num_anchors": int(num_anchors) >= 1,
            "num_negatives": int(num_negatives) >= 1,
            "temperature": float(temperature) > 0 and math.isfinite(float(temperature)),
            "low_rank": int(low_rank) >= 1,
            "high_rank": int(high_rank) > int(low_rank),
            "min_queue": int(min_queue) >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"U2PLContrast: invalid settings {bad} (rep_dim, num_anchors, num_negatives, "
                f"min_queue >= 1; temperature > 0; 1 <= low_rank < high_rank), got "
                f"rep_dim={rep_dim}, num_anchors={num_anchors}, num_negatives={num_negatives}, "
                f"temperature={temperature}, low_rank={low_rank}, high_rank={high_rank}, "
                f"min_queue={min_queue}"
            )
        self.num_classes = int(num_classes)
        self.num_anchors = int(num_anchors)
        self.num_negatives = int(num_negatives)
        self.temperature = float(temperature)
        self.anchor_prob_threshold = float(anchor_prob_threshold)
        self.neg_prob_threshold = float(neg_prob_threshold)
        self.low_rank = int(low_rank)
        self.high_rank = int(high_rank)
        self.min_queue = int(min_queue)
        self.rep_head = RepresentationHead(int(feature_dim), int(rep_dim))
        self.queues = ClassQueues(self.num_classes, int(queue_capacity), int(rep_dim))
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed))

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

    def sample_negatives(self, queue_count: int, num_anchors: int, device: torch.device) -> torch.Tensor:
        """(A, num_negatives) indices drawn uniformly with replacement from [0, queue_count)."""
        idx = torch.randint(
            queue_count, (num_anchors, self.num_negatives), generator=self.generator
        )
        return idx.to(device)

    def forward(  # type: ignore[override]
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
                prob, weak_labels, unreliable, self.low_rank, self.high_rank, self.neg_prob_threshold
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
            losses.append(info_nce(rep_s[rows].to(torch.float32), positive, negatives, self.temperature))
            samples.append((c, rows, slots))
        if losses:
            loss = torch.stack(losses).mean()
        else:
            loss = zero_with_graph(rep_s)
        return loss, {"classes": len(losses), "pushed": pushed, "samples": samples}


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind DistributedDataParallel / DataParallel / torch.compile."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


class EMATeacher(nn.Module):
    """EMA copy of the student network and of the student representation head.

    ``model`` is None until :meth:`attach`; a state dict loaded before that keeps the
    model weights aside (``pending``) and :meth:`attach` loads them into the new copy.

    Args:
        rep_head: the student representation head (deep-copied now).
        bn_mode: ``"train"`` (batch statistics) or ``"eval"`` (running statistics) for the
            teacher forward during training.
        input_builder: ``(batch, device) -> model input``; default
            :func:`pcseg.data.dataset.sparse_input` (shares the student's kernel maps).
    """

    def __init__(
        self,
        rep_head: nn.Module,
        bn_mode: str = "train",
        input_builder: Callable[[dict[str, Any], torch.device], Any] | None = None,
    ) -> None:
        super().__init__()
        if bn_mode not in TEACHER_BN_MODES:
            raise ValueError(f"EMATeacher: bn_mode must be one of {TEACHER_BN_MODES}, got {bn_mode!r}")
        self.bn_mode = bn_mode
        self.input_builder = input_builder or sparse_input
        self.register_module("model", None)
        self.rep_head = copy.deepcopy(rep_head)
        for p in self.rep_head.parameters():
            p.requires_grad_(False)
        self._pending: dict[str, torch.Tensor] | None = None

    @property
    def attached(self) -> bool:
        """True once the teacher network exists."""
        return self.model is not None

    def attach(self, student: nn.Module) -> None:
        """Create the teacher network as a frozen deep copy of ``student`` (unwrapped from
        DDP / compile). No-op when already attached. Loads pending checkpoint weights."""
        if self.model is not None:
            return
        teacher = copy.deepcopy(_unwrap(student))
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.model = teacher
        if self._pending is not None:
            self.model.load_state_dict(self._pending)
            self._pending = None

    def _load_from_state_dict(  # noqa: D401 - torch hook
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        if self.model is None:
            mp = prefix + "model."
            pending = {k[len(mp):]: v for k, v in state_dict.items() if k.startswith(mp)}
            if pending:
                self._pending = pending
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @torch.no_grad()
    def update(self, student: nn.Module, student_rep_head: nn.Module, decay: float) -> None:
        """``t <- decay * t + (1 - decay) * s`` on parameters; buffers copied from the student."""
        if self.model is None:
            raise RuntimeError("EMATeacher.update: teacher not attached (call on_train_start)")
        for t_mod, s_mod, what in (
            (self.model, _unwrap(student), "network"),
            (self.rep_head, student_rep_head, "representation head"),
        ):
            t_p = dict(t_mod.named_parameters())
            s_p = dict(s_mod.named_parameters())
            t_b = dict(t_mod.named_buffers())
            s_b = dict(s_mod.named_buffers())
            if t_p.keys() != s_p.keys() or t_b.keys() != s_b.keys():
                raise RuntimeError(
                    f"EMATeacher.update: teacher and student {what} differ in structure "
                    f"({len(t_p)} vs {len(s_p)} parameters, {len(t_b)} vs {len(s_b)} buffers)"
                )
            for name, tp in t_p.items():
                sp = s_p[name].detach().to(dtype=tp.dtype, device=tp.device)
                if decay == 0.0:
                    tp.copy_(sp)
                else:
                    tp.mul_(decay).add_(sp, alpha=1.0 - decay)
            for name, tb in t_b.items():
                tb.copy_(s_b[name].detach().to(device=tb.device))

    @torch.no_grad()
    def predict(
        self, batch: dict[str, Any], device: torch.device, train_bn: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher (M, K) float32 probabilities and (M, R) representations for the batch.

        ``train_bn`` None -> ``bn_mode``; the previous train/eval mode is restored.
        """
        if self.model is None:
            raise RuntimeError("EMATeacher: teacher not attached (call on_train_start(model))")
        use_train = (self.bn_mode == "train") if train_bn is None else bool(train_bn)
        was = (self.model.training, self.rep_head.training)
        self.model.train(use_train)
        self.rep_head.train(use_train)
        try:
            out = self.model(self.input_builder(batch, device))
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise RuntimeError("EMATeacher: the model must return (logits, features)")
            t_logits, t_feats = out
            prob = torch.softmax(t_logits.float(), dim=1)
            rep = self.rep_head(t_feats.to(next(self.rep_head.parameters()).dtype))
        finally:
            self.model.train(was[0])
            self.rep_head.train(was[1])
        return prob, rep


@torch.no_grad()
def teacher_split(
    prob: torch.Tensor,
    weak_labels: torch.Tensor,
    alpha_percent: float,
    anchor_split: str = "reliable",
) -> dict[str, torch.Tensor]:
    """Entropy-based split of the unlabelled points.

    Args:
        prob: (M, K) teacher probabilities.
        weak_labels: (M,) int64, -1 = unlabelled.
        alpha_percent: alpha_t, percent of unlabelled points declared unreliable.
        anchor_split: ``"reliable"`` (anchor candidates = reliable points) or ``"lowest"``
            (the alpha_t % lowest-entropy points, the official contrastive choice).
    Returns:
        dict of (M,) tensors: ``entropy`` float, ``pseudo`` int64 argmax, ``unlabelled``,
        ``reliable``, ``unreliable`` and ``anchor_ok`` bool (all False on labelled points).
    """
    if anchor_split not in ANCHOR_SPLITS:
        raise ValueError(f"anchor_split must be one of {ANCHOR_SPLITS}, got {anchor_split!r}")
    ent = prediction_entropy(prob)
    unl = weak_labels < 0
    reliable = torch.zeros_like(unl)
    reliable[unl] = reliable_mask(ent[unl], alpha_percent)
    unreliable = unl & ~reliable
    if anchor_split == "reliable":
        anchor_ok = reliable
    else:
        anchor_ok = torch.zeros_like(unl)
        anchor_ok[unl] = lowest_entropy_mask(ent[unl], alpha_percent)
    return {
        "entropy": ent,
        "pseudo": prob.argmax(1),
        "unlabelled": unl,
        "reliable": reliable,
        "unreliable": unreliable,
        "anchor_ok": anchor_ok,
    }


@torch.no_grad()
def split_diagnostics(
    split: dict[str, torch.Tensor], batch: dict[str, Any], queues: ClassQueues, alpha: float
) -> dict[str, torch.Tensor]:
    """Detached ``diag/pseudo_acc`` (teacher argmax vs hidden GT on unlabelled points),
    ``diag/reliable_frac``, ``diag/reliable_acc``, ``diag/queue_fill``, ``diag/alpha_t``."""
    unl, rel = split["unlabelled"], split["reliable"]
    dev = unl.device
    out: dict[str, torch.Tensor] = {}
    n_unl = int(unl.sum())
    out["diag/reliable_frac"] = (
        torch.tensor(float(rel.sum()) / n_unl, device=dev) if n_unl else torch.zeros((), device=dev)
    )
    acc = hidden_accuracy(split["pseudo"], batch, unl)
    if acc is not None:
        out["diag/pseudo_acc"] = acc
    acc = hidden_accuracy(split["pseudo"], batch, rel)
    if acc is not None:
        out["diag/reliable_acc"] = acc
    out["diag/queue_fill"] = queues.fill_fraction().to(dev)
    out["diag/alpha_t"] = torch.tensor(float(alpha), device=dev)
    return out


# ---------------------------------------------------------------------------- the method
class U2PL(Method):
    """U2PL for sparse 3D weak labels (see the module docstring).

    Args:
        num_classes: K.
        feature_dim: D of the decoder features.
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
            :func:`pcseg.data.dataset.sparse_input`, sharing the student's kernel maps).

    forward returns ``loss``, ``loss_sup``, ``loss_unsup``, ``loss_contrastive`` and the
    detached ``diag/pseudo_acc``, ``diag/reliable_frac``, ``diag/reliable_acc``,
    ``diag/queue_fill``, ``diag/alpha_t``, ``diag/contrast_classes``,
    ``diag/neg_keys_pushed``, ``diag/labelled_frac``, ``diag/pred_acc_unlabelled``
    (accuracies omitted when the batch has no hidden labels). During the
    ``sup_only_iterations`` warm-up the teacher is not run and only ``loss_sup`` is non-zero.
    """

    name = "u2pl"

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        lambda_u: float = 1.0,
        lambda_c: float = 0.1,
        alpha_0: float = 20.0,
        ema_decay: float = 0.99,
        sup_only_iterations: int = 0,
        teacher_bn: str = "train",
        anchor_split: str = "reliable",
        rep_dim: int = 64,
        queue_capacity: int = 10000,
        num_anchors: int = 256,
        num_negatives: int = 50,
        temperature: float = 0.5,
        anchor_prob_threshold: float = 0.3,
        neg_prob_threshold: float = 1.0,
        low_rank: int = 3,
        high_rank: int = 20,
        min_queue: int = 1,
        seed: int = 0,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        input_builder: Callable[[dict[str, Any], torch.device], Any] | None = None,
    ) -> None:
        super().__init__(num_classes, feature_dim)
        _check_common(self.name, lambda_u, lambda_c, alpha_0, ema_decay, anchor_split, label_smoothing)
        if int(sup_only_iterations) < 0:
            raise ValueError(f"{self.name}: sup_only_iterations must be >= 0, got {sup_only_iterations}")
        self.lambda_u = float(lambda_u)
        self.lambda_c = float(lambda_c)
        self.alpha_0 = float(alpha_0)
        self.ema_decay = float(ema_decay)
        self.sup_only_iterations = int(sup_only_iterations)
        self.anchor_split = anchor_split
        self.label_smoothing = float(label_smoothing)
        self.contrast = U2PLContrast(
            self.num_classes, self.feature_dim, rep_dim, queue_capacity, num_anchors,
            num_negatives, temperature, anchor_prob_threshold, neg_prob_threshold,
            low_rank, high_rank, min_queue, seed,
        )
        self.teacher = EMATeacher(self.contrast.rep_head, teacher_bn, input_builder)
        self.register_buffer(
            "class_weights", _class_weights_tensor(class_weights, self.num_classes, self.name),
            persistent=False,
        )
        #: optimiser steps taken (t of alpha_t) and the run length T (0 = unknown)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))
        self.register_buffer("total_steps", torch.zeros((), dtype=torch.int64))

    # ---------------------------------------------------------------- hooks
    def on_train_start(self, model: nn.Module) -> None:
        """Create the EMA teacher as a frozen copy of ``model`` (or restore a loaded one)."""
        self.teacher.attach(model)

    def after_optimizer_step(self, model: nn.Module, iteration: int, total_iterations: int) -> None:
        """EMA update of the teacher (network and representation head); advances t."""
        d = ema_decay_at(iteration, self.ema_decay, self.sup_only_iterations)
        self.teacher.update(model, self.contrast.rep_head, d)
        self.steps_done.fill_(int(iteration) + 1)
        self.total_steps.fill_(max(int(total_iterations), 0))

    def alpha_t(self) -> float:
        """Current unreliable percentage alpha_0 (1 - t/T)."""
        return unreliable_percent(self.alpha_0, int(self.steps_done), int(self.total_steps))

    @torch.no_grad()
    def pseudo_label_probs(
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any] | None = None
    ) -> torch.Tensor | None:
        """(M, K) teacher probabilities (teacher in eval mode) for ``batch``; None when no
        teacher is attached or no batch is given (the teacher needs the input voxels)."""
        if batch is None or not self.teacher.attached:
            return None
        prob, _ = self.teacher.predict(batch, logits.device, train_bn=False)
        return prob

    # ---------------------------------------------------------------- loss
    def forward(  # type: ignore[override]
        self, logits: torch.Tensor, features: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """See :meth:`pcseg.methods.base.Method.forward` and the class docstring."""
        weak = check_inputs(logits, features, batch, self.num_classes, self.feature_dim, self.name)
        loss_sup = labelled_cross_entropy(logits, weak, self.class_weights, self.label_smoothing)
        rep_s = self.contrast.rep_head(features)
        out: dict[str, torch.Tensor] = {}
        warmup = self.training and int(self.steps_done) < self.sup_only_iterations
        if warmup:
            loss_unsup = zero_with_graph(logits)
            loss_con = zero_with_graph(rep_s)
        else:
            prob, rep_t = self.teacher.predict(batch, logits.device)
            if prob.shape != logits.shape:
                raise RuntimeError(
                    f"{self.name}: teacher logits {tuple(prob.shape)} do not match the "
                    f"student's {tuple(logits.shape)}"
                )
            alpha = self.alpha_t()
            split = teacher_split(prob, weak, alpha, self.anchor_split)
            rel = split["reliable"]
            if bool(rel.any()):
                loss_unsup = F.cross_entropy(logits[rel], split["pseudo"][rel])
            else:
                loss_unsup = zero_with_graph(logits)
            loss_con, info = self.contrast(
                rep_s, rep_t, prob, weak, split["anchor_ok"], split["unreliable"],
                update_queues=self.training,
            )
            out.update(split_diagnostics(split, batch, self.contrast.queues, alpha))
            out["diag/contrast_classes"] = torch.tensor(float(info["classes"]), device=logits.device)
            out["diag/neg_keys_pushed"] = info["pushed"].sum().to(torch.float32).to(logits.device)
        loss = (
            loss_sup
            + self.lambda_u * loss_unsup.to(loss_sup.dtype)
            + self.lambda_c * loss_con.to(loss_sup.dtype)
        )
        out.update(
            {"loss": loss, "loss_sup": loss_sup, "loss_unsup": loss_unsup, "loss_contrastive": loss_con}
        )
        out.update(supervision_diagnostics(logits, weak, batch))
        return out


def _check_common(
    who: str,
    lambda_u: float,
    lambda_c: float,
    alpha_0: float,
    ema_decay: float,
    anchor_split: str,
    label_smoothing: float,
) -> None:
    """Validate the settings shared by U2PL and ERDAWithU2PLNegatives (ValueError naming them)."""
    check_nonnegative(who, "lambda_u", lambda_u)
    check_nonnegative(who, "lambda_c", lambda_c)
    if not 0.0 <= float(alpha_0) <= 100.0:
        raise ValueError(f"{who}: alpha_0 must be a percentage in [0, 100], got {alpha_0}")
    check_unit_interval(who, "ema_decay", ema_decay)
    if anchor_split not in ANCHOR_SPLITS:
        raise ValueError(f"{who}: anchor_split must be one of {ANCHOR_SPLITS}, got {anchor_split!r}")
    check_unit_interval(who, "label_smoothing", label_smoothing)
