"""Tests of the training methods (supervised, ERDA + ablations, pseudo-threshold).

Every number is checked against an independent computation: numpy float64 with explicit
per-point / per-class loops, a hand-worked case, or ``F.cross_entropy`` on a subset.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pcseg.methods import METHODS, build_method, method_options
from pcseg.methods.erda import ERDA, KL_QP_EPS, VARIANTS
from pcseg.methods.pseudo_threshold import PseudoThreshold
from pcseg.methods.supervised import SupervisedOnly

K, D = 4, 6


# ---------------------------------------------------------------- helpers
def make_batch(
    m: int = 40,
    labelled: dict[int, int] | None = None,
    seed: int = 0,
    k: int = K,
    d: int = D,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """float64 logits (m,k), features (m,d) and a batch whose weak labels are given by
    ``labelled`` {row: class}; hidden labels are random in [-1, k)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, k, generator=g, dtype=torch.float64) * 2.0
    features = torch.randn(m, d, generator=g, dtype=torch.float64)
    labels = torch.randint(-1, k, (m,), generator=g)
    weak = torch.full((m,), -1, dtype=torch.int64)
    if labelled is None:
        labelled = {i: i % k for i in range(2 * k)}
    for row, c in labelled.items():
        weak[row] = c
        labels[row] = c
    return logits, features, {"weak_labels": weak, "labels": labels}


def np_head(method: ERDA, f: np.ndarray) -> np.ndarray:
    """Independent numpy forward of Linear -> BN (train: batch stats) -> ReLU -> Linear."""
    l1, bn, _, l2 = method.head
    w1, b1 = l1.weight.detach().numpy(), l1.bias.detach().numpy()
    w2, b2 = l2.weight.detach().numpy(), l2.bias.detach().numpy()
    gamma, beta = bn.weight.detach().numpy(), bn.bias.detach().numpy()
    h = f @ w1.T + b1
    mu = h.mean(0)
    var = ((h - mu) ** 2).mean(0)  # biased variance, as BatchNorm normalises with
    h = (h - mu) / np.sqrt(var + bn.eps) * gamma + beta
    h = np.maximum(h, 0.0)
    return h @ w2.T + b2


def np_normalise_rows(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        n = math.sqrt(sum(v * v for v in x[i]))
        out[i] = x[i] / max(n, 1e-12)
    return out


def np_softmax_row(z: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    allowed = np.ones(len(z), bool) if allowed is None else allowed
    zmax = max(z[k] for k in range(len(z)) if allowed[k])
    e = np.array([math.exp(z[k] - zmax) if allowed[k] else 0.0 for k in range(len(z))])
    return e / e.sum()


def np_prototypes_after(old: np.ndarray, u: np.ndarray, weak: np.ndarray, m: float) -> np.ndarray:
    """EMA of the per-class mean of the normalised embeddings, per class present."""
    new = old.copy()
    for c in range(old.shape[0]):
        rows = [i for i in range(len(weak)) if weak[i] == c]
        if rows:
            mean = sum(u[i] for i in rows) / len(rows)
            new[c] = m * old[c] + (1 - m) * mean
    return new


def np_pq(
    e: np.ndarray, protos: np.ndarray, init: np.ndarray, logits: np.ndarray, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """p_i = softmax over initialised classes of cos(e_i, c_k)/tau; q_i = softmax(logits_i)."""
    n, k = logits.shape
    p = np.zeros((n, k))
    q = np.zeros((n, k))
    for i in range(n):
        sims = np.zeros(k)
        for c in range(k):
            ne = math.sqrt(float(e[i] @ e[i]))
            nc = math.sqrt(float(protos[c] @ protos[c]))
            sims[c] = float(e[i] @ protos[c]) / max(ne, 1e-12) / max(nc, 1e-12) / tau
        p[i] = np_softmax_row(sims, init)
        q[i] = np_softmax_row(logits[i])
    return p, q


def np_divergence(p: np.ndarray, q: np.ndarray, variant: str) -> np.ndarray:
    """Independent per-point formulas of each ERDA variant (0 log 0 = 0)."""
    out = np.zeros(p.shape[0])
    k = p.shape[1]
    for i in range(p.shape[0]):
        pi, qi = p[i], q[i]
        if variant == "erda":
            v = -sum(pi[c] * math.log(qi[c]) for c in range(k))
        elif variant == "er":
            v = -sum(pi[c] * math.log(pi[c]) for c in range(k) if pi[c] > 0)
        elif variant == "da":
            v = sum(pi[c] * math.log(pi[c] / qi[c]) for c in range(k) if pi[c] > 0)
        elif variant == "kl_qp":
            v = sum(qi[c] * (math.log(qi[c]) - math.log(max(pi[c], KL_QP_EPS))) for c in range(k))
        elif variant == "js":
            mi = 0.5 * (pi + qi)
            v = 0.5 * sum(pi[c] * math.log(pi[c] / mi[c]) for c in range(k) if pi[c] > 0)
            v += 0.5 * sum(qi[c] * math.log(qi[c] / mi[c]) for c in range(k))
        elif variant == "mse":
            v = sum((pi[c] - qi[c]) ** 2 for c in range(k)) / k
        else:
            raise AssertionError(variant)
        out[i] = v
    return out


def reference_erda_step(method: ERDA, logits, features, batch):
    """Independent (numpy) prototypes after one training step, p and q on unlabelled rows."""
    e = np_head(method, features.detach().numpy())
    u = np_normalise_rows(e)
    weak = batch["weak_labels"].numpy()
    protos = np_prototypes_after(method.prototypes.double().numpy(), u, weak, method.momentum)
    init = method.proto_initialised.numpy() | np.isin(
        np.arange(method.num_classes), weak[weak >= 0]
    )
    unl = weak == -1
    p, q = np_pq(e[unl], protos, init, logits.detach().numpy()[unl], method.tau)
    return protos, init, p, q, unl


# ---------------------------------------------------------------- ERDA loss values
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("all_classes", [True, False])
def test_erda_variants_match_independent_formulas(variant: str, all_classes: bool) -> None:
    labelled = {i: i % K for i in range(8)} if all_classes else {0: 0, 1: 2, 2: 2, 3: 0}
    logits, features, batch = make_batch(labelled=labelled, seed=1)
    method = ERDA(K, D, variant=variant, tau=0.5, weight=0.3).double().train()
    protos, init, p, q, unl = reference_erda_step(method, logits, features, batch)
    out = method(logits, features, batch)

    np.testing.assert_allclose(method.prototypes.numpy(), protos, rtol=1e-10, atol=1e-14)
    assert method.proto_initialised.numpy().tolist() == init.tolist()
    if not all_classes:  # uninitialised classes get exactly zero pseudo-probability
        assert (p[:, [1, 3]] == 0).all()
    ref = np_divergence(p, q, variant).mean()
    assert out["loss_erda"].item() == pytest.approx(ref, rel=1e-10, abs=1e-12)
    lab = batch["weak_labels"] >= 0
    ref_sup = F.cross_entropy(logits[lab], batch["weak_labels"][lab]).item()
    assert out["loss_sup"].item() == pytest.approx(ref_sup, rel=1e-12)
    assert out["loss"].item() == pytest.approx(ref_sup + 0.3 * ref, rel=1e-10)


def test_erda_equals_entropy_plus_kl() -> None:
    """H(p) + KL(p||q) (the 'er' and 'da' terms) equals the 'erda' term = H(p, q)."""
    logits, features, batch = make_batch(seed=2)
    vals = {}
    for variant in ("erda", "er", "da"):
        torch.manual_seed(0)  # same head initialisation for the three
        method = ERDA(K, D, variant=variant).double()
        vals[variant] = method(logits, features, batch)["loss_erda"].item()
    assert vals["erda"] == pytest.approx(vals["er"] + vals["da"], rel=1e-12)
    assert vals["er"] > 0 and vals["da"] > 0


# ---------------------------------------------------------------- ERDA gradients
@pytest.mark.parametrize("variant", ["erda", "da"])
def test_erda_logit_gradient_is_q_minus_p(variant: str) -> None:
    w = 0.25
    logits, features, batch = make_batch(seed=3)
    logits.requires_grad_(True)
    method = ERDA(K, D, variant=variant, weight=w).double()
    _, _, p, q, unl = reference_erda_step(method, logits, features, batch)
    method(logits, features, batch)["loss"].backward()
    n_u = int(unl.sum())
    grad = logits.grad.numpy()
    np.testing.assert_allclose(grad[unl], w / n_u * (q - p), rtol=1e-9, atol=1e-14)
    # labelled rows: only the cross-entropy, (q - onehot) / N_l
    lab = ~unl
    y = batch["weak_labels"].numpy()[lab]
    ql = np.array([np_softmax_row(r) for r in logits.detach().numpy()[lab]])
    onehot = np.eye(K)[y]
    np.testing.assert_allclose(grad[lab], (ql - onehot) / lab.sum(), rtol=1e-9, atol=1e-14)


def test_erda_gradient_reaches_head_and_features_through_p() -> None:
    logits, features, batch = make_batch(seed=4)
    features.requires_grad_(True)
    method = ERDA(K, D).double()
    out = method(logits.detach(), features, batch)  # q is a constant: only p carries grad
    out["loss_erda"].backward()
    for name, prm in method.head.named_parameters():
        assert prm.grad is not None, name
        assert prm.grad.abs().sum() > 0, name
    assert features.grad is not None and features.grad[batch["weak_labels"] == -1].abs().sum() > 0
    assert not method.prototypes.requires_grad and method.prototypes.grad is None
    assert all(prm is not method.prototypes for prm in method.parameters())
    names = {n for n, _ in method.named_parameters()}
    assert "prototypes" not in names and "proto_initialised" not in names


# ---------------------------------------------------------------- prototypes
def test_prototype_update_only_present_classes_and_ema() -> None:
    method = ERDA(K, D, momentum=0.9).double()
    g = torch.Generator().manual_seed(5)
    old = torch.randn(K, D, generator=g, dtype=torch.float64)
    method.prototypes.copy_(old)
    method.proto_initialised.fill_(True)
    logits, features, batch = make_batch(labelled={0: 1, 1: 3, 2: 3, 3: 1, 4: 3}, seed=5)
    e = np_head(method, features.numpy())
    expected = np_prototypes_after(
        old.numpy(), np_normalise_rows(e), batch["weak_labels"].numpy(), 0.9
    )
    method(logits, features, batch)
    new = method.prototypes
    assert torch.equal(new[0], old[0]) and torch.equal(new[2], old[2])  # bit-for-bit
    np.testing.assert_allclose(new.numpy(), expected, rtol=1e-10, atol=1e-14)
    assert not torch.equal(new[1], old[1]) and not torch.equal(new[3], old[3])


def test_prototypes_start_at_zero_and_accumulate_ema() -> None:
    """Zero start: after two steps c = (1-m) m mean1 + (1-m) mean2 per class present."""
    m = 0.999
    method = ERDA(K, D, momentum=m).double()
    b1 = make_batch(labelled={0: 0, 1: 1}, seed=6)
    b2 = make_batch(labelled={0: 1, 1: 2, 2: 2}, seed=7)
    means = []
    for logits, features, batch in (b1, b2):
        u = np_normalise_rows(np_head(method, features.numpy()))
        weak = batch["weak_labels"].numpy()
        means.append({c: u[weak == c].mean(0) for c in range(K) if (weak == c).any()})
        method(logits, features, batch)
    exp = np.zeros((K, D))
    exp[0] = (1 - m) * means[0][0]
    exp[1] = m * (1 - m) * means[0][1] + (1 - m) * means[1][1]
    exp[2] = (1 - m) * means[1][2]
    np.testing.assert_allclose(method.prototypes.numpy(), exp, rtol=1e-10, atol=1e-16)
    assert method.proto_initialised.tolist() == [True, True, True, False]


def test_zero_start_ema_gives_the_bias_corrected_pseudo_labels() -> None:
    """The zero start is the bias-corrected EMA in direction: after n_k updates of class k,
    c_k / (1 - m^n_k) (explicit weights (1-m) m^(n_k - j) / (1 - m^n_k) over the batch means,
    summing to 1) gives the same p as the stored c_k, for any m, with classes updated an
    unequal number of times."""
    m = 0.9
    method = ERDA(K, D, momentum=m, tau=0.2).double()
    batches = [
        make_batch(labelled=lab, seed=s)
        for s, lab in ((21, {0: 0, 1: 1}), (22, {0: 1, 1: 2, 2: 0}), (23, {0: 0, 3: 0, 5: 2}))
    ]
    means: dict[int, list[np.ndarray]] = {c: [] for c in range(K)}
    for logits, features, batch in batches:
        u = np_normalise_rows(np_head(method, features.numpy()))
        weak = batch["weak_labels"].numpy()
        for c in range(K):
            if (weak == c).any():
                means[c].append(u[weak == c].mean(0))
        method(logits, features, batch)
    corrected = np.zeros((K, D))
    for c, ms in means.items():
        n = len(ms)
        for j, mu in enumerate(ms, start=1):
            corrected[c] += (1 - m) * m ** (n - j) / (1 - m**n) * mu
    assert [len(means[c]) for c in range(K)] == [3, 2, 2, 0]
    logits, features, batch = make_batch(seed=24)
    method.eval()  # no update; head with running statistics for both sides
    u = method.embed(features)
    p_stored = method.pseudo_log_probs(u).exp().detach().numpy()
    e = copy.deepcopy(method.head).eval()(features).detach().numpy()
    init = np.array([True, True, True, False])
    p_ref, _ = np_pq(e, corrected, init, logits.numpy(), 0.2)
    np.testing.assert_allclose(p_stored, p_ref, rtol=1e-9, atol=1e-12)
    # the weights of a class with 3 updates are far from uniform: a real EMA, not a mean
    assert abs((1 - m) * m**2 / (1 - m**3) - 1 / 3) > 0.03


def test_no_prototype_update_in_eval_mode() -> None:
    method = ERDA(K, D).double()
    logits, features, batch = make_batch(seed=8)
    method(logits, features, batch)  # initialises
    before = method.prototypes.clone()
    method.eval()
    out = method(logits, features, batch)
    assert torch.equal(method.prototypes, before)
    assert torch.isfinite(out["loss"])


def test_erda_skipped_until_a_prototype_exists() -> None:
    logits, features, batch = make_batch(labelled={}, seed=9)  # nothing labelled
    logits.requires_grad_(True)
    method = ERDA(K, D).double()
    out = method(logits, features, batch)
    assert out["loss"].item() == 0.0 and out["loss_erda"].item() == 0.0
    out["loss"].backward()
    for prm in method.head.parameters():  # zero (not missing) gradients: DDP-safe
        assert prm.grad is not None and torch.count_nonzero(prm.grad) == 0
    assert torch.count_nonzero(logits.grad) == 0 and torch.isfinite(logits.grad).all()
    assert "diag/pseudo_acc" not in out and not method.proto_initialised.any()
    assert method.pseudo_label_probs(logits, features) is None


def test_checkpoint_round_trip_keeps_prototypes() -> None:
    method = ERDA(K, D)
    logits, features, batch = make_batch(seed=10)
    method(logits.float(), features.float(), batch)
    other = ERDA(K, D)
    other.load_state_dict(method.state_dict())
    assert torch.equal(other.prototypes, method.prototypes)
    assert torch.equal(other.proto_initialised, method.proto_initialised)
    assert "class_weights" not in method.state_dict()


# ---------------------------------------------------------------- hidden labels
@pytest.mark.parametrize("name", ["supervised", "erda", "pseudo_threshold"])
def test_hidden_labels_do_not_change_the_loss(name: str) -> None:
    logits, features, batch = make_batch(m=60, seed=11)
    logits = logits * 4  # confident, so pseudo_threshold selects some points
    torch.manual_seed(0)
    m1 = build_method(name, K, D).double()
    m2 = copy.deepcopy(m1)
    batch2 = dict(batch)
    g = torch.Generator().manual_seed(99)
    other = torch.randint(-1, K, batch["labels"].shape, generator=g)
    lab = batch["weak_labels"] >= 0
    other[lab] = batch["weak_labels"][lab]
    batch2["labels"] = other
    l1, l2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    o1, o2 = m1(l1, features, batch), m2(l2, features, batch2)
    assert torch.equal(o1["loss"], o2["loss"])
    o1["loss"].backward()
    o2["loss"].backward()
    assert torch.equal(l1.grad, l2.grad)
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n
    assert o1["diag/pred_acc_unlabelled"] != o2["diag/pred_acc_unlabelled"]


def test_loss_without_hidden_labels() -> None:
    logits, features, batch = make_batch(seed=12)
    torch.manual_seed(0)
    m1 = ERDA(K, D).double()
    m2 = copy.deepcopy(m1)
    o1 = m1(logits, features, batch)
    o2 = m2(logits, features, {"weak_labels": batch["weak_labels"]})
    assert torch.equal(o1["loss"], o2["loss"])
    assert "diag/pseudo_acc" in o1 and "diag/pseudo_acc" not in o2
    assert "diag/pred_acc_unlabelled" not in o2 and "diag/pseudo_entropy" in o2


# ---------------------------------------------------------------- diagnostics
def test_erda_diagnostics_hand_made() -> None:
    k = d = 3
    method = ERDA(k, d).double()
    method.head = nn.Identity()  # embeddings = features
    method.prototypes.copy_(torch.eye(3, dtype=torch.float64))
    method.proto_initialised.fill_(True)
    method.eval()  # no prototype update: p is fully determined by the hand-made inputs
    features = torch.tensor(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 2, 0]], dtype=torch.float64
    )
    logits = torch.tensor(
        [[3, 0, 0], [2, 1, 0], [0, 0, 1], [0, 5, 0], [0, 1, 0]], dtype=torch.float64
    )
    batch = {
        "weak_labels": torch.tensor([-1, -1, -1, -1, 1]),
        "labels": torch.tensor([0, 1, 0, -1, 1]),
    }
    out = method(logits, features, batch)
    # argmax p = [0, 1, 2, 0]; argmax q = [0, 0, 2, 1]; GT (valid on the first 3) = [0, 1, 0]
    assert out["diag/pseudo_acc"].item() == pytest.approx(2 / 3)
    assert out["diag/pred_acc_unlabelled"].item() == pytest.approx(1 / 3)
    assert out["diag/pq_agreement"].item() == pytest.approx(2 / 4)
    # every unlabelled row has cos = (1, 0, 0) up to a permutation: p = softmax(1, 0, 0)
    pr = np.exp([1.0, 0.0, 0.0]) / np.exp([1.0, 0.0, 0.0]).sum()
    assert out["diag/pseudo_entropy"].item() == pytest.approx(-(pr * np.log(pr)).sum(), rel=1e-6)
    assert out["diag/labelled_frac"].item() == pytest.approx(1 / 5)
    assert out["diag/protos_initialised"].item() == 3


def test_pseudo_label_probs_uses_running_stats_without_side_effects() -> None:
    logits, features, batch = make_batch(labelled={0: 0, 1: 2}, seed=13)
    method = ERDA(K, D).double().train()
    method(logits, features, batch)
    bn = method.head[1]
    rm, rv = bn.running_mean.clone(), bn.running_var.clone()
    p = method.pseudo_label_probs(logits, features)
    assert method.head.training  # mode restored
    assert torch.equal(bn.running_mean, rm) and torch.equal(bn.running_var, rv)
    assert p.shape == (40, K)
    torch.testing.assert_close(p.sum(1), torch.ones(40, dtype=torch.float64))
    assert (p[:, [1, 3]] == 0).all()
    # independent: head with running statistics, cosine to the prototypes, masked softmax
    l1, _, _, l2 = method.head
    h = features @ l1.weight.T + l1.bias
    h = (h - rm) / torch.sqrt(rv + bn.eps) * bn.weight + bn.bias
    e = (torch.relu(h) @ l2.weight.T + l2.bias).detach().numpy()
    pe, _ = np_pq(
        e, method.prototypes.numpy(), method.proto_initialised.numpy(), logits.numpy(), method.tau
    )
    np.testing.assert_allclose(p.numpy(), pe, rtol=1e-9, atol=1e-14)


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


def test_input_validation() -> None:
    logits, features, batch = make_batch(seed=16)
    bad = dict(batch, weak_labels=batch["weak_labels"].clone())
    bad["weak_labels"][5] = K
    with pytest.raises(ValueError, match="weak_labels"):
        ERDA(K, D).double()(logits, features, bad)
    with pytest.raises(ValueError, match="logits"):
        SupervisedOnly(K, D)(logits[:, :3], features, batch)
    with pytest.raises(ValueError, match="features"):
        ERDA(K, D).double()(logits, features[:, :3], batch)
    with pytest.raises(KeyError, match="weak_labels"):
        PseudoThreshold(K, D)(logits, features, {"labels": batch["labels"]})
    with pytest.raises(ValueError, match="variant"):
        ERDA(K, D, variant="kl")
    with pytest.raises(ValueError, match="class_weights"):
        SupervisedOnly(K, D, class_weights=[1.0, 2.0])


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


# ---------------------------------------------------------------- build_method
def test_build_method_names_and_options() -> None:
    assert set(METHODS) >= {"supervised", "erda", "pseudo_threshold"}
    m = build_method("erda", K, D, weight=0.01, variant="js", tau=0.1)
    assert isinstance(m, ERDA) and m.weight == 0.01 and m.variant == "js" and m.tau == 0.1
    assert isinstance(build_method("pseudo_threshold", K, D, threshold=0.8), PseudoThreshold)
    with pytest.raises(ValueError, match=r"unknown method 'erdaa'.*valid names.*erda"):
        build_method("erdaa", K, D)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['wieght'\].*weight"):
        build_method("erda", K, D, wieght=0.1)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['threshold'\]"):
        build_method("supervised", K, D, threshold=0.9)
    assert "momentum" in method_options("erda").model_fields
    assert method_options("erda") is ERDA.Options
    with pytest.raises(ValueError, match=r"unknown method 'erdaa' \(did you mean 'erda'\?\)"):
        method_options("erdaa")
    with pytest.raises(ValueError, match=r"option 'tau'.*greater than 0"):
        build_method("erda", K, D, tau=0.0)


# ---------------------------------------------------------------- DDP prototype reduction
def _ddp_data(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-rank, per-step features (40, D) and weak labels; rank 1 has no label at step 1."""
    g = torch.Generator().manual_seed(100 * rank + step)
    f = torch.randn(40, D, generator=g, dtype=torch.float64)
    weak = torch.full((40,), -1, dtype=torch.int64)
    classes = {
        (0, 0): [0, 1, 1],
        (1, 0): [1, 2, 2, 2],
        (0, 1): [0, 3],
        (1, 1): [],
        (0, 2): [2, 2],
        (1, 2): [0, 2, 3],
    }[(rank, step)]
    for i, c in enumerate(classes):
        weak[3 * i] = c
    return f, weak


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # identical head on both ranks
        method = ERDA(K, D, momentum=0.9).double()
        embs = []
        for step in range(3):
            f, weak = _ddp_data(rank, step)
            if step < 2:  # direct call with fixed embeddings
                u = F.normalize(f, dim=1)
                method.update_prototypes(u, weak)
            else:  # full forward (head in train mode)
                u = F.normalize(copy.deepcopy(method.head)(f), dim=1).detach()
                logits = torch.randn(40, K, dtype=torch.float64)
                method(logits, f, {"weak_labels": weak})
            embs.append(u)
        torch.save(
            {"prototypes": method.prototypes, "init": method.proto_initialised, "u": embs},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_ddp_prototype_reduction(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    world = 2
    mp.spawn(
        _ddp_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True
    )
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    assert torch.equal(res[0]["prototypes"], res[1]["prototypes"])  # identical on all ranks
    assert torch.equal(res[0]["init"], res[1]["init"])
    # independent: EMA (from zero) of the GLOBAL class means of the labelled embeddings
    protos = np.zeros((K, D))
    for step in range(3):
        u = np.concatenate([res[r]["u"][step].numpy() for r in range(world)])
        weak = np.concatenate([_ddp_data(r, step)[1].numpy() for r in range(world)])
        protos = np_prototypes_after(protos, u, weak, 0.9)
    np.testing.assert_allclose(res[0]["prototypes"].numpy(), protos, rtol=1e-10, atol=1e-15)
    assert res[0]["init"].tolist() == [True, True, True, True]
    # the check is sensitive: a per-rank (un-reduced) step-0 update differs from the global one
    u0 = [res[r]["u"][0].numpy() for r in range(world)]
    w0 = [_ddp_data(r, 0)[1].numpy() for r in range(world)]
    local = np_prototypes_after(np.zeros((K, D)), u0[0], w0[0], 0.9)
    glob = np_prototypes_after(np.zeros((K, D)), np.concatenate(u0), np.concatenate(w0), 0.9)
    assert not np.allclose(local[1], glob[1])


# ---------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["supervised", "erda", "pseudo_threshold"])
def test_methods_on_cuda_match_cpu(name: str) -> None:
    logits, features, batch = make_batch(m=200, seed=19)
    logits = logits * 3
    torch.manual_seed(0)
    cpu = build_method(name, K, D).double()
    gpu = copy.deepcopy(cpu).cuda()
    lc = logits.clone().requires_grad_(True)
    lg = logits.cuda().requires_grad_(True)
    oc = cpu(lc, features, batch)
    og = gpu(lg, features.cuda(), {k: v.cuda() for k, v in batch.items()})
    assert og["loss"].device.type == "cuda"
    for key, val in oc.items():
        torch.testing.assert_close(og[key].cpu(), val, rtol=1e-9, atol=1e-12, msg=key)
    oc["loss"].backward()
    og["loss"].backward()
    torch.testing.assert_close(lg.grad.cpu(), lc.grad, rtol=1e-9, atol=1e-12)
    for (n, a), (_, b) in zip(cpu.state_dict().items(), gpu.state_dict().items()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-9, atol=1e-12, msg=n)


def test_losses_stay_float32_under_bf16_autocast() -> None:
    """Under CPU bf16 autocast the similarity logits (ERDA, U2PL's InfoNCE) and the weighted
    cross-entropy are computed in float32: outputs are float32 and equal the float32 values
    computed without autocast, from the same (bf16-representable) inputs."""
    from pcseg.methods.common import labelled_cross_entropy
    from pcseg.methods.contrastive import info_nce

    g = torch.Generator().manual_seed(3)
    rnd = lambda *s: torch.randn(*s, generator=g).bfloat16().float()  # noqa: E731
    u = F.normalize(rnd(50, D), dim=1)
    m = ERDA(K, D, tau=0.05)
    m.prototypes.copy_(rnd(K, D))
    m.proto_initialised.fill_(True)
    a, pos, neg = rnd(8, D), rnd(D), rnd(8, 5, D)
    logits, weak = rnd(30, K), torch.arange(30) % K
    cw = torch.tensor([1.0, 3.3, 0.7, 2.9])  # not representable in bf16
    ref = (
        m.pseudo_log_probs(u),
        info_nce(a, pos, neg, 0.07),
        labelled_cross_entropy(logits, weak, cw),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = (
            m.pseudo_log_probs(u),
            info_nce(a, pos, neg, 0.07),
            labelled_cross_entropy(logits.bfloat16(), weak, cw),
        )
    for r, x in zip(ref, got):
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, r, rtol=1e-6, atol=1e-6)
