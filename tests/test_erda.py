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
