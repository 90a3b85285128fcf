"""U2PL's contrastive term: negative keys, anchor candidates and InfoNCE against brute force."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.u2pl_toys import K

from pcseg.methods.contrastive import (
    U2PLContrast,
    anchor_candidate_mask,
    class_ranks,
    negative_key_mask,
)
from pcseg.methods.entropy_split import teacher_split


@pytest.mark.parametrize("k", [13, 25])
def test_negative_key_mask_bruteforce(k):
    m = 120
    prob = torch.softmax(torch.randn(m, k) * 3, 1)
    prob[0] = 1.0 / k  # all ties: ranks by class index
    weak = torch.full((m,), -1)
    lab = torch.rand(m) < 0.3
    weak[lab] = torch.randint(0, k, (int(lab.sum()),))
    unreliable = (torch.rand(m) < 0.5) & (weak < 0)
    for thr in (1.0, 0.02):
        got = negative_key_mask(prob, weak, unreliable, 3, 20, thr)
        for i in range(m):
            order = sorted(range(k), key=lambda c: (-float(prob[i, c]), c))
            rank = {c: r for r, c in enumerate(order)}
            for c in range(k):
                if int(weak[i]) < 0:
                    exp = bool(unreliable[i]) and 3 <= rank[c] < min(20, k)
                else:
                    exp = c != int(weak[i]) and rank[c] < 3
                exp = exp and float(prob[i, c]) < thr
                assert bool(got[i, c]) == exp, (i, c)
    ranks = class_ranks(prob)
    assert ranks[0].tolist() == list(range(k))


def _bruteforce_infonce(anchor, pos, negs, temp):
    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / (
            math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        )

    num = math.exp(cos(anchor, pos) / temp)
    den = num + sum(math.exp(cos(anchor, n) / temp) for n in negs)
    return -math.log(num / den)


def test_contrastive_loss_bruteforce():
    m, k, r = 80, 5, 4
    con = U2PLContrast(
        k,
        6,
        rep_dim=r,
        queue_capacity=7,
        num_anchors=3,
        num_negatives=4,
        temperature=0.5,
        anchor_prob_threshold=0.3,
        seed=3,
    )
    prob = torch.softmax(torch.randn(m, k) * 2.5, 1)
    weak = torch.full((m,), -1)
    weak[:20] = torch.arange(20) % k
    split = teacher_split(prob, weak, 20.0)
    rep_s = torch.randn(m, r, requires_grad=True)
    rep_t = torch.randn(m, r)
    con.queues.push(4, torch.randn(2, r))  # class 4 pre-filled; others fill from this batch
    loss, info = con(rep_s, rep_t, prob, weak, split["anchor_ok"], split["unreliable"])
    keys = con.queues.keys
    counts = con.queues.count.tolist()
    # brute force of the candidate / anchor sets and of the contributing classes
    pseudo = prob.argmax(1)
    exp_classes = []
    terms = []
    samples = {c: (rows, slots) for c, rows, slots in info["samples"]}
    for c in range(k):
        cand = [
            i
            for i in range(m)
            if (int(weak[i]) == c)
            or (int(weak[i]) < 0 and bool(split["reliable"][i]) and int(pseudo[i]) == c)
        ]
        anchors = [i for i in cand if float(prob[i, c]) > 0.3]
        if not anchors or counts[c] == 0:
            assert c not in samples
            continue
        exp_classes.append(c)
        rows, slots = samples[c]
        assert len(set(rows.tolist())) == rows.numel() == min(3, len(anchors))
        assert set(rows.tolist()) <= set(anchors)
        assert slots.shape == (rows.numel(), 4) and int(slots.max()) < counts[c]
        pos = [sum(float(rep_t[i, j]) for i in cand) / len(cand) for j in range(r)]
        per_anchor = [
            _bruteforce_infonce(
                rep_s[a].tolist(), pos, [keys[c, s].tolist() for s in slots[n]], 0.5
            )
            for n, a in enumerate(rows.tolist())
        ]
        terms.append(sum(per_anchor) / len(per_anchor))
    assert sorted(samples) == exp_classes and info["classes"] == len(exp_classes) >= 2
    assert float(loss.detach()) == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    loss.backward()
    assert rep_s.grad is not None and rep_s.grad.abs().sum() > 0


def test_contrastive_skips_empty_queues_and_is_zero_with_graph():
    con = U2PLContrast(K, 6, rep_dim=4, queue_capacity=5)
    prob = torch.softmax(torch.randn(30, K), 1)
    weak = torch.arange(30) % K  # all labelled -> labelled negatives only
    rep_s = torch.randn(30, 4, requires_grad=True)
    loss, info = con(
        rep_s,
        torch.randn(30, 4),
        prob,
        weak,
        torch.zeros(30, dtype=torch.bool),
        torch.zeros(30, dtype=torch.bool),
        update_queues=False,
    )
    assert info["classes"] == 0 and float(loss) == 0.0
    loss.backward()
    assert rep_s.grad is not None


def test_anchor_candidates_bruteforce():
    prob = torch.softmax(torch.randn(40, K) * 2, 1)
    weak = torch.full((40,), -1)
    weak[::3] = torch.arange(0, 40, 3) % K
    ok = torch.rand(40) < 0.6
    got = anchor_candidate_mask(prob, weak, ok)
    for i in range(40):
        for c in range(K):
            exp = (
                int(weak[i]) == c
                if int(weak[i]) >= 0
                else bool(ok[i]) and int(prob[i].argmax()) == c
            )
            assert bool(got[i, c]) == exp
