"""ERDA's official-code options (pcseg.methods.erda): each against a hand-computed example.

The projection head is replaced by the identity so that the projections g(f) are the given
features and every prototype, cosine and p can be written down by hand.

Then the loss itself: every variant, the gradients, the prototype EMA, the diagnostics and the
2-process prototype reduction against numpy float64 with explicit per-point / per-class
loops (``np_*`` below) or a hand-worked case.
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
from helpers.methods import D, K, make_batch, np_softmax_row
from helpers.paths import REPO
from torch import nn

from pcseg.config import load_config
from pcseg.methods import build_method
from pcseg.methods.erda import ERDA, KL_QP_EPS, PRESETS, VARIANTS

OFFICIAL = {
    "proto_mean": "raw",
    "absent": "reset",
    "proto_init": "glorot",
    "cross_device": "none",
    "tau": 1.0,
    "momentum": 0.999,
    "weight": 0.1,
    "class_weighting": "official_raw",  # the CE's raw class weights (RandLA-Net's `class`)
}


def identity_erda(k: int = 3, d: int = 2, **options: object) -> ERDA:
    method = ERDA(k, d, **options).double()  # type: ignore[arg-type]
    method.head = nn.Identity()
    return method


def batch(points: list[tuple[float, ...]], weak: list[int]) -> dict[str, torch.Tensor]:
    return {
        "features": torch.tensor(points, dtype=torch.float64),
        "weak_labels": torch.tensor(weak, dtype=torch.int64),
    }


def step(method: ERDA, b: dict[str, torch.Tensor], logits: torch.Tensor | None = None):
    f, weak = b["features"], b["weak_labels"]
    if logits is None:
        logits = torch.zeros(len(weak), method.num_classes, dtype=torch.float64)
    return method(logits, f, {"weak_labels": weak})


def softmax(x: list[float]) -> np.ndarray:
    e = np.exp(np.asarray(x, dtype=np.float64))
    return e / e.sum()


def p_of(method: ERDA, x: tuple[float, ...]) -> np.ndarray:
    f = torch.tensor([x], dtype=torch.float64)
    p = method.pseudo_label_probs(torch.zeros(1, method.num_classes), f)
    assert p is not None
    return p[0].numpy()


# ---------------------------------------------------------------- defaults and preset
def test_defaults_are_pcsegs_behaviour() -> None:
    o = ERDA(3, 2).options
    assert (o.proto_mean, o.absent, o.proto_init, o.cross_device, o.preset) == (
        "normalised",
        "keep",
        "zeros",
        "none",
        None,
    )
    assert torch.count_nonzero(ERDA(3, 2).prototypes) == 0
    keys = set(ERDA(3, 2).state_dict())
    assert keys == set(ERDA(3, 2, preset="official", cross_device="sum").state_dict())


def test_official_preset_values_and_explicit_override() -> None:
    assert PRESETS["official"] == OFFICIAL
    o = build_method("erda", 3, 2, preset="official").options  # type: ignore[attr-defined]
    assert {k: getattr(o, k) for k in OFFICIAL} == OFFICIAL
    o = build_method("erda", 3, 2, preset="official", weight=0.01).options  # type: ignore
    assert o.weight == 0.01 and o.absent == "reset"  # CloserLook3D's w.01 on the preset
    with pytest.raises(ValueError, match="preset"):
        build_method("erda", 3, 2, preset="closerlook")


@pytest.mark.parametrize("where", ["demo", "budget"])
def test_official_config_files_pick_the_preset(where: str) -> None:
    cfg = load_config(REPO / "configs" / where / "erda_official.yaml", [])
    assert cfg.method.name == "erda" and cfg.method.preset == "official"
    o = build_method("erda", 13, 32, options=cfg.method).options  # type: ignore[attr-defined]
    assert {k: getattr(o, k) for k in OFFICIAL} == OFFICIAL


def test_preset_inside_erda_u2pl() -> None:
    method = build_method("erda_u2pl", 3, 8, erda={"preset": "official"})
    assert method.erda.options.absent == "reset"  # type: ignore[union-attr]


# ---------------------------------------------------------------- proto_mean
def test_raw_means_differ_from_normalised_means() -> None:
    """Class 0 labelled at (3, 0) and (0, 1), m = 0.5, zero start: normalised mean (.5, .5),
    prototype (.25, .25); raw mean (1.5, .5), prototype (.75, .25). Cosine logits of the
    point (1, 0): 1/sqrt(2) vs 3/sqrt(10), the others 0 (absent="reset": no mask)."""
    b = batch([(3.0, 0.0), (0.0, 1.0), (1.0, 0.0)], [0, 0, -1])
    norm = identity_erda(momentum=0.5, absent="reset")
    raw = identity_erda(momentum=0.5, absent="reset", proto_mean="raw")
    step(norm, b)
    step(raw, b)
    np.testing.assert_allclose(norm.prototypes[0].numpy(), [0.25, 0.25], rtol=1e-12)
    np.testing.assert_allclose(raw.prototypes[0].numpy(), [0.75, 0.25], rtol=1e-12)
    np.testing.assert_allclose(p_of(norm, (1.0, 0.0)), softmax([1 / math.sqrt(2), 0, 0]))
    np.testing.assert_allclose(p_of(raw, (1.0, 0.0)), softmax([3 / math.sqrt(10), 0, 0]))
    assert not np.allclose(p_of(norm, (1.0, 0.0)), p_of(raw, (1.0, 0.0)))


# ---------------------------------------------------------------- absent
def test_absent_class_is_reset_to_logit_zero_or_kept() -> None:
    """m = 0.5, zero start. Step 1: class 0 at (1, 0), class 1 at (0, 1). Step 2: class 0 at
    (1, 0) only. reset: c = [(.75, 0), 0, 0], so the point (.6, .8) has logits [.6, 0, 0];
    keep: c1 = (0, .5) stays, c2 never seen is masked: logits [.6, .8, -inf]."""
    s1 = batch([(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)], [0, 1, -1])
    s2 = batch([(1.0, 0.0), (0.6, 0.8)], [0, -1])
    logits2 = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, -1.0]], dtype=torch.float64)
    log_q = F.log_softmax(logits2[1], dim=0).numpy()
    expect = {
        "reset": ([[0.75, 0.0], [0.0, 0.0], [0.0, 0.0]], softmax([0.6, 0.0, 0.0])),
        "keep": (
            [[0.75, 0.0], [0.0, 0.5], [0.0, 0.0]],
            np.array([*softmax([0.6, 0.8]), 0.0]),
        ),
    }
    for absent, (protos, p) in expect.items():
        method = identity_erda(momentum=0.5, absent=absent)
        step(method, s1)
        out = step(method, s2, logits2)
        np.testing.assert_allclose(method.prototypes.numpy(), protos, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(p_of(method, (0.6, 0.8)), p, rtol=1e-12, atol=1e-15)
        # the loss uses that p: H(p, q) on the one unlabelled point
        assert out["loss_erda"].item() == pytest.approx(-(p * log_q).sum(), rel=1e-12)
    assert identity_erda(absent="reset").proto_initialised.sum() == 0


def test_reset_never_skips_the_term_uniform_p_without_prototypes() -> None:
    """No label at all, zero prototypes: reset gives p uniform (all logits 0), keep skips."""
    b = batch([(1.0, 0.0), (0.0, 1.0)], [-1, -1])
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    out = step(identity_erda(absent="reset"), b, logits)
    expect = -(F.log_softmax(logits, dim=1) / 3).sum(1).mean()
    assert out["loss_erda"].item() == pytest.approx(expect.item(), rel=1e-12)
    assert step(identity_erda(absent="keep"), b, logits)["loss_erda"].item() == 0.0


# ---------------------------------------------------------------- proto_init
def test_glorot_init_range_and_reproducibility() -> None:
    k, d = 13, 32
    a = math.sqrt(6.0 / (k + d))  # tf glorot_uniform limit for a [k, d] variable
    torch.manual_seed(3)
    c = ERDA(k, d, proto_init="glorot").prototypes
    assert c.abs().max() <= a and c.max() > 0.8 * a and c.min() < -0.8 * a
    assert float(c.std()) == pytest.approx(a / math.sqrt(3.0), rel=0.15)  # U(-a, a)
    torch.manual_seed(3)
    assert torch.equal(ERDA(k, d, proto_init="glorot").prototypes, c)
    method = ERDA(k, d, proto_init="glorot")
    assert not method.proto_initialised.any()  # random, but not observed
    assert method.pseudo_label_probs(torch.zeros(2, k), torch.randn(2, d)) is None  # keep: masked


def test_glorot_start_with_reset_the_official_ema() -> None:
    """Official weak-label mode: c0 = m c_init + (1 - m) mean for the present class, 0 for
    the absent ones."""
    torch.manual_seed(0)
    method = identity_erda(momentum=0.9, absent="reset", proto_init="glorot", proto_mean="raw")
    init = method.prototypes.clone()
    step(method, batch([(2.0, 1.0), (0.0, 1.0)], [0, -1]))
    np.testing.assert_allclose(
        method.prototypes[0].numpy(), (0.9 * init[0] + 0.1 * torch.tensor([2.0, 1.0])).numpy()
    )
    assert torch.count_nonzero(method.prototypes[1:]) == 0


# ---------------------------------------------------------------- cross_device
def test_cross_device_uses_the_previous_steps_prototypes() -> None:
    """m = 0.5, raw means, no mask (official Gsum, one process = world size 1).
    Step 1: zero prototypes -> p uniform; update with means [(2, 0), (0, 2), 0] ->
    c = [(1, 0), (0, 1), 0]. Step 2 (class 0 at (0, 4)): p of (.6, .8) from c of step 1,
    softmax([.6, .8, 0]); then c = [(.5, 2), (0, .5), 0] (absent class 1 decays by m)."""
    s1 = batch([(2.0, 0.0), (0.0, 2.0), (0.6, 0.8)], [0, 1, -1])
    s2 = batch([(0.0, 4.0), (0.6, 0.8)], [0, -1])
    lg = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, -1.0]], dtype=torch.float64)
    lg1 = torch.cat([torch.zeros(1, 3, dtype=torch.float64), lg])  # same q on the unlabelled
    log_q = F.log_softmax(lg[1], dim=0).numpy()
    losses = {}
    for mode in ("sum", "avg", "none"):
        method = identity_erda(momentum=0.5, absent="reset", proto_mean="raw", cross_device=mode)
        out1 = step(method, s1, lg1)
        out2 = step(method, s2, lg)
        losses[mode] = (out1["loss_erda"].item(), out2["loss_erda"].item())
        if mode != "none":
            assert losses[mode][0] == pytest.approx(-log_q.mean(), rel=1e-12)  # uniform p
            p2 = softmax([0.6, 0.8, 0.0])
            assert losses[mode][1] == pytest.approx(-(p2 * log_q).sum(), rel=1e-12)
            np.testing.assert_allclose(
                method.prototypes.numpy(), [[0.5, 2.0], [0.0, 0.5], [0.0, 0.0]], rtol=1e-12
            )
            assert method.proto_initialised.tolist() == [True, True, False]
    assert losses["sum"] == losses["avg"]  # world size 1
    # per-device mode: p from the updated prototypes, so both steps differ
    assert losses["none"][0] != pytest.approx(losses["sum"][0])
    assert losses["none"][1] != pytest.approx(losses["sum"][1])


def test_cross_device_keep_masks_never_seen_classes() -> None:
    method = identity_erda(momentum=0.5, cross_device="sum")
    out = step(method, batch([(1.0, 0.0), (0.0, 1.0)], [0, -1]))
    assert out["loss_erda"].item() == 0.0  # nothing observed before this step: skipped
    np.testing.assert_allclose(p_of(method, (0.6, 0.8)), [1.0, 0.0, 0.0])


# ---------------------------------------------------------------- 2 processes (gloo)
_RANK_DATA = {  # (rank, step) -> (points, weak labels)
    (0, 0): ([(2.0, 0.0), (0.0, 2.0)], [0, 0]),
    (1, 0): ([(4.0, 0.0), (0.0, 3.0)], [0, 1]),
    (0, 1): ([(1.0, 0.0)], [2]),
    (1, 1): ([(5.0, 5.0)], [-1]),
}


def _gsum_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        res = {}
        for mode in ("sum", "avg"):
            method = identity_erda(momentum=0.5, proto_mean="raw", cross_device=mode)
            for s in range(2):
                pts, weak = _RANK_DATA[(rank, s)]
                b = batch(pts, weak)
                method.update_prototypes(b["features"], b["weak_labels"])
            res[mode] = (method.prototypes.clone(), method.proto_initialised.clone())
        torch.save(res, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_gsum_gavg_two_processes(tmp_path: Path) -> None:
    """Per-rank class means, step 0: rank 0 class 0 (1, 1); rank 1 class 0 (4, 0), class 1
    (0, 3). Sum R0 = [(5, 1), (0, 3), 0], mean = R0 / 2; c = .5 R0. Step 1: only rank 0's
    class 2 at (1, 0): c = .5 c + .5 [0, 0, (1, 0)] (sum) or [0, 0, (.5, 0)] (avg)."""
    import torch.multiprocessing as mp

    mp.spawn(_gsum_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    r0 = np.array([[5.0, 1.0], [0.0, 3.0], [0.0, 0.0]])
    r1 = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    for mode, scale in (("sum", 1.0), ("avg", 0.5)):
        protos, seen = res[0][mode]
        assert torch.equal(protos, res[1][mode][0])  # identical on both ranks
        expect = 0.5 * (0.5 * scale * r0) + 0.5 * scale * r1
        np.testing.assert_allclose(protos.numpy(), expect, rtol=1e-12, atol=1e-15)
        assert seen.tolist() == [True, True, True]


# ---------------------------------------------------------------- class weighting
def _ce_by_hand(logits: list[list[float]], labels: list[int]) -> list[float]:
    return [math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in zip(logits, labels)]


LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-0.5, 1.5, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]


WEAK = [0, 1, 1, 2, -1]  # the last point is unlabelled


def test_official_raw_weights_and_ce_by_hand() -> None:
    """Counts (6, 3, 1): freq (.6, .3, .1), w = 1 / (freq + .02) = (1/.62, 1/.32, 1/.12);
    the official loss is mean_i w_{y_i} CE_i over the labelled points (not divided by the sum
    of the weights), pcseg's normalised one sum w CE / sum w."""
    from pcseg.methods.common import official_raw_class_weights

    w = official_raw_class_weights([6, 3, 1])
    want_w = [1 / 0.62, 1 / 0.32, 1 / 0.12]
    np.testing.assert_allclose(w.numpy(), want_w, rtol=1e-6)
    ce = _ce_by_hand(LOGITS[:4], WEAK[:4])
    raw = sum(want_w[y] * c for y, c in zip(WEAK[:4], ce)) / 4
    normalised = sum(want_w[y] * c for y, c in zip(WEAK[:4], ce)) / sum(want_w[y] for y in WEAK[:4])
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    b = {"weak_labels": torch.tensor(WEAK)}
    for name in ("supervised", "erda", "pseudo_threshold"):
        method = build_method(name, 3, 2, class_weighting="official_raw")
        assert method.needs_class_counts
        method.set_class_counts(np.array([6, 3, 1]))
        loss = method(logits, torch.zeros(5, 2, dtype=torch.float64), b)["loss_sup"]
        assert float(loss) == pytest.approx(raw, rel=1e-6), name
    given = build_method("supervised", 3, 2, class_weights=want_w)
    loss = given(logits, torch.zeros(5, 2), b)["loss_sup"]
    assert float(loss) == pytest.approx(normalised, rel=1e-6)
    raw_given = build_method("supervised", 3, 2, class_weights=want_w, class_weighting="raw")
    loss = raw_given(logits, torch.zeros(5, 2), b)["loss_sup"]
    assert float(loss) == pytest.approx(raw, rel=1e-6)
    assert raw / normalised == pytest.approx(sum(want_w[y] for y in WEAK[:4]) / 4)


def test_raw_weighting_with_label_smoothing_weights_the_smoothed_ce() -> None:
    """Raw weighting with smoothing eps: w_{y_i} times ((1-eps) CE_i + eps/K sum_k -log q_ik)."""
    eps, w = 0.2, [2.0, 0.5, 4.0]
    want = 0.0
    for row, y in zip(LOGITS[:4], WEAK[:4]):
        lse = math.log(sum(math.exp(v) for v in row))
        smooth = (1 - eps) * (lse - row[y]) + eps / 3 * sum(lse - v for v in row)
        want += w[y] * smooth / 4
    m = build_method(
        "supervised", 3, 2, class_weights=w, class_weighting="raw", label_smoothing=eps
    )
    got = m(torch.tensor(LOGITS), torch.zeros(5, 2), {"weak_labels": torch.tensor(WEAK)})
    assert float(got["loss_sup"]) == pytest.approx(want, rel=1e-6)


def test_class_weighting_option_checks_and_missing_counts() -> None:
    with pytest.raises(ValueError, match="raw.*needs class_weights"):
        build_method("supervised", 3, 2, class_weighting="raw")
    with pytest.raises(ValueError, match="leave class_weights unset"):
        build_method("erda", 3, 2, class_weighting="official_raw", class_weights=[1, 1, 1])
    with pytest.raises(ValueError, match="class_weighting"):
        build_method("erda", 3, 2, class_weighting="unit")
    m = build_method("erda", 3, 2, preset="official")
    with pytest.raises(RuntimeError, match="set_class_counts"):
        m(torch.zeros(5, 3), torch.zeros(5, 2), {"weak_labels": torch.tensor(WEAK)})
    with pytest.raises(ValueError, match="2 class counts for 3 classes"):
        m.set_class_counts([1, 1])
    plain = build_method("erda", 3, 2)
    assert not plain.needs_class_counts
    plain.set_class_counts([6, 3, 1])  # not official_raw: nothing changes
    assert plain.class_weights is None and "class_weights" not in plain.state_dict()


def test_erda_u2pl_official_preset_gets_the_counts_of_its_erda() -> None:
    method = build_method("erda_u2pl", 3, 8, erda={"preset": "official"})
    assert method.needs_class_counts
    method.set_class_counts([6, 3, 1])
    np.testing.assert_allclose(
        method.erda.class_weights.numpy(),  # type: ignore[union-attr]
        [1 / 0.62, 1 / 0.32, 1 / 0.12],
        rtol=1e-6,
    )


class _FakeScenes:
    num_classes = 3
    scene_names = ["a", "b"]
    classes = {"a": np.array([0, 0, 2]), "b": np.array([1, 0, 2, 2, 2])}

    def load_weak(self, name: str) -> tuple[None, np.ndarray, np.ndarray]:
        cls = self.classes[name]
        return None, np.arange(len(cls)), cls


def test_labelled_class_counts_sums_the_weak_classes_of_every_scene() -> None:
    from pcseg.methods.common import labelled_class_counts

    assert labelled_class_counts(_FakeScenes()).tolist() == [3, 1, 4]


def test_trainer_sets_official_raw_weights_from_the_training_weak_labels(
    prepared_rooms: Path, tmp_path: Path
) -> None:
    """The official configs' method and model options in a tiny run: the trainer's weights
    are 1 / (freq + 0.02) of the training split's weak labels counted here independently,
    the model has head dropout 0.5, and the trace holds the per-class p / q diagnostics."""
    from pcseg.config import config_from_dict
    from pcseg.data import processed
    from pcseg.engine.setup import torch_globals
    from pcseg.engine.trainer import Trainer

    cfg = config_from_dict(
        {
            "data": {
                "dataset": "s3dis",
                "root": str(prepared_rooms),
                "label_spec": "1%",
                "voxel_size": 0.1,
                "max_voxels": 600,
                "train_split": "Area_1",
                "val_split": None,
            },
            "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8, "head_dropout": 0.5},
            "method": {"name": "erda", "preset": "official", "momentum": 0.9},
            "train": {"iterations": 4, "log_every": 2, "progress": False, "device": "cpu"},
            "run_dir": str(tmp_path / "run"),
        }
    )
    counts = np.zeros(13, dtype=np.int64)
    for sid in processed.split_scenes(prepared_rooms, "Area_1"):
        scene = processed.read_scene(prepared_rooms, sid)
        _, cls = processed.read_label_classes(prepared_rooms, "1%", sid, scene.semantic, 13)
        counts += np.bincount(cls, minlength=13)
    freq = counts / counts.sum()
    with torch_globals():
        trainer = Trainer(cfg)
        np.testing.assert_allclose(
            trainer.method.class_weights.numpy(),  # type: ignore[union-attr]
            1.0 / (freq + 0.02),
            rtol=1e-6,
        )
        assert trainer.model.dropout is not None and trainer.model.dropout.p == 0.5
        trainer.fit()
    trace = trainer.history["trace"]
    assert [t["iteration"] for t in trace] == [2, 4]
    for t in trace:
        for key in ("pseudo_macc", "pseudo_miou", "pred_unlabelled_macc", "pred_unlabelled_miou"):
            assert 0.0 <= t[f"diag/{key}"] <= 1.0


# ---------------------------------------------------------------- learned temperature
def test_learned_temperature_gets_a_gradient_and_moves() -> None:
    """learn_tau: at the start the loss equals the fixed-tau loss (tau 0.5 here); log_tau
    receives a non-zero gradient equal to a finite difference, and one SGD step moves it."""
    b = batch([(1.0, 0.0), (0.0, 1.0), (0.6, 0.8), (0.8, -0.6)], [0, 1, -1, -1])
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2.0, -1.0, 0.0], [-1.0, 2.0, 0.5]])
    logits = logits.double()
    fixed = identity_erda(momentum=0.5, tau=0.5)
    learned = identity_erda(momentum=0.5, tau=0.5, learn_tau=True)
    assert "log_tau" in dict(learned.named_parameters()) and "log_tau" not in fixed.state_dict()
    assert float(learned.log_tau) == pytest.approx(math.log(0.5))  # type: ignore[arg-type]
    out_f = step(fixed, b, logits)
    out_l = step(learned, b, logits)
    # log_tau starts as the float32 log(0.5): equal up to its rounding
    assert float(out_l["loss"]) == pytest.approx(float(out_f["loss"]), rel=1e-6)
    assert float(out_l["diag/tau"]) == pytest.approx(0.5)
    out_l["loss"].backward()
    g = float(learned.log_tau.grad)  # type: ignore[union-attr]
    assert g != 0.0

    def loss_at(s: float) -> float:
        m = identity_erda(momentum=0.5, tau=0.5, learn_tau=True)
        with torch.no_grad():
            m.log_tau.fill_(s)  # type: ignore[union-attr]
        return float(step(m, b, logits)["loss"])

    h, s0 = 1e-6, math.log(0.5)
    assert g == pytest.approx((loss_at(s0 + h) - loss_at(s0 - h)) / (2 * h), rel=1e-5)
    opt = torch.optim.SGD(learned.parameters(), lr=0.5)
    opt.step()
    assert float(learned.log_tau) == pytest.approx(s0 - 0.5 * g)  # type: ignore[arg-type]


def test_learned_temperature_keeps_a_zero_gradient_while_the_term_is_skipped() -> None:
    m = identity_erda(learn_tau=True)
    out = step(m, batch([(1.0, 0.0), (0.0, 1.0)], [-1, -1]))  # nothing observed: skipped
    out["loss"].backward()
    assert m.log_tau.grad is not None and float(m.log_tau.grad) == 0.0  # type: ignore[union-attr]


# ---------------------------------------------------------------- per-class p / q diagnostics
def _brute_macc_miou(pairs: list[tuple[int, int]], k: int) -> tuple[float, float]:
    """(pred, label) pairs -> mean per-class accuracy over the classes with a label and mean
    IoU over the classes labelled or predicted, by loops."""
    accs, ious = [], []
    for c in range(k):
        tp = sum(1 for p, y in pairs if p == c and y == c)
        gt = sum(1 for _, y in pairs if y == c)
        pr = sum(1 for p, _ in pairs if p == c)
        if gt:
            accs.append(tp / gt)
        if gt + pr - tp:
            ious.append(tp / (gt + pr - tp))
    return sum(accs) / len(accs), sum(ious) / len(ious)


def test_window_diagnostics_match_brute_force_over_several_batches() -> None:
    """Three training steps of ERDA (identity head, 4 classes): argmax p (cosine to the
    updated prototypes among the observed classes) and argmax q on the unlabelled voxels
    with a hidden label, pooled over the steps, against loops; then the window restarts;
    eval-mode calls add nothing."""
    k = 4
    method = identity_erda(k, 3, momentum=0.5)
    gen = torch.Generator().manual_seed(0)
    pairs_p: list[tuple[int, int]] = []
    pairs_q: list[tuple[int, int]] = []
    for _ in range(3):
        f = torch.randn(30, 3, generator=gen, dtype=torch.float64)
        logits = torch.randn(30, k, generator=gen, dtype=torch.float64)
        labels = torch.randint(-1, k, (30,), generator=gen)
        weak = torch.full((30,), -1, dtype=torch.int64)
        weak[:6] = torch.tensor([0, 1, 2, 0, 1, 2])  # class 3 never labelled: masked in p
        labels[:6] = weak[:6]
        method(logits, f, {"weak_labels": weak, "labels": labels})
        c = F.normalize(method.prototypes, dim=1)
        cos = F.normalize(f, dim=1) @ c.t()
        cos[:, ~method.proto_initialised] = -math.inf
        for i in range(6, 30):
            if int(labels[i]) >= 0:
                pairs_p.append((int(cos[i].argmax()), int(labels[i])))
                pairs_q.append((int(logits[i].argmax()), int(labels[i])))
    got = method.window_diagnostics()
    macc_p, miou_p = _brute_macc_miou(pairs_p, k)
    macc_q, miou_q = _brute_macc_miou(pairs_q, k)
    assert got["diag/pseudo_macc"] == pytest.approx(macc_p)
    assert got["diag/pseudo_miou"] == pytest.approx(miou_p)
    assert got["diag/pred_unlabelled_macc"] == pytest.approx(macc_q)
    assert got["diag/pred_unlabelled_miou"] == pytest.approx(miou_q)
    assert (macc_p, miou_p) != (macc_q, miou_q)
    assert method.window_diagnostics() == {}  # restarted
    method.eval()
    method(logits, f, {"weak_labels": weak, "labels": labels})
    assert method.window_diagnostics() == {}


def test_window_diagnostics_of_supervised_and_without_hidden_labels() -> None:
    logits = torch.tensor(LOGITS)
    labels = torch.tensor([0, 1, 1, 2, 2])
    sup = build_method("supervised", 3, 2)
    sup(
        logits,
        torch.zeros(5, 2),
        {"weak_labels": torch.tensor([0, -1, -1, -1, -1]), "labels": labels},
    )
    got = sup.window_diagnostics()
    # unlabelled points 1..4: argmax q = 1, 1, 2, 0 against 1, 1, 2, 2
    macc, miou = _brute_macc_miou([(1, 1), (1, 1), (2, 2), (0, 2)], 3)
    assert (macc, miou) == (pytest.approx(0.75), pytest.approx((1 + 0.5) / 3))
    assert got == {
        "diag/pred_unlabelled_macc": pytest.approx(macc),
        "diag/pred_unlabelled_miou": pytest.approx(miou),
    }
    sup(logits, torch.zeros(5, 2), {"weak_labels": torch.tensor(WEAK)})  # no hidden labels
    assert sup.window_diagnostics() == {}


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
