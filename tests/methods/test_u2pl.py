"""The U2PL method and the ERDA + U2PL-negatives method on a toy network.

A small MLP "network" stands in for MinkUNet (the teacher input builder is injectable);
the end-to-end test with a real MinkUNet14A runs when ``pcseg.models`` is importable. The
pieces have their own tests: test_entropy_split.py, test_contrastive.py,
test_class_queue.py, test_ema_teacher.py.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from helpers.u2pl_toys import (
    D,
    K,
    ToyNet,
    feats_input,
    make_u2pl,
    run_steps,
    toy_batch,
    train_step,
    trainable,
)

from pcseg.methods.entropy_split import teacher_split, unreliable_percent
from pcseg.methods.erda import ERDA
from pcseg.methods.erda_u2pl import ERDAWithU2PLNegatives
from pcseg.methods.u2pl import U2PL


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
        [
            model.body[0].weight,
            method.contrast.rep_head[0].weight,
            method.contrast.rep_head[3].weight,
        ],
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
        float((pseudo[unl] == batch["labels"][unl]).double().mean()), abs=1e-6
    )
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


@pytest.mark.parametrize("load_before_start", [True, False])
def test_state_dict_roundtrip_resume(load_before_start):
    model_a, method_a = ToyNet(), make_u2pl(queue_capacity=40)
    method_a.on_train_start(model_a)
    run_steps(model_a, method_a, 3)
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
    oa = run_steps(model_a, method_a, 1, start=3)[0]
    ob = run_steps(model_b, method_b, 1, start=3)[0]
    for key in ("loss", "loss_unsup", "loss_contrastive"):
        assert float(oa[key]) == float(ob[key]), key
    assert torch.equal(method_a.contrast.queues.keys, method_b.contrast.queues.keys)


def test_warmup_and_pseudo_label_probs():
    model, method = ToyNet(), make_u2pl(sup_only_iterations=2)
    batch = toy_batch()
    assert method.pseudo_label_probs(torch.zeros(3, K), torch.zeros(3, D), batch) is None
    method.on_train_start(model)
    outs = run_steps(model, method, 3)
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
    with pytest.raises(ValueError, match="teacher_bn"):
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
    method = ERDAWithU2PLNegatives(
        K,
        D,
        erda={"weight": 0.1},
        lambda_c=0.3,
        use_teacher=use_teacher,
        queue_capacity=50,
        rep_dim=8,
        num_anchors=16,
        num_negatives=6,
        input_builder=feats_input,
    )
    method.on_train_start(model)
    run_steps(model, method, 2)  # prototypes initialised, queues partly filled
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
    con, info = ref_contrast(
        rep_s, rep_t, prob, batch["weak_labels"], split["anchor_ok"], split["unreliable"]
    )
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
    batch = {
        "coords": coords,
        "feats": torch.rand(m, 3, generator=g),
        "labels": labels,
        "weak_labels": weak,
    }
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
    for a, b in zip(
        method.teacher.predict(batch, torch.device("cpu")),
        method.teacher.predict(fresh, torch.device("cpu")),
    ):
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
