"""U2PL's entropy split (reliable / unreliable points), checked against numpy and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.u2pl_toys import K

from pcseg.methods.entropy_split import (
    percentile,
    prediction_entropy,
    reliable_mask,
    teacher_split,
)


@pytest.mark.parametrize("alpha", [20.0, 7.5, 63.0])
def test_percentile_split_matches_bruteforce(alpha):
    rng = np.random.default_rng(1)
    ent = rng.random(1000) * 3.0  # distinct with probability 1
    t = torch.from_numpy(ent)
    # percentile == numpy's linear percentile
    for q in (0.0, 12.5, 50.0, 80.0, 100.0 - alpha, 100.0):
        assert float(percentile(t, q)) == pytest.approx(
            float(np.percentile(ent, q)), rel=0, abs=1e-12
        )
    # brute force: sort, interpolate by hand, count strictly-below points
    s = sorted(ent.tolist())
    pos = (100.0 - alpha) / 100.0 * (len(s) - 1)
    lo = int(math.floor(pos))
    thresh = s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)
    expected = [e < thresh for e in ent.tolist()]
    got = reliable_mask(t, alpha)
    assert got.tolist() == expected
    # with distinct values exactly floor(pos) + 1 points sit below the threshold
    assert int(got.sum()) == lo + 1


def test_reliable_split_hand_worked():
    ent = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7])
    # alpha = 20 -> 80th percentile at pos 3.2 of [0.1,0.3,0.5,0.7,0.9] = 0.7 + 0.2*0.2 = 0.74
    assert reliable_mask(ent, 20.0).tolist() == [True, True, False, True, True]
    # alpha = 40 -> 60th pct at pos 2.4 = 0.5 + 0.4*0.2 = 0.58 -> 0.7 and 0.9 unreliable
    assert reliable_mask(ent, 40.0).tolist() == [True, True, False, True, False]
    assert reliable_mask(ent, 0.0).all()
    # threshold landing exactly on a value (pos = 0.8 * 10 = 8): that value is unreliable
    # (the official code drops entropy >= threshold)
    ent11 = torch.arange(11, dtype=torch.float64) / 10
    assert reliable_mask(ent11, 20.0).tolist() == [True] * 8 + [False] * 3
    assert reliable_mask(torch.zeros(0), 20.0).numel() == 0


def test_teacher_split_only_unlabelled_and_entropy():
    prob = torch.softmax(torch.randn(50, K) * 2, 1)
    weak = torch.full((50,), -1)
    weak[:10] = torch.arange(10) % K
    split = teacher_split(prob, weak, 20.0)
    ent = -(prob * torch.log(prob + 1e-10)).sum(1)
    assert torch.allclose(split["entropy"], ent) and torch.allclose(prediction_entropy(prob), ent)
    assert not split["reliable"][:10].any() and not split["unreliable"][:10].any()
    assert torch.equal(split["reliable"][10:], reliable_mask(ent[10:], 20.0))
    assert torch.equal(split["unreliable"][10:], ~reliable_mask(ent[10:], 20.0))
    assert torch.equal(split["anchor_ok"], split["reliable"])
    low = teacher_split(prob, weak, 20.0, anchor_split="lowest")["anchor_ok"][10:]
    thr = np.percentile(ent[10:].numpy().astype(np.float64), 20.0)
    assert low.tolist() == [float(e) <= thr for e in ent[10:].double()]
