"""U2PL pieces and the ERDA + U2PL-negatives method, checked against brute-force loops.

A small MLP "network" stands in for MinkUNet (the teacher input builder is injectable);
the end-to-end test with a real MinkUNet14A runs when ``pcseg.models`` is importable.
"""
from __future__ import annotations

import copy
import io
import math
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pcseg.methods.erda import ERDA
from pcseg.methods.erda_u2pl import ERDAWithU2PLNegatives
from pcseg.methods.u2pl import (
    U2PL,
    ClassQueues,
    U2PLContrast,
    anchor_candidate_mask,
    class_ranks,
    ema_decay_at,
    negative_key_mask,
    percentile,
    prediction_entropy,
    reliable_mask,
    teacher_split,
    unreliable_percent,
)

K, C_IN, D = 5, 3, 16


class ToyNet(nn.Module):
    """Pointwise stand-in for MinkUNet: feats (M, C) -> (logits (M, K), features (M, D))."""

    def __init__(self, c_in: int = C_IN, d: int = D, k: int = K) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(c_in, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, d))
        self.cls = nn.Linear(d, k)
        self.feature_dim = d

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return self.cls(f), f


def feats_input(batch, device):
    return batch["feats"].to(device)


def toy_batch(m: int = 300, k: int = K, labelled_frac: float = 0.15, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (m,), generator=g)
    centres = torch.randn(k, C_IN, generator=g) * 2.0
    feats = centres[labels] + 0.7 * torch.randn(m, C_IN, generator=g)
    weak = torch.full((m,), -1, dtype=torch.int64)
    lab = torch.rand(m, generator=g) < labelled_frac
    weak[lab] = labels[lab]
    coords = torch.cat([torch.zeros(m, 1, dtype=torch.int32), torch.randint(0, 50, (m, 3), generator=g, dtype=torch.int32)], 1)
    return {"coords": coords, "feats": feats, "labels": labels, "weak_labels": weak}


def make_u2pl(**kw) -> U2PL:
    kw.setdefault("queue_capacity", 64)
    kw.setdefault("rep_dim", 8)
    kw.setdefault("num_anchors", 16)
    kw.setdefault("num_negatives", 10)
    return U2PL(K, D, input_builder=feats_input, **kw)


def train_step(model, method, opt, batch, it, total=100):
    logits, feats = model(batch["feats"])
    out = method(logits, feats, batch)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    method.after_optimizer_step(model, it, total)
    return out


def trainable(model, method):
    return list(model.parameters()) + [p for p in method.parameters() if p.requires_grad]


# ---------------------------------------------------------------------------- split
@pytest.mark.parametrize("alpha", [20.0, 7.5, 63.0])
def test_percentile_split_matches_bruteforce(alpha):
    rng = np.random.default_rng(1)
    ent = rng.random(1000) * 3.0  # distinct with probability 1
    t = torch.from_numpy(ent)
    # percentile == numpy's linear percentile
    for q in (0.0, 12.5, 50.0, 80.0, 100.0 - alpha, 100.0):
        assert float(percentile(t, q)) == pytest.approx(float(np.percentile(ent, q)), rel=0, abs=1e-12)
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


def test_alpha_schedule():
    assert unreliable_percent(20.0, 0, 100) == 20.0
    assert unreliable_percent(20.0, 25, 100) == pytest.approx(15.0)
    assert unreliable_percent(20.0, 100, 100) == 0.0
    assert unreliable_percent(20.0, 150, 100) == 0.0  # clipped
    assert unreliable_percent(20.0, 7, 0) == 20.0  # T unknown
    m = make_u2pl()
    model = ToyNet()
    m.on_train_start(model)
    assert m.alpha_t() == 20.0
    m.after_optimizer_step(model, 0, 40)  # one step done of 40
    assert m.alpha_t() == pytest.approx(20.0 * (1 - 1 / 40))
    m.after_optimizer_step(model, 29, 40)
    assert m.alpha_t() == pytest.approx(20.0 * (1 - 30 / 40))


# ---------------------------------------------------------------------------- queues
def test_queue_fifo_and_wraparound():
    cap, dim = 5, 2
    q = ClassQueues(3, cap, dim)
    arrived: list[list[float]] = []
    counter = 0
    for n in (3, 4, 1, 0, 2, 7, 3):
        keys = torch.tensor([[counter + i, -(counter + i)] for i in range(n)], dtype=torch.float32).reshape(n, dim)
        counter += n
        q.push(1, keys)
        arrived.extend(keys.tolist())
        expect = arrived[-cap:]
        assert q.ordered(1).tolist() == expect
        assert int(q.count[1]) == len(expect)
        # ring invariant: the slot at ptr holds the oldest key once full
        if int(q.count[1]) == cap:
            assert q.keys[1, int(q.ptr[1])].tolist() == expect[0]
    assert int(q.count[0]) == 0 and int(q.count[2]) == 0
    assert float(q.fill_fraction()) == pytest.approx((0 + 1 + 0) / 3)
    with pytest.raises(ValueError, match="keys must be"):
        q.push(0, torch.zeros(2, 3))


def test_push_masked_matches_per_class_loop():
    q1, q2 = ClassQueues(4, 6, 3), ClassQueues(4, 6, 3)
    for step in range(3):
        keys = torch.randn(9, 3)
        mask = torch.rand(9, 4) < 0.4
        pushed = q1.push_masked(keys, mask)
        for c in range(4):
            rows = [keys[i] for i in range(9) if bool(mask[i, c])]
            if rows:
                q2.push(c, torch.stack(rows))
        assert pushed.tolist() == mask.sum(0).tolist()
    for c in range(4):
        assert torch.equal(q1.ordered(c), q2.ordered(c))


# ---------------------------------------------------------------------------- negatives
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


# ---------------------------------------------------------------------------- contrastive
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
    con = U2PLContrast(k, 6, rep_dim=r, queue_capacity=7, num_anchors=3, num_negatives=4,
                       temperature=0.5, anchor_prob_threshold=0.3, seed=3)
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
        cand = [i for i in range(m) if (int(weak[i]) == c) or
                (int(weak[i]) < 0 and bool(split["reliable"][i]) and int(pseudo[i]) == c)]
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
            _bruteforce_infonce(rep_s[a].tolist(), pos, [keys[c, s].tolist() for s in slots[n]], 0.5)
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
    loss, info = con(rep_s, torch.randn(30, 4), prob, weak, torch.zeros(30, dtype=torch.bool),
                     torch.zeros(30, dtype=torch.bool), update_queues=False)
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
            exp = int(weak[i]) == c if int(weak[i]) >= 0 else bool(ok[i]) and int(prob[i].argmax()) == c
            assert bool(got[i, c]) == exp


# ---------------------------------------------------------------------------- method
def test_gradients_reach_student_not_teacher():
    model, method = ToyNet(), make_u2pl()
    method.on_train_start(model)
    batch = toy_batch()
    logits, feats = model(batch["feats"])
    out = method(logits, feats, batch)
    assert float(out["loss_contrastive"]) > 0 and float(out["loss_unsup"]) > 0
    # the contrastive term alone reaches the backbone and the student head
    grads = torch.autograd.grad(
        out["loss_contrastive"],
        [model.body[0].weight, method.contrast.rep_head[0].weight, method.contrast.rep_head[3].weight],
        retain_graph=True,
    )
    assert all(g.abs().sum() > 0 for g in grads)
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(p.grad is not None for p in method.contrast.rep_head.parameters())
    teacher_params = list(method.teacher.parameters())
    assert teacher_params and all(p.grad is None and not p.requires_grad for p in teacher_params)
    total = out["loss_sup"] + 1.0 * out["loss_unsup"] + 0.1 * out["loss_contrastive"]
    assert float(out["loss"]) == pytest.approx(float(total), rel=1e-6)
    # diagnostics vs hidden GT, recomputed directly
    with torch.no_grad():
        t_logits, _ = method.teacher.model.train()(batch["feats"])
    pseudo = t_logits.argmax(1)
    unl = batch["weak_labels"] < 0
    assert float(out["diag/pseudo_acc"]) == pytest.approx(
        float((pseudo[unl] == batch["labels"][unl]).double().mean()), abs=1e-6)
    assert float(out["diag/reliable_frac"]) == pytest.approx(0.8, abs=0.01)
    assert 0 < float(out["diag/queue_fill"]) <= 1


def test_unsup_loss_is_ce_on_reliable_points():
    model, method = ToyNet(), make_u2pl(lambda_c=0.0)
    method.on_train_start(model)
    batch = toy_batch(seed=4)
    logits, feats = model(batch["feats"])
    out = method(logits, feats, batch)
    with torch.no_grad():
        tl, _ = method.teacher.model(batch["feats"])
    prob = torch.softmax(tl, 1)
    ent = -(prob * torch.log(prob + 1e-10)).sum(1)
    unl = (batch["weak_labels"] < 0).nonzero().squeeze(1).tolist()
    e_unl = sorted(float(ent[i]) for i in unl)
    pos = 0.8 * (len(e_unl) - 1)
    lo = int(pos)
    thr = e_unl[lo] + (e_unl[lo + 1] - e_unl[lo]) * (pos - lo)
    rel = [i for i in unl if float(ent[i]) < thr]
    ce = [float(-F.log_softmax(logits[i], 0)[int(prob[i].argmax())]) for i in rel]
    assert float(out["loss_unsup"]) == pytest.approx(sum(ce) / len(ce), rel=1e-5)


def test_ema_decay_two_steps_and_buffers():
    model, method = ToyNet(), make_u2pl()
    method.on_train_start(model)
    sp = lambda: {n: p.detach().clone() for n, p in model.named_parameters()}  # noqa: E731
    hp = lambda: {n: p.detach().clone() for n, p in method.contrast.rep_head.named_parameters()}  # noqa: E731
    with torch.no_grad():
        for p in list(model.parameters()) + list(method.contrast.rep_head.parameters()):
            p.add_(torch.randn_like(p))
    s1, h1 = sp(), hp()
    method.after_optimizer_step(model, 0, 100)  # decay min(1 - 1/1, .99) = 0 -> copy
    with torch.no_grad():
        for p in list(model.parameters()) + list(method.contrast.rep_head.parameters()):
            p.add_(torch.randn_like(p))
        model.body[1].running_mean.fill_(3.0)
    s2, h2 = sp(), hp()
    method.after_optimizer_step(model, 1, 100)  # decay min(1 - 1/2, .99) = 0.5
    for n, p in method.teacher.model.named_parameters():
        assert torch.allclose(p, 0.5 * s1[n] + 0.5 * s2[n], atol=1e-6), n
    for n, p in method.teacher.rep_head.named_parameters():
        assert torch.allclose(p, 0.5 * h1[n] + 0.5 * h2[n], atol=1e-6), n
    assert torch.equal(method.teacher.model.body[1].running_mean, torch.full((D,), 3.0))
    assert ema_decay_at(0, 0.99) == 0.0 and ema_decay_at(1, 0.99) == 0.5
    assert ema_decay_at(3, 0.99) == pytest.approx(0.75) and ema_decay_at(500, 0.99) == 0.99
    assert ema_decay_at(5, 0.99, start=5) == 0.0 and ema_decay_at(6, 0.99, start=5) == 0.5


def _run(model, method, steps, start=0):
    opt = torch.optim.SGD(trainable(model, method), lr=0.05)
    outs = []
    for it in range(start, start + steps):
        outs.append(train_step(model, method, opt, toy_batch(seed=10 + it), it))
    return outs


@pytest.mark.parametrize("load_before_start", [True, False])
def test_state_dict_roundtrip_resume(load_before_start):
    model_a, method_a = ToyNet(), make_u2pl(queue_capacity=40)
    method_a.on_train_start(model_a)
    _run(model_a, method_a, 3)
    buf = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "method": method_a.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=False)
    torch.manual_seed(123)  # different init: everything must come from the checkpoint
    model_b, method_b = ToyNet(), make_u2pl(queue_capacity=40, seed=99)
    model_b.load_state_dict(ck["model"])
    if load_before_start:
        method_b.load_state_dict(ck["method"])
        method_b.on_train_start(model_b)
    else:
        method_b.on_train_start(model_b)
        method_b.load_state_dict(ck["method"])
    sa, sb = method_a.state_dict(), method_b.state_dict()
    assert sa.keys() == sb.keys() and any(k.startswith("teacher.model.") for k in sa)
    for key in sa:
        if key.endswith("_extra_state"):
            assert torch.equal(sa[key]["generator_state"], sb[key]["generator_state"])
        else:
            assert torch.equal(sa[key], sb[key]), key
    assert int(method_b.contrast.queues.count.sum()) > 0
    # one more step on both: identical losses and state
    oa = _run(model_a, method_a, 1, start=3)[0]
    ob = _run(model_b, method_b, 1, start=3)[0]
    for key in ("loss", "loss_unsup", "loss_contrastive"):
        assert float(oa[key]) == float(ob[key]), key
    assert torch.equal(method_a.contrast.queues.keys, method_b.contrast.queues.keys)


def test_warmup_and_pseudo_label_probs():
    model, method = ToyNet(), make_u2pl(sup_only_iterations=2)
    batch = toy_batch()
    assert method.pseudo_label_probs(torch.zeros(3, K), torch.zeros(3, D), batch) is None
    method.on_train_start(model)
    outs = _run(model, method, 3)
    assert float(outs[0]["loss_unsup"]) == 0.0 and float(outs[0]["loss_contrastive"]) == 0.0
    assert "diag/reliable_frac" not in outs[0]
    # teacher was a plain copy during warm-up and at the first step after it (k <= 0)
    assert float(outs[2]["loss_unsup"]) > 0 and "diag/reliable_frac" in outs[2]
    method.eval()
    model.eval()
    logits, feats = model(batch["feats"])
    p = method.pseudo_label_probs(logits, feats, batch)
    with torch.no_grad():
        tl, _ = method.teacher.model.eval()(batch["feats"])
    assert torch.allclose(p, torch.softmax(tl, 1), atol=1e-6)
    assert method.pseudo_label_probs(logits, feats) is None


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="lambda_u"):
        make_u2pl(lambda_u=-1)
    with pytest.raises(ValueError, match="alpha_0"):
        make_u2pl(alpha_0=150)
    with pytest.raises(ValueError, match="temperature"):
        make_u2pl(temperature=0)
    with pytest.raises(ValueError, match="high_rank"):
        make_u2pl(low_rank=3, high_rank=3)
    with pytest.raises(ValueError, match="bn_mode"):
        make_u2pl(teacher_bn="frozen")
    m = make_u2pl()
    with pytest.raises(RuntimeError, match="on_train_start"):
        b = toy_batch()
        m(torch.zeros(300, K), torch.zeros(300, D), b)
    with pytest.raises(ValueError, match="weak_labels"):
        b = toy_batch()
        b["weak_labels"] = b["weak_labels"][:5]
        m(torch.zeros(300, K), torch.zeros(300, D), b)


# ---------------------------------------------------------------------------- combined
@pytest.mark.parametrize("use_teacher", [True, False])
def test_erda_u2pl_loss_is_erda_plus_contrastive(use_teacher):
    model = ToyNet()
    method = ERDAWithU2PLNegatives(K, D, erda={"weight": 0.1}, lambda_c=0.3, use_teacher=use_teacher,
                                   queue_capacity=50, rep_dim=8, num_anchors=16, num_negatives=6,
                                   input_builder=feats_input)
    method.on_train_start(model)
    _run(model, method, 2)  # prototypes initialised, queues partly filled
    batch = toy_batch(seed=7)
    ref_erda = ERDA(K, D, weight=0.1)
    ref_erda.load_state_dict(method.erda.state_dict())
    ref_contrast = copy.deepcopy(method.contrast)
    ref_teacher = copy.deepcopy(method.teacher)
    logits, feats = model(batch["feats"])
    out = method(logits, feats, batch)
    erda_out = ref_erda(logits, feats, batch)
    # independent contrastive evaluation with the copied state (same generator state)
    rep_s = ref_contrast.rep_head(feats)
    if use_teacher:
        prob, rep_t = ref_teacher.predict(batch, logits.device)
    else:
        prob, rep_t = torch.softmax(logits.detach(), 1), rep_s.detach()
    split = teacher_split(prob, batch["weak_labels"], method.alpha_t())
    con, info = ref_contrast(rep_s, rep_t, prob, batch["weak_labels"], split["anchor_ok"], split["unreliable"])
    assert info["classes"] > 0
    assert float(out["loss_contrastive"]) == pytest.approx(float(con), rel=1e-6)
    assert float(out["loss_erda"]) == pytest.approx(float(erda_out["loss_erda"]), rel=1e-6)
    assert float(out["loss"]) == pytest.approx(float(erda_out["loss"]) + 0.3 * float(con), rel=1e-6)
    out["loss"].backward()
    assert all(p.grad is not None for p in method.contrast.rep_head.parameters())
    assert all(p.grad is not None for p in method.erda.head.parameters())
    if use_teacher:
        assert all(p.grad is None for p in method.teacher.parameters())
    assert "diag/teacher_acc" in out and "diag/pseudo_acc" in out


# ---------------------------------------------------------------------------- DDP queues
def _ddp_worker(rank: int, world: int, path: str, result_path: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    try:
        q = ClassQueues(3, 8, 2)
        g = torch.Generator().manual_seed(rank)
        n = 3 + 2 * rank  # different row counts per rank
        keys = torch.randn(n, 2, generator=g) + 100 * rank
        mask = torch.rand(n, 3, generator=g) < 0.7
        pushed = q.push_masked(keys, mask)
        torch.save({"keys": keys, "mask": mask, "q": q.state_dict(), "pushed": pushed},
                   f"{result_path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_queues_identical_across_ranks_gloo():
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        init = os.path.join(tmp, "init")
        res = os.path.join(tmp, "res")
        mp.spawn(_ddp_worker, args=(2, init, res), nprocs=2, join=True)
        r0, r1 = (torch.load(f"{res}.{r}", weights_only=False) for r in range(2))
    for key in ("keys", "ptr", "count"):
        assert torch.equal(r0["q"][key], r1["q"][key])
    ref = ClassQueues(3, 8, 2)
    for c in range(3):
        rows = [r["keys"][r["mask"][:, c]] for r in (r0, r1)]
        ref.push(c, torch.cat(rows))
    assert torch.equal(ref.keys, r0["q"]["keys"]) and torch.equal(ref.count, r0["q"]["count"])


# ---------------------------------------------------------------------------- real network
def test_end_to_end_minkunet14a():
    models = pytest.importorskip("pcseg.models")
    if not hasattr(models, "build_model"):
        pytest.skip("pcseg.models.build_model not available yet")
    from pcseg.models.inputs import sparse_input

    g = torch.Generator().manual_seed(0)
    m = 400
    xyz = torch.unique(torch.randint(0, 48, (m, 3), generator=g), dim=0)
    m = xyz.shape[0]
    coords = torch.cat([torch.zeros(m, 1, dtype=torch.int32), xyz.int()], 1)
    labels = (xyz[:, 2] > 24).long() + 2 * (xyz[:, 0] > 24).long()
    weak = torch.full((m,), -1)
    weak[::10] = labels[::10]
    batch = {"coords": coords, "feats": torch.rand(m, 3, generator=g), "labels": labels, "weak_labels": weak}
    model = models.build_model("MinkUNet14A", 3, 4)
    method = U2PL(4, model.feature_dim, queue_capacity=256, rep_dim=16)
    method.on_train_start(model)
    opt = torch.optim.SGD(trainable(model, method), lr=0.01)
    x = sparse_input(batch)
    assert sparse_input(batch) is x  # built once per batch, kept in it
    logits, feats = model(x)
    maps_built = list(x.manager.build_log)
    seen = []
    hook = method.teacher.model.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    out = method(logits, feats, batch)
    hook.remove()
    # the teacher ran on the student's input: no kernel map was built a second time ...
    assert len(seen) == 1 and seen[0] is x and x.manager.build_log == maps_built
    # ... and it predicts exactly what it predicts on a freshly built input
    fresh = {"coords": batch["coords"], "feats": batch["feats"]}
    for a, b in zip(method.teacher.predict(batch, torch.device("cpu")),
                    method.teacher.predict(fresh, torch.device("cpu"))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert sparse_input(fresh).manager is not x.manager
    assert all(torch.isfinite(v).all() for v in out.values())
    assert float(out["loss_contrastive"]) > 0 and float(out["loss_unsup"]) > 0
    opt.zero_grad()
    out["loss"].backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    assert all(p.grad is not None for p in model.parameters())
    opt.step()
    method.after_optimizer_step(model, 0, 10)  # decay 0: the teacher becomes the student
    assert int(method.contrast.queues.count.sum()) > 0
    sd_t, sd_s = method.teacher.model.state_dict(), model.state_dict()
    assert sd_t.keys() == sd_s.keys() and all(torch.equal(sd_t[k], sd_s[k]) for k in sd_s)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    """Same seeds on CPU and CUDA: the sampling generator is on the CPU, so the same
    anchors/negatives are drawn and the losses agree to float tolerance."""
    results = {}
    for dev in ("cpu", "cuda"):
        torch.manual_seed(0)
        model, method = ToyNet().to(dev), make_u2pl().to(dev)
        method.on_train_start(model)
        opt = torch.optim.SGD(trainable(model, method), lr=0.05)
        outs = []
        for it in range(3):
            batch = {k: v.to(dev) for k, v in toy_batch(seed=20 + it).items()}
            outs.append(train_step(model, method, opt, batch, it))
        assert method.contrast.queues.keys.device.type == dev
        assert next(method.teacher.parameters()).device.type == dev
        results[dev] = [{k: float(v.detach()) for k, v in o.items()} for o in outs]
    for oc, og in zip(results["cpu"], results["cuda"]):
        for key in ("loss", "loss_unsup", "loss_contrastive", "diag/reliable_frac"):
            assert og[key] == pytest.approx(oc[key], rel=1e-3, abs=1e-5), key
