"""pcseg.methods (the package): every method against the same contract (hidden labels never
change a loss, inputs are checked), build_method / method_options, CUDA equals CPU, and the
losses stay float32 under bf16 autocast."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers.methods import D, K, make_batch

from pcseg.methods import METHODS, build_method, method_options
from pcseg.methods.erda import ERDA
from pcseg.methods.pseudo_threshold import PseudoThreshold
from pcseg.methods.supervised import SupervisedOnly


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
