"""pcseg.methods.pseudo_threshold: which points are selected, the detached hard target and
its gradient, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.methods import D, K, make_batch, np_softmax_row

from pcseg.methods.pseudo_threshold import PseudoThreshold


# ---------------------------------------------------------------- pseudo-threshold
def test_pseudo_threshold_selection_and_detached_target() -> None:
    m, thr, w = 30, 0.9, 0.5
    logits, features, batch = make_batch(m=m, labelled={0: 1, 1: 2}, seed=17)
    logits = (logits * 3).requires_grad_(True)
    out = PseudoThreshold(K, D, weight=w, threshold=thr)(logits, features, batch)
    z = logits.detach().numpy()
    weak = batch["weak_labels"].numpy()
    labels = batch["labels"].numpy()
    q = np.array([np_softmax_row(r) for r in z])
    sel = [i for i in range(m) if weak[i] == -1 and q[i].max() > thr]
    n_unl = int((weak == -1).sum())
    assert 0 < len(sel) < n_unl
    assert out["diag/pseudo_selected_frac"].item() == pytest.approx(len(sel) / n_unl)
    ce = sum(-math.log(q[i].max()) for i in sel) / len(sel)
    assert out["loss_pseudo"].item() == pytest.approx(ce, rel=1e-10)
    valid = [i for i in sel if labels[i] >= 0]
    acc = sum(int(q[i].argmax() == labels[i]) for i in valid) / len(valid)
    assert out["diag/pseudo_acc"].item() == pytest.approx(acc)
    out["loss"].backward()
    grad = logits.grad.numpy()
    for i in range(m):
        if weak[i] >= 0:
            continue
        if i in sel:  # detached hard target: w (q - onehot(argmax q)) / N_sel
            exp = w * (q[i] - np.eye(K)[q[i].argmax()]) / len(sel)
        else:
            exp = np.zeros(K)
        np.testing.assert_allclose(grad[i], exp, rtol=1e-9, atol=1e-15)


def test_pseudo_threshold_nothing_selected() -> None:
    logits, features, batch = make_batch(seed=18)
    logits = (logits * 0.01).requires_grad_(True)  # near-uniform: nothing above 0.95
    out = PseudoThreshold(K, D)(logits, features, batch)
    assert out["loss_pseudo"].item() == 0.0 and out["diag/pseudo_selected_frac"].item() == 0.0
    assert "diag/pseudo_acc" not in out
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()
