"""pcseg.methods.supervised: the cross-entropy on the labelled subset, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.methods import D, K, make_batch, np_softmax_row

from pcseg.methods.supervised import SupervisedOnly


# ---------------------------------------------------------------- supervised
def test_supervised_matches_cross_entropy_on_labelled_subset() -> None:
    logits, features, batch = make_batch(seed=14)
    weak = batch["weak_labels"]
    lab = weak >= 0
    out = SupervisedOnly(K, D)(logits, features, batch)
    assert out["loss"].item() == pytest.approx(
        F.cross_entropy(logits[lab], weak[lab]).item(), rel=1e-12
    )
    # hand loop reference with class weights and label smoothing
    cw = [1.0, 2.0, 0.5, 3.0]
    eps = 0.1
    out = SupervisedOnly(K, D, class_weights=cw, label_smoothing=eps)(logits, features, batch)
    num = den = 0.0
    for i in np.flatnonzero(lab.numpy()):
        logq = np.log(np_softmax_row(logits[i].numpy()))
        y = int(weak[i])
        target = np.full(K, eps / K)
        target[y] += 1 - eps
        # torch: weighted NLL of the true class (weight w_y) + smoothing term weighted per class
        num += (1 - eps) * -cw[y] * logq[y] + eps / K * sum(-cw[c] * logq[c] for c in range(K))
        den += cw[y]
    assert out["loss"].item() == pytest.approx(num / den, rel=1e-10)


def test_supervised_all_unlabelled_is_zero_with_grad() -> None:
    logits, features, batch = make_batch(labelled={}, seed=15)
    logits.requires_grad_(True)
    out = SupervisedOnly(K, D)(logits, features, batch)
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and torch.count_nonzero(logits.grad) == 0
