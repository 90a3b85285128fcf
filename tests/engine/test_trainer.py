"""Trainer: overfit check, end-to-end run outputs, exact resume, 2-process CPU DDP, schedules.

All runs use a tiny synthetic S3DIS-format dataset (2 areas x 2 rooms at 10 cm spacing,
voxel 0.1 m, crops of <= 600 voxels) and a MinkUNet14A slimmed to 8 channels.
"""

from __future__ import annotations

import functools
import math
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from pcseg.config import TrainConfig, config_from_dict
from pcseg.engine.builders import TrainModule, build_method, build_model
from pcseg.engine.checkpoint import load_checkpoint
from pcseg.engine.data import ResumableBatchSampler, build_dataset, sample_seed
from pcseg.engine.optim import build_optimizer, build_scheduler, lr_factor_fn
from pcseg.engine.trainer import train


@pytest.fixture(scope="module")
def data_root(prepared_rooms) -> Path:
    return prepared_rooms


def tiny_cfg(root: Path, run_dir: Path, method: dict | None = None, **train_over):
    train = {
        "iterations": 6,
        "optimizer": "adamw",
        "lr": 0.01,
        "scheduler": "onecycle",
        "log_every": 1,
        "val_every": 0,
        "progress": False,
        "device": "cpu",
        "seed": 0,
    }
    train.update(train_over)
    return config_from_dict(
        {
            "data": {
                "dataset": "s3dis",
                "root": str(root),
                "label_spec": "1%",
                "voxel_size": 0.1,
                "max_voxels": 600,
                "batch_size": 2,
                "train_split": "Area_1",
                "val_split": "Area_2",
                "test_split": "Area_2",
            },
            "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
            "method": method or {"name": "erda", "weight": 0.1, "momentum": 0.9},
            "train": train,
            "run_dir": str(run_dir),
        },
        "tiny",
    )


def test_overfits_a_fixed_batch(data_root):
    torch.manual_seed(0)
    cfg = tiny_cfg(data_root, data_root / "unused", method={"name": "supervised"})
    cfg.data.label_spec = "full"
    ds = build_dataset(cfg, "Area_1", "train")
    from pcseg.data.dataset import collate

    batch = collate(
        [ds.get_sample(0, np.random.default_rng(0)), ds.get_sample(1, np.random.default_rng(1))]
    )
    model = build_model(cfg, ds.in_channels, ds.num_classes)
    module = TrainModule(model, build_method(cfg, ds.num_classes, model.feature_dim))
    opt = torch.optim.AdamW(module.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = module(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_end_to_end_outputs(data_root, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg(data_root, run, iterations=4, val_every=2, log_every=2)
    s = train(cfg)
    for rel in ("config.yaml", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / rel).is_file(), rel
    assert s["finished"] and s["iterations"] == 4 and len(s["loss_history"]) == 4
    assert 0.0 <= s["best_miou"] <= 1.0 and s["best_iteration"] in (2, 4)
    assert [v["iteration"] for v in s["val_history"]] == [2, 4]
    assert s["iterations_per_s"] > 0 and s["peak_memory_mb"] > 0
    assert "diag/protos_initialised" in s["final_diagnostics"]
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["iteration"] == 4 and ck["num_classes"] == 13 and ck["in_channels"] == 3
    assert ck["method"]["proto_initialised"].any()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run / "tb"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/loss_sup",
        "train/loss_erda",
        "train/lr",
        "val/miou",
        "diag/pseudo_entropy",
        "diag/labelled_frac",
    ):
        assert tag in tags, (tag, sorted(tags))
    logged = [e.value for e in ea.Scalars("train/loss")]
    means = [np.mean(s["loss_history"][0:2]), np.mean(s["loss_history"][2:4])]
    assert logged == pytest.approx(means, rel=1e-6)


def test_resume_continues_exactly(data_root, tmp_path):
    n = 6
    full = train(tiny_cfg(data_root, tmp_path / "a", iterations=n, deterministic=True, val_every=2))
    first = train(
        tiny_cfg(
            data_root, tmp_path / "b", iterations=n, deterministic=True, val_every=2, stop_at=3
        )
    )
    assert not first["finished"] and len(first["loss_history"]) == 3
    # same config (stop_at included): a resumed run goes past stop_at
    resumed = train(
        tiny_cfg(
            data_root, tmp_path / "b", iterations=n, deterministic=True, val_every=2, stop_at=3
        ),
        resume=True,
    )
    assert resumed["finished"]
    assert resumed["loss_history"] == full["loss_history"]  # exact float equality
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    for part in ("model", "method"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["best"] == b["best"]


def test_trainer_api_step_validate_and_load_state_dict(data_root, tmp_path):
    from pcseg.engine.setup import torch_globals
    from pcseg.engine.trainer import Trainer

    over = {"iterations": 4, "deterministic": True}
    full = train(tiny_cfg(data_root, tmp_path / "a", **over))
    train(tiny_cfg(data_root, tmp_path / "b", stop_at=2, **over))
    state = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    with torch_globals(deterministic=True):
        t = Trainer(tiny_cfg(data_root, tmp_path / "c", **over))  # fresh, then the checkpoint
        assert set(t.state_dict()) == set(state) - {"format"}
        t.load_state_dict(state)
        assert (t.iteration, t.best) == (2, state["best"])
        assert t.history["loss"] == full["loss_history"][:2]
        s = t.fit()
    assert s["finished"] and s["loss_history"] == full["loss_history"]  # exact
    with torch_globals(deterministic=True):
        t = Trainer(tiny_cfg(data_root, tmp_path / "d", **over))
        vals = t.step(next(iter(t.loader)))
        rec = t.validate()
        t.writer.close()
    assert t.iteration == 1 and vals["loss"] == full["loss_history"][0]
    assert {"loss", "loss_sup", "lr"} <= set(vals) and all(type(v) is float for v in vals.values())
    assert rec is not None and rec["iteration"] == 1 and rec["improved"]
    assert t.best["iteration"] == 1
    assert t.history["val"] == [rec] and 0.0 <= rec["miou"] <= 1.0


def _ddp_worker(rank: int, world: int, port: int, cfg_dict: dict, out: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    cfg = config_from_dict(cfg_dict, "ddp")

    def keep(module, r):
        torch.save(
            {"model": module.model.state_dict(), "method": module.method.state_dict()},
            Path(out) / f"rank{r}.pt",
        )

    s = train(cfg, on_finish=keep)
    torch.save(s["loss_history"], Path(out) / f"loss{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_ranks_stay_identical(data_root, tmp_path):
    from pcseg.config import config_to_dict

    cfg = tiny_cfg(data_root, tmp_path / "ddp", iterations=3, val_every=0)
    cfg.data.batch_size = 1
    cfg.data.loop = 2  # 4 samples per epoch: each rank sees 2 different ones
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, _free_port(), config_to_dict(cfg), str(tmp_path)), nprocs=2, join=True
    )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for part in ("model", "method"):
        assert r0[part].keys() == r1[part].keys()
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), (part, k)
    assert r0["method"]["proto_initialised"].any()
    l0, l1 = (torch.load(tmp_path / f"loss{r}.pt") for r in (0, 1))
    assert l0 != l1  # the ranks trained on different samples, yet their weights agree
    assert (tmp_path / "ddp" / "checkpoints" / "last.pt").is_file()


def test_sampler_is_resumable_and_sharded():
    full = ResumableBatchSampler(7, 2, seed=3)
    it = iter(full)
    seq = [next(it) for _ in range(10)]  # 4 batches per epoch, crossing epochs
    resumed = ResumableBatchSampler(7, 2, seed=3, start_epoch=1, start_step=2)
    it2 = iter(resumed)
    assert [next(it2) for _ in range(4)] == seq[6:10]
    assert sorted(i for b in full.epoch_batches(0) for i, _ in b) == list(range(7))
    r0, r1 = (ResumableBatchSampler(7, 2, seed=3, rank=r, world_size=2) for r in (0, 1))
    idx0 = [i for b in r0.epoch_batches(0) for i, _ in b]
    idx1 = [i for b in r1.epoch_batches(0) for i, _ in b]
    assert len(idx0) == len(idx1) == 4 and set(idx0) | set(idx1) == set(range(7))
    assert seq[0][0][1] == sample_seed(3, 0, 0)


@pytest.mark.parametrize("kind", ["poly", "cosine", "constant", "onecycle"])
def test_schedules_match_formulas(kind):
    cfg = TrainConfig(
        iterations=20,
        scheduler=kind,
        lr=0.1,
        warmup=4 if kind != "onecycle" else 0,
        optimizer="sgd",
        momentum=0.9,
    )
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], cfg)
    sch = build_scheduler(opt, cfg, 20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    t = np.arange(20)
    if kind == "onecycle":
        up = 6  # pct_start 0.3 of 20 steps
        assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1, rel=1e-3)
        assert int(np.argmax(lrs)) in (up - 1, up) and lrs[-1] < lrs[0]
        return
    main = {
        "poly": (1 - t / 20) ** 0.9,
        "cosine": 0.5 * (1 + np.cos(np.pi * t / 20)),
        "constant": np.ones(20),
    }[kind]
    at4 = main[4]
    expect = np.where(t < 4, (0.001 * (1 - t / 4) + t / 4) * at4, main) * 0.1
    np.testing.assert_allclose(lrs, expect, rtol=1e-9)
    assert lr_factor_fn(cfg, 20)(10) == pytest.approx(main[10])


def test_cpu_bf16_autocast_trains_close_to_float32_and_resumes(data_root, tmp_path):
    over = {"iterations": 4, "deterministic": True}
    ref = train(tiny_cfg(data_root, tmp_path / "fp32", **over))
    amp = train(tiny_cfg(data_root, tmp_path / "bf16", amp=True, amp_dtype="bf16", **over))
    assert amp["finished"] and all(math.isfinite(v) for v in amp["loss_history"])
    # the first step sees identical weights and data: only bf16 rounding separates the losses
    assert amp["loss_history"][0] == pytest.approx(ref["loss_history"][0], rel=0.02)
    assert amp["loss_history"][0] != ref["loss_history"][0]  # autocast really was on
    assert load_checkpoint(tmp_path / "bf16" / "checkpoints" / "last.pt")["scaler"] is None
    train(tiny_cfg(data_root, tmp_path / "b", stop_at=2, amp=True, **over))
    resumed = train(tiny_cfg(data_root, tmp_path / "b", amp=True, **over), resume=True)
    assert resumed["loss_history"] == pytest.approx(amp["loss_history"], rel=1e-6)
    # the test tool evaluates under the same autocast; its metrics agree with float32 inference
    from pcseg.engine.evaluate import evaluate

    cfg = tiny_cfg(data_root, tmp_path / "bf16", amp=True, amp_dtype="bf16", **over)
    ckpt = tmp_path / "bf16" / "checkpoints" / "last.pt"
    m16 = evaluate(cfg, ckpt, out_dir=tmp_path / "t16", progress=False)
    cfg.train.amp = False
    m32 = evaluate(cfg, ckpt, out_dir=tmp_path / "t32", progress=False)
    assert abs(m16["oa"] - m32["oa"]) < 0.05


def test_fp16_autocast_on_cpu_is_refused_clearly(data_root, tmp_path):
    with pytest.raises(ValueError, match="amp_dtype.*fp16.*needs CUDA.*bf16"):
        train(tiny_cfg(data_root, tmp_path / "x", amp=True, amp_dtype="fp16", iterations=1))
    from pcseg.engine.evaluate import evaluate

    train(tiny_cfg(data_root, tmp_path / "y", iterations=1))
    with pytest.raises(ValueError, match="amp_dtype.*fp16.*needs CUDA"):
        evaluate(
            tiny_cfg(data_root, tmp_path / "y", amp=True, amp_dtype="fp16"),
            tmp_path / "y" / "checkpoints" / "last.pt",
            progress=False,
        )


def test_non_finite_loss_stops_with_the_iteration_and_an_autocast_hint(
    data_root, tmp_path, monkeypatch
):
    forward = TrainModule.forward

    def poisoned(self, batch):
        out = forward(self, batch)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(TrainModule, "forward", poisoned)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration 1: .*loss_sup"):
        train(tiny_cfg(data_root, tmp_path / "a", iterations=2))
    with pytest.raises(FloatingPointError, match=r"under bf16 autocast: try train.amp=false\)$"):
        train(tiny_cfg(data_root, tmp_path / "b", iterations=2, amp=True, amp_dtype="bf16"))


def test_train_restores_global_torch_state(data_root, tmp_path):
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.get_num_threads(),
    )
    train(tiny_cfg(data_root, tmp_path / "a", iterations=1, deterministic=True, threads=1))
    assert (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.get_num_threads(),
    ) == before


def test_scalars_of_the_loss_dict_one_copy_per_device():
    from pcseg.engine.trainer import _scalars

    out = {
        "loss": torch.tensor(1.5, requires_grad=True) * 2,
        "n": 3,
        "vec": torch.ones(2),
        "diag/acc": torch.tensor([0.25], dtype=torch.float64),
        "half": torch.tensor(0.5, dtype=torch.bfloat16),
    }
    vals = _scalars(out)
    assert vals == {"loss": 3.0, "n": 3.0, "diag/acc": 0.25, "half": 0.5}
    assert list(vals) == ["loss", "n", "diag/acc", "half"]
    assert all(type(v) is float for v in vals.values())


@pytest.mark.gpu
@pytest.mark.parametrize("amp_dtype", ["bf16", "fp16"])
def test_cuda_amp_run_and_resume(data_root, tmp_path, amp_dtype):
    over = {
        "device": "cuda",
        "amp": True,
        "amp_dtype": amp_dtype,
        "iterations": 4,
        "val_every": 2,
        "deterministic": True,
        "grad_clip": 1.0,
    }
    full = train(tiny_cfg(data_root, tmp_path / "a", **over))
    assert full["finished"] and full["device"].startswith("cuda")
    assert all(math.isfinite(v) for v in full["loss_history"])
    assert full["peak_memory_kind"] == "cuda_max_allocated"
    train(tiny_cfg(data_root, tmp_path / "b", stop_at=2, **over))
    resumed = train(tiny_cfg(data_root, tmp_path / "b", **over), resume=True)
    assert len(resumed["loss_history"]) == 4
    ck = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert (ck["scaler"] is not None) == (amp_dtype == "fp16")


def test_without_the_bar_a_line_per_log_every_and_the_speed_once(
    data_root, tmp_path, capsys, monkeypatch
):
    """train.progress=false used to print nothing between the start line and the summary:
    now one plain line per log_every with the window's mean loss, and one line with it/s and
    the time to finish after the first 10 iterations (the 30 s alternative switched off so
    that a slow machine cannot move it)."""
    import pcseg.engine.trainer as trainer_mod
    from pcseg.utils.progress import RateMeter

    monkeypatch.setattr(trainer_mod, "RateMeter", functools.partial(RateMeter, first_s=math.inf))
    run = tmp_path / "run"
    s = train(tiny_cfg(data_root, run, iterations=12, log_every=4, method={"name": "supervised"}))
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("[train] iteration ")]
    assert [ln.split()[2] for ln in lines] == ["4/12", "8/12", "12/12"]
    hist = s["loss_history"]
    for k, ln in enumerate(lines):
        loss = float(re.search(r"  loss (\S+)", ln).group(1))
        assert loss == pytest.approx(np.mean(hist[4 * k : 4 * k + 4]), abs=1e-4)
        assert re.search(r"it/s \([\d.e+-]+ s/it\), .* to go$", ln), ln
    (speed,) = [ln for ln in out.splitlines() if "to finish 12 iterations" in ln]
    assert speed.startswith("[train] 10 iteration(s) in ") and " it/s; about " in speed
    # in order: after the line of iteration 8, before the one of iteration 12
    assert out.index(lines[1]) < out.index(speed) < out.index(lines[2])


def test_image_run_resumes_exactly_and_learns(tmp_path):
    """The 2D path through the same trainer: U2PL on pixel rows resumes to the same losses;
    supervised-only on full labels brings the loss down."""
    from helpers.image_runs import image_config, make_synthetic_processed

    from pcseg.images.processed import ensure_weak_labels

    make_synthetic_processed(tmp_path / "p", train=4, val=1, test=1, size=24)
    ensure_weak_labels(tmp_path / "p", "1%")

    def cfg(run: str, **train_over):
        return image_config(
            tmp_path / "p",
            tmp_path / run,
            {"name": "u2pl", "queue_capacity": 64, "rep_dim": 8, "num_anchors": 16},
            data={"label_spec": "1%"},
            train={"iterations": 4, "deterministic": True, "val_every": 2, **train_over},
        )

    full = train(cfg("a"))
    train(cfg("b", stop_at=2))
    resumed = train(cfg("b", stop_at=2), resume=True)
    assert resumed["loss_history"] == full["loss_history"]
    sup = train(
        image_config(
            tmp_path / "p",
            tmp_path / "s",
            train={"iterations": 30, "lr": 0.02},
            data={"images": {"crop_size": 24, "jitter": 0.0, "scale": [1.0, 1.0]}},
        )
    )
    losses = sup["loss_history"]
    assert np.mean(losses[-5:]) < 0.7 * losses[0]


def test_image_init_keeps_the_classifier_only_for_the_same_classes(tmp_path):
    from helpers.image_runs import image_config, make_synthetic_processed

    from pcseg.engine.trainer import Trainer
    from pcseg.images.processed import read_meta, write_meta

    make_synthetic_processed(tmp_path / "p", train=2, val=1, test=1, size=16)
    train(image_config(tmp_path / "p", tmp_path / "a", train={"iterations": 1}))
    ckpt = tmp_path / "a" / "checkpoints" / "last.pt"
    same = Trainer(image_config(tmp_path / "p", tmp_path / "b"), init=ckpt)
    assert "net.classifier.weight" in same.init_report["loaded"]
    meta = read_meta(tmp_path / "p")
    renamed = type(meta)(**{**meta.__dict__, "classes": [f"c{i}" for i in range(5)]})
    write_meta(tmp_path / "p", renamed, {"made_by": "tests"})
    other = Trainer(image_config(tmp_path / "p", tmp_path / "c"), init=ckpt)
    assert "net.classifier.weight" in other.init_report["fresh"]
    assert "net.down.0.0.weight" in other.init_report["loaded"]
