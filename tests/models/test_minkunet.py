"""MinkUNet family: parameter counts from an independent formula, forward/backward, API."""

from __future__ import annotations

import pytest
import torch
from helpers.sparse import perturb_batch_norms

from pcseg.models import MODELS, MinkUNet, build_model, count_parameters
from pcseg.models.minkunet import fused_for_inference
from pcseg.sparse import SparseTensor

# The MinkowskiEngine examples/minkunet.py definitions, restated as data.
BASIC, BOTTLENECK = "basic", "bottleneck"
DEFAULT = (32, 64, 128, 256, 256, 128, 96, 96)
SPEC = {
    "MinkUNet14A": (BASIC, (1,) * 8, (32, 64, 128, 256, 128, 128, 96, 96)),
    "MinkUNet34C": (BASIC, (2, 3, 4, 6, 2, 2, 2, 2), DEFAULT),
    "MinkUNet50": (BOTTLENECK, (2, 3, 4, 6, 2, 2, 2, 2), DEFAULT),
    "MinkUNet18D": (BASIC, (2,) * 8, (32, 64, 128, 256, 384, 384, 384, 384)),
    "MinkUNet101": (BOTTLENECK, (2, 3, 4, 23, 2, 2, 2, 2), DEFAULT),
}


def reference_param_count(block: str, layers, planes, cin: int, ncls: int, init: int = 32) -> int:
    """Count from the definition: conv k^3*cin*cout (no bias), BN 2*C, head cin*K + K."""

    def conv(k, a, b):
        return k**3 * a * b

    def bn(c):
        return 2 * c

    exp = 1 if block == BASIC else 4

    def stage(inpl, p, n):
        total = 0
        for j in range(n):
            if block == BASIC:
                total += conv(3, inpl, p) + bn(p) + conv(3, p, p) + bn(p)
            else:
                total += (
                    conv(1, inpl, p) + bn(p) + conv(3, p, p) + bn(p) + conv(1, p, 4 * p) + bn(4 * p)
                )
            if j == 0 and inpl != p * exp:  # projection shortcut: 1x1 conv + BN
                total += conv(1, inpl, p * exp) + bn(p * exp)
            inpl = p * exp
        return total, inpl

    total = conv(5, cin, init) + bn(init)
    inpl = init
    for i in range(4):  # encoder: stride-2 k=2 conv keeping channels + BN, then blocks
        total += conv(2, inpl, inpl) + bn(inpl)
        t, inpl = stage(inpl, planes[i], layers[i])
        total += t
    skips = [planes[2] * exp, planes[1] * exp, planes[0] * exp, init]
    for i in range(4):  # decoder: transposed k=2 conv + BN, concat skip, blocks
        total += conv(2, inpl, planes[4 + i]) + bn(planes[4 + i])
        t, inpl = stage(planes[4 + i] + skips[i], planes[4 + i], layers[4 + i])
        total += t
    return total + inpl * ncls + ncls


@pytest.mark.parametrize("name", list(SPEC))
def test_parameter_count_matches_reference_formula(name):
    block, layers, planes = SPEC[name]
    model = build_model(name, 3, 20)
    assert count_parameters(model) == reference_param_count(block, layers, planes, 3, 20)
    assert model.feature_dim == planes[7] * (1 if block == BASIC else 4)


def test_minkunet34c_known_size():
    # 37,856,052 = the count of an independently written spconv MinkUNet34C (3 in, 20 classes)
    assert count_parameters(build_model("MinkUNet34C", 3, 20)) == 37_856_052
    assert count_parameters(build_model("MinkUNet34", 3, 20)) == 37_856_052


def test_all_names_build_and_unknown_name_lists_valid_ones():
    expected = {
        "MinkUNet14",
        "MinkUNet14A",
        "MinkUNet14B",
        "MinkUNet14C",
        "MinkUNet14D",
        "MinkUNet18",
        "MinkUNet18A",
        "MinkUNet18B",
        "MinkUNet18D",
        "MinkUNet34",
        "MinkUNet34A",
        "MinkUNet34B",
        "MinkUNet34C",
        "MinkUNet50",
        "MinkUNet101",
    }
    assert set(MODELS) == expected
    for name in ("MinkUNet14B", "MinkUNet34B"):
        m = build_model(name, 1, 5)
        assert isinstance(m, MinkUNet) and m.num_classes == 5
    with pytest.raises(ValueError, match="MinkUNet34C") as ei:
        build_model("MinkUNet35", 3, 20)
    assert "MinkUNet101" in str(ei.value)


def surface_scene(n: int, seed: int) -> torch.Tensor:
    """(M, 3) int voxels of a small room-like scene: floor, two walls, a box (surfaces)."""
    g = torch.Generator().manual_seed(seed)
    pts = []
    u = torch.rand(n, 2, generator=g) * 24
    pts.append(torch.stack([u[:, 0], u[:, 1], torch.zeros(n)], 1))
    pts.append(torch.stack([torch.zeros(n), u[:, 0], u[:, 1] * 0.5], 1))
    pts.append(torch.stack([u[:, 0], torch.full((n,), 23.0), u[:, 1] * 0.5], 1))
    b = torch.rand(n, 2, generator=g) * 6
    pts.append(torch.stack([b[:, 0] + 8, b[:, 1] + 8, torch.full((n,), 6.0)], 1))
    p = torch.cat(pts) + torch.randn(4 * n, 3, generator=g) * 0.3 - 4  # some negative coords
    return torch.unique(torch.floor(p).to(torch.int32), dim=0)


def two_scene_batch(C: int = 3) -> SparseTensor:
    s0, s1 = surface_scene(700, 0), surface_scene(500, 1)
    return SparseTensor.from_scenes([s0, s1], [torch.randn(len(s0), C), torch.randn(len(s1), C)])


def test_minkunet34c_forward_backward_two_scenes():
    x = two_scene_batch()
    m = len(x)
    assert 1500 < m < 6000
    model = build_model("MinkUNet34C", 3, 13)
    logits, feats = model(x)
    assert (
        logits.shape == (m, 13)
        and feats.shape == (m, model.feature_dim)
        and model.feature_dim == 96
    )
    loss = (
        torch.nn.functional.cross_entropy(logits, torch.randint(0, 13, (m,))) + feats.pow(2).mean()
    )
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert float(model.conv0p1s1.weight.grad.abs().sum()) > 0
    assert float(model.block4[0].conv1.weight.grad.abs().sum()) > 0


def test_minkunet50_forward_shapes():
    x = two_scene_batch(C=1)
    model = build_model("MinkUNet50", 1, 7)
    with torch.no_grad():
        logits, feats = model(x)
    assert logits.shape == (len(x), 7) and feats.shape == (len(x), 384) and model.feature_dim == 384


def test_output_rows_follow_input_order_and_maps_built_once():
    """Shuffling the input rows permutes the outputs the same way (float64, train-mode BN),
    and one forward builds every kernel map exactly once."""
    x = two_scene_batch()
    model = build_model("MinkUNet14A", 3, 4).double()
    xs = x.sorted()
    xs = xs.replace_feats(xs.feats.double())
    logits, feats = model(xs)
    log = xs.manager.build_log
    assert len(log) == len(set(log))
    want = (
        {("subm", 1, 1, 5, 1)}
        | {("subm", s, s, 3, 1) for s in (1, 2, 4, 8, 16)}
        | {("down", s, 2 * s, 2, 1) for s in (1, 2, 4, 8)}
    )
    assert set(log) == want
    perm = torch.randperm(len(xs))
    xp = SparseTensor(xs.coords[perm], xs.feats[perm])
    assert not xp.manager.is_sorted
    logits_p, feats_p = model(xp)
    torch.testing.assert_close(logits_p, logits[perm], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(feats_p, feats[perm], rtol=1e-9, atol=1e-9)


def test_head_is_linear_on_features():
    x = two_scene_batch()
    model = build_model("MinkUNet14A", 3, 6).eval()
    with torch.no_grad():
        logits, feats = model(x)
    torch.testing.assert_close(logits, feats @ model.final.weight.t() + model.final.bias)


@pytest.mark.gpu
def test_cuda_autocast_matches_cpu_fp32():
    x = two_scene_batch()
    model = build_model("MinkUNet34C", 3, 8)
    labels = torch.randint(0, 8, (len(x),))
    logits, _ = model(x)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    ref_grad = model.conv0p1s1.weight.grad.clone()
    model_c = build_model("MinkUNet34C", 3, 8).cuda()
    model_c.load_state_dict(model.state_dict())
    xc = SparseTensor(x.coords.cuda(), x.feats.cuda())
    with torch.autocast("cuda", dtype=torch.float16):
        logits_c, feats_c = model_c(xc)
        loss = torch.nn.functional.cross_entropy(logits_c.float(), labels.cuda())
    loss.backward()
    assert torch.isfinite(logits_c.float()).all()
    rel = (logits_c.float().cpu() - logits.detach()).norm() / logits.detach().norm()
    assert rel < 2e-2, rel
    g = model_c.conv0p1s1.weight.grad.float().cpu()
    assert torch.isfinite(g).all()
    cos = torch.nn.functional.cosine_similarity(g.flatten(), ref_grad.flatten(), dim=0)
    assert cos > 0.98, cos


# ---------------------------------------------------------------- head dropout
def test_head_dropout_zero_is_todays_network():
    """head_dropout=0 (the default): same state dict, same modules' parameters and the same
    train-mode outputs, bit for bit, as a network built without the option; no RNG draw."""
    x = two_scene_batch()
    torch.manual_seed(3)
    ref = build_model("MinkUNet14A", 3, 5)
    torch.manual_seed(3)
    new = build_model("MinkUNet14A", 3, 5, head_dropout=0.0)
    assert new.dropout is None
    sd_ref, sd_new = ref.state_dict(), new.state_dict()
    assert list(sd_ref) == list(sd_new)
    assert all(torch.equal(sd_ref[k], sd_new[k]) for k in sd_ref)
    torch.manual_seed(11)
    lr, fr = ref(x)
    after_ref = torch.rand(3)
    torch.manual_seed(11)
    ln, fn = new(x)
    after_new = torch.rand(3)
    assert torch.equal(lr, ln) and torch.equal(fr, fn)
    assert torch.equal(after_ref, after_new)  # the forward drew no random number


def test_head_dropout_noisy_logits_clean_features_in_training_only():
    """p = 0.5 in train mode: the features equal the eval-mode features (BN aside: compared
    with a p = 0 twin in train mode), the logits are the classifier on features with about
    half the channels zeroed and the rest doubled; eval mode applies no dropout."""
    x = two_scene_batch()
    torch.manual_seed(5)
    clean = build_model("MinkUNet14A", 3, 6)
    drop = build_model("MinkUNet14A", 3, 6, head_dropout=0.5)
    drop.load_state_dict(clean.state_dict())
    logits_c, feats_c = clean(x)
    torch.manual_seed(0)
    logits_d, feats_d = drop(x)
    torch.testing.assert_close(feats_d, feats_c, rtol=0, atol=0)
    assert not torch.allclose(logits_d, logits_c)
    # the same mask, drawn again from the same seed, reproduces the logits by hand
    torch.manual_seed(0)
    keep = torch.nn.functional.dropout(torch.ones_like(feats_c), 0.5, training=True)
    assert set(torch.unique(keep).tolist()) <= {0.0, 2.0}
    assert 0.4 < float((keep == 0).double().mean()) < 0.6
    want = (feats_c * keep) @ drop.final.weight.t() + drop.final.bias
    torch.testing.assert_close(logits_d, want, rtol=1e-5, atol=1e-5)
    drop.eval()
    clean.eval()
    with torch.no_grad():
        le, fe = drop(x)
        lc, fc = clean(x)
    assert torch.equal(le, lc) and torch.equal(fe, fc)
    torch.testing.assert_close(le, fe @ drop.final.weight.t() + drop.final.bias)


def test_head_dropout_range_and_config():
    with pytest.raises(ValueError, match="head_dropout"):
        build_model("MinkUNet14A", 3, 6, head_dropout=1.0)
    from pcseg.config import ConfigError, config_from_dict
    from pcseg.engine.builders import build_model as build_from_config

    cfg = config_from_dict(
        {"model": {"name": "MinkUNet14A", "head_dropout": 0.5}, "train": {"iterations": 1}}
    )
    assert build_from_config(cfg, 3, 6).head_dropout == 0.5
    with pytest.raises(ConfigError, match="head_dropout"):
        config_from_dict({"model": {"head_dropout": 1.0}, "train": {"iterations": 1}})


@pytest.mark.parametrize("name", ["MinkUNet14A", "MinkUNet34C", "MinkUNet50"])
def test_conv_bn_pairs_cover_every_batch_norm(name):
    model = build_model(name, 3, 5)
    pairs = model.conv_bn_pairs()
    bns = {id(m) for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)}
    assert {id(getattr(o, b)) for o, _, b in pairs} == bns and len(pairs) == len(bns)
    for o, c, b in pairs:  # the conv's output channels are the norm's
        assert getattr(o, c).out_channels == getattr(o, b).num_features


@pytest.mark.parametrize("name", ["MinkUNet14A", "MinkUNet50"])
def test_fused_for_inference_equals_the_eval_model(name):
    """Batch norms folded: logits / features equal the eval-mode network's (float64, to
    1e-10; labels exactly); the original model keeps its batch norms."""
    torch.manual_seed(0)
    x = two_scene_batch()
    x = x.replace_feats(x.feats.double())
    model = perturb_batch_norms(build_model(name, 3, 6).double()).eval()
    fused = fused_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    with torch.no_grad():
        want, wf = model(x)
    with torch.inference_mode():
        got, gf = fused(x)
    assert want.std() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gf, wf, rtol=1e-10, atol=1e-10)
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_fused_for_inference_leaves_other_backends_unfolded():
    pytest.importorskip("spconv")
    model = build_model("MinkUNet14A", 3, 4, backend="spconv")
    fused = fused_for_inference(model)
    assert fused is model and not fused.training
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules()) == len(
        model.conv_bn_pairs()
    )
