"""ERDA's official-code options (pcseg.methods.erda): each against a hand-computed example.

The projection head is replaced by the identity so that the projections g(f) are the given
features and every prototype, cosine and p can be written down by hand.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pcseg.config import load_config
from pcseg.methods import build_method
from pcseg.methods.erda import ERDA, PRESETS

ROOT = Path(__file__).resolve().parents[1]
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
    cfg = load_config(ROOT / "configs" / where / "erda_official.yaml", [])
    assert cfg.method.name == "erda" and cfg.method.kwargs == {"preset": "official"}
    o = build_method("erda", 13, 32, **cfg.method.kwargs).options  # type: ignore[attr-defined]
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
