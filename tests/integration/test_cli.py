"""The ``pcseg`` commands (pcseg.cli) end to end on a tiny synthetic dataset.

``pcseg train`` generates the synthetic raw data and prepares it (data.synthetic, data.raw);
``pcseg test``'s metrics.json is checked against a brute-force recomputation from the
saved per-point predictions and the processed ground truth; submission files are checked
for shape, dtype and the class -> benchmark id mapping.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.paths import REPO

from pcseg.cli.main import build_parser, main
from pcseg.config import load_config
from pcseg.data import processed
from pcseg.data.classes import SCANNET_NYU40_IDS
from pcseg.engine.checkpoint import config_from_checkpoint
from pcseg.workflows.runs import load_run_config

pytestmark = pytest.mark.integration


def _train(argv: list[str]) -> dict:
    """``pcseg train ARGV``; returns the run's summary.json."""
    assert main(["train", *argv]) == 0
    args = build_parser().parse_args(["train", *argv])
    cfg = load_run_config(args.config, args.set)
    return json.loads((Path(cfg.run_dir) / "summary.json").read_text())


def _test(argv: list[str]) -> dict:
    """``pcseg test ARGV``; returns the metrics.json it wrote."""
    assert main(["test", *argv]) == 0
    args = build_parser().parse_args(["test", *argv])
    if args.out is not None:
        out = Path(args.out)
    else:
        cfg = (
            load_config(args.config, args.set)
            if args.config
            else config_from_checkpoint(args.checkpoint, args.set)
        )
        out = Path(cfg.run_dir) / "test"
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-iteration ERDA run whose data `pcseg train` generates and prepares itself."""
    root = tmp_path_factory.mktemp("tools")
    cfg = {
        "data": {
            "dataset": "s3dis",
            "root": str(root / "processed"),
            "raw": str(root / "raw"),
            "synthetic": {"num_areas": 2, "rooms_per_area": 1, "seed": 1, "spacing": 0.1},
            "prepare_splits": ["Area_1", "Area_2"],
            "label_spec": "1%",
            "voxel_size": 0.1,
            "max_voxels": 600,
            "batch_size": 1,
            "train_split": "Area_1",
            "val_split": "Area_2",
            "test_split": "Area_2",
        },
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "method": {"name": "erda", "weight": 0.1, "momentum": 0.5},
        "train": {
            "iterations": 4,
            "optimizer": "adamw",
            "lr": 0.01,
            "scheduler": "constant",
            "log_every": 2,
            "progress": False,
            "device": "cpu",
        },
        "run_dir": str(root / "run"),
    }
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    summary = _train([str(path), "--set", "train.seed=1"])
    return path, root, summary


def _brute_metrics(root: Path, pred_dir: Path, scenes: list[str], k: int):
    tp = np.zeros(k)
    fp = np.zeros(k)
    fn = np.zeros(k)
    for s in scenes:
        gt = processed.read_scene(root / "processed", s).semantic
        pred = np.load(pred_dir / f"{s}.npz")["pred"]
        assert pred.shape == gt.shape
        lab = gt >= 0
        for c in range(k):
            tp[c] += np.sum((pred == c) & (gt == c))
            fp[c] += np.sum((pred == c) & lab & (gt != c))
            fn[c] += np.sum((gt == c) & (pred != c))
    iou = [
        tp[c] / (tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] > 0 else math.nan for c in range(k)
    ]
    gt_n = tp + fn
    oa = tp.sum() / gt_n.sum()
    macc = np.mean([tp[c] / gt_n[c] for c in range(k) if gt_n[c] > 0])
    return iou, float(np.nanmean(iou)), float(oa), float(macc)


def test_train_generates_prepares_and_trains(trained):
    path, root, summary = trained
    assert (root / "raw" / "Area_1").is_dir() and (root / "processed" / "meta.json").is_file()
    assert (root / "processed" / "labels" / "1pct").is_dir()
    assert summary["finished"] and summary["iterations"] == 4
    saved = yaml.safe_load((root / "run" / "config.yaml").read_text())
    assert saved["train"]["seed"] == 1 and saved["method"]["name"] == "erda"
    assert json.loads((root / "run" / "summary.json").read_text())["iterations"] == 4


def test_test_metrics_match_brute_force(trained):
    path, root, _ = trained
    m = _test(
        [str(path), "--checkpoint", str(root / "run" / "checkpoints" / "last.pt"), "--no-progress"]
    )
    out = root / "run" / "test"
    saved = json.loads((out / "metrics.json").read_text())
    k = len(saved["class_names"])
    scenes = processed.split_scenes(root / "processed", "Area_2")
    assert saved["scenes"] == scenes
    iou, miou, oa, macc = _brute_metrics(root, out / "predictions", scenes, k)
    assert saved["miou"] == pytest.approx(miou, abs=1e-12)
    assert saved["oa"] == pytest.approx(oa, abs=1e-12)
    assert saved["macc"] == pytest.approx(macc, abs=1e-12)
    for name, v in zip(saved["class_names"], iou):
        got = saved["per_class_iou"][name]
        assert (got is None and math.isnan(v)) or got == pytest.approx(v, abs=1e-12)
    assert np.asarray(saved["confusion"]).shape == (k, k)
    assert m["miou"] == pytest.approx(miou, abs=1e-12)
    for s in scenes:
        z = np.load(out / "predictions" / f"{s}.npz")
        n = processed.read_scene_info(root / "processed", s)["num_points"]
        assert z["pred"].dtype == np.int64 and z["pseudo"].dtype == np.int64
        assert z["confidence"].dtype == np.float32 and z["entropy"].dtype == np.float32
        assert all(len(z[key]) == n for key in ("pred", "pseudo", "confidence", "entropy"))
        assert (z["confidence"] > 0).all() and (z["confidence"] <= 1 + 1e-6).all()
        assert (z["entropy"] >= -1e-6).all() and (z["entropy"] <= math.log(k) + 1e-5).all()
        assert (z["pseudo"] >= 0).all() and (z["pseudo"] < k).all()  # ERDA prototypes exist


def test_test_saves_u2pl_teacher_pseudo_labels(trained, tmp_path):
    """U2PL's pseudo-labels come from its EMA teacher, which needs the input voxels: the
    test tool must hand the batch over, so the viewer gets real pseudo-labels, not -1."""
    path, root, _ = trained
    cfg = yaml.safe_load(path.read_text())
    cfg["method"] = {"name": "u2pl", "sup_only_iterations": 0, "queue_capacity": 64}
    cfg["train"]["iterations"] = 2
    cfg["run_dir"] = str(tmp_path / "run")
    u2pl_path = tmp_path / "u2pl.yaml"
    u2pl_path.write_text(yaml.safe_dump(cfg))
    _train([str(u2pl_path)])
    _test(
        [
            str(u2pl_path),
            "--checkpoint",
            str(tmp_path / "run" / "checkpoints" / "last.pt"),
            "--no-progress",
        ]
    )
    k = len(json.loads((tmp_path / "run" / "test" / "metrics.json").read_text())["class_names"])
    for s in processed.split_scenes(root / "processed", "Area_2"):
        z = np.load(tmp_path / "run" / "test" / "predictions" / f"{s}.npz")
        assert (z["pseudo"] >= 0).all() and (z["pseudo"] < k).all()


def test_tta_and_checkpoint_config(trained):
    path, root, _ = trained
    out = root / "tta"
    m = _test(
        [
            "--checkpoint",
            str(root / "run" / "checkpoints" / "best.pt"),
            "--out",
            str(out),
            "--set",
            "test.tta_rotations=2",
            "test.tta_flips=true",
            "--no-progress",
        ]
    )
    assert m["tta"]["passes"] == 4
    scenes = processed.split_scenes(root / "processed", "Area_2")
    _, miou, oa, _ = _brute_metrics(root, out / "predictions", scenes, len(m["class_names"]))
    assert m["miou"] == pytest.approx(miou, abs=1e-12) and m["oa"] == pytest.approx(oa, abs=1e-12)


def test_unlabelled_scoring_leaves_out_weak_voxels(trained, tmp_path):
    """test.score=unlabelled scores only points that share no voxel with a weak label."""
    path, root, _ = trained
    out = tmp_path / "unl"
    m = _test(
        [
            str(path),
            "--checkpoint",
            str(root / "run" / "checkpoints" / "last.pt"),
            "--split",
            "Area_1",
            "--out",
            str(out),
            "--set",
            "test.score=unlabelled",
            "--no-progress",
        ]
    )
    assert m["score"] == "unlabelled"
    k = len(m["class_names"])
    conf = np.zeros((k, k), dtype=np.int64)
    left_out = 0
    for s in processed.split_scenes(root / "processed", "Area_1"):
        scene = processed.read_scene(root / "processed", s)
        weak = processed.read_labels(root / "processed", "1%", s, num_points=len(scene.semantic))
        assert len(weak) > 0
        keys = [tuple(v) for v in np.floor(scene.coords.astype(np.float64) / 0.1).astype(np.int64)]
        weak_keys = {keys[i] for i in weak}
        pred = np.load(out / "predictions" / f"{s}.npz")["pred"]
        for i, (key, g) in enumerate(zip(keys, scene.semantic)):  # brute-force loop over points
            if key in weak_keys:
                left_out += int(g >= 0)
            elif g >= 0:
                conf[g, pred[i]] += 1
    assert left_out > 0
    assert np.array_equal(np.asarray(m["confusion"]), conf)
    assert m["num_points"] == conf.sum()
    with pytest.raises(ValueError, match="label_spec"):
        _test(
            [
                str(path),
                "--checkpoint",
                str(root / "run" / "checkpoints" / "last.pt"),
                "--out",
                str(tmp_path / "x"),
                "--set",
                "test.score=unlabelled",
                "data.label_spec=full",
                "--no-progress",
            ]
        )


def test_submission_files(trained, tmp_path):
    path, root, _ = trained
    ckpt = str(root / "run" / "checkpoints" / "last.pt")
    scenes = processed.split_scenes(root / "processed", "Area_2")
    # ScanNet: one NYU40 id per vertex
    _test(
        [
            str(path),
            "--checkpoint",
            ckpt,
            "--out",
            str(tmp_path / "sn"),
            "--no-progress",
            "--set",
            "data.dataset=scannet",
        ]
    )
    # SemanticKITTI: uint32 raw ids via learning_map_inv (learning id = class + 1)
    inv = {0: 0, **{i: 100 + 3 * i for i in range(1, 20)}}
    ypath = tmp_path / "semantic-kitti.yaml"
    ypath.write_text(yaml.safe_dump({"learning_map_inv": inv}))
    _test(
        [
            str(path),
            "--checkpoint",
            ckpt,
            "--out",
            str(tmp_path / "sk"),
            "--no-progress",
            "--set",
            "data.dataset=semantickitti",
            f"data.semantickitti_yaml={ypath}",
        ]
    )
    for s in scenes:
        pred = np.load(tmp_path / "sn" / "predictions" / f"{s}.npz")["pred"]
        lines = (tmp_path / "sn" / "submission" / f"{s}.txt").read_text().split()
        assert len(lines) == len(pred)
        assert [int(v) for v in lines] == [SCANNET_NYU40_IDS[p] for p in pred]
        raw = np.fromfile(tmp_path / "sk" / "submission" / f"{s}.label", dtype="<u4")
        assert raw.dtype == np.uint32 and raw.shape == pred.shape
        np.testing.assert_array_equal(raw, [inv[p + 1] for p in pred])


def test_train_init_fine_tunes_from_another_run(trained, tmp_path, capsys):
    """`pcseg train --init CKPT`: a new run starting from the network weights of `trained`."""
    path, root, _ = trained
    ckpt = root / "run" / "checkpoints" / "last.pt"
    run = tmp_path / "ft"
    summary = _train(
        [str(path), "--init", str(ckpt), "--set", f"run_dir={run}", "train.iterations=1"]
    )
    assert summary["finished"] and summary["iterations"] == 1
    assert "classifier kept (same class list)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # a usage error: argparse's usage line, exit 2
        main(["train", str(path), "--init", str(ckpt), "--resume"])
    assert e.value.code == 2


def test_predict_with_a_benchmark_checkpoint(trained, tmp_path):
    """`pcseg predict` with a checkpoint of a benchmark run (no CLASSES.yaml): the classes
    come from the checkpoint, the features are the benchmark's (RGB for S3DIS)."""
    from plyfile import PlyData, PlyElement

    path, root, _ = trained
    rng = np.random.default_rng(0)
    v = np.empty(
        500,
        dtype=[
            ("x", "f4"),
            ("y", "f4"),
            ("z", "f4"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
        ],
    )
    for c in ("x", "y", "z"):
        v[c] = rng.random(500) * 3
    for c in ("red", "green", "blue"):
        v[c] = rng.integers(0, 256, 500)
    ply = tmp_path / "scan.ply"
    PlyData([PlyElement.describe(v, "vertex")]).write(str(ply))
    ckpt = str(root / "run" / "checkpoints" / "last.pt")
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                ckpt,
                str(ply),
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 0
    )
    out = PlyData.read(str(tmp_path / "o" / "scan.ply"))["vertex"]
    assert len(out["pred_class"]) == 500 and out["pred_class"].max() < 13


def test_compare_methods_table(trained, tmp_path, capsys):
    """`pcseg compare`: 2 methods x 2 seeds on the tiny data; the table's numbers are
    the mean +- sample std of the per-run test mIoUs it also writes to JSON."""
    path, root, _ = trained
    base = yaml.safe_load(path.read_text())
    base["train"].update(iterations=2, log_every=1)
    cdir = tmp_path / "cfgs"
    cdir.mkdir()
    (cdir / "base.yaml").write_text(yaml.safe_dump(base))
    (cdir / "supervised.yaml").write_text(
        "_base_: base.yaml\nmethod: {_delete_: true, name: supervised}\n"
    )
    (cdir / "erda.yaml").write_text("_base_: base.yaml\nmethod: {name: erda, weight: 0.1}\n")
    assert (
        main(
            [
                "compare",
                "--config-dir",
                str(cdir),
                "--methods",
                "supervised,erda",
                "--seeds",
                "0,1",
                "--run-root",
                str(tmp_path / "runs"),
                "--out",
                str(tmp_path / "t.md"),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "r.json").read_text())
    assert set(res) == {"supervised", "erda"} and all(len(v) == 2 for v in res.values())
    table = (tmp_path / "t.md").read_text()
    for m, runs in res.items():
        v = [100 * r["miou"] for r in runs]
        assert f"| {m} | {np.mean(v):.2f} ± {np.std(v, ddof=1):.2f} |" in table
        for r in runs:
            got = json.loads((Path(r["run_dir"]) / "test" / "metrics.json").read_text())["miou"]
            assert got == r["miou"]
    assert res["erda"][0]["pseudo_acc_first_last"] is not None
    assert res["supervised"][0]["pseudo_acc_first_last"] is None
    assert json.loads((tmp_path / "r.json").read_text())["erda"][1]["seed"] == 1
    # a second call reuses the finished runs (no retraining): same numbers
    assert (
        main(
            [
                "compare",
                "--config-dir",
                str(cdir),
                "--methods",
                "erda",
                "--seeds",
                "0",
                "--run-root",
                str(tmp_path / "runs"),
                "--json",
                str(tmp_path / "r2.json"),
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "r2.json").read_text())
    assert again["erda"][0]["miou"] == res["erda"][0]["miou"]
    # the config changed under the finished runs: stop before training, say which and why
    (cdir / "erda.yaml").write_text("_base_: base.yaml\nmethod: {name: erda, weight: 0.3}\n")
    capsys.readouterr()
    argv = ["compare", "--config-dir", str(cdir), "--methods", "erda", "--seeds", "0,1"]
    assert main([*argv, "--run-root", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "runs" / "erda" / "seed_1") in err and "method.weight: 0.1 -> 0.3" in err


def test_real_kitti_scan_config_trains_and_scores_unlabelled_points(real_data, tmp_path):
    """configs/kitti_scan/erda.yaml end to end on the real scan (2 iterations): prepared from
    the raw layout, trained, and scored only on points that carry no 1 % label."""
    out = tmp_path / "run"
    sets = [
        f"data.raw={real_data / 'semantickitti'}",
        f"data.root={tmp_path / 'processed'}",
        "data.max_voxels=2000",
        "model.planes=[8,8,8,8,8,8,8,8]",
        "model.init_dim=8",
        "train.iterations=2",
        "train.val_every=0",
        "train.progress=false",
        "train.threads=1",
        f"run_dir={out}",
    ]
    summary = _train([str(REPO / "configs" / "kitti_scan" / "erda.yaml"), "--set", *sets])
    assert summary["finished"] and summary["method"] == "erda" and summary["label_spec"] == "1%"
    m = _test(
        [
            str(REPO / "configs" / "kitti_scan" / "erda.yaml"),
            "--checkpoint",
            str(out / "checkpoints" / "last.pt"),
            "--no-progress",
            "--set",
            *sets,
        ]
    )
    scene = processed.split_scenes(tmp_path / "processed", "train")
    assert m["score"] == "unlabelled" and m["scenes"] == scene == ["00_000000"]
    gt = processed.read_scene(tmp_path / "processed", scene[0]).semantic
    weak = processed.read_labels(tmp_path / "processed", "1%", scene[0], num_points=len(gt))
    labelled = int((gt >= 0).sum())
    # every weak label is left out (plus the other points of its voxel), nothing else
    assert labelled - m["num_points"] >= len(weak)
    assert m["num_points"] > 0.9 * labelled


def test_a_user_mistake_from_the_shell_shows_no_traceback(tmp_path):
    """``python -m pcseg`` as a user runs it: one stderr line and status 2; --debug: the
    traceback and status 1."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "pcseg", "test", "--checkpoint", str(tmp_path / "none.pt")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"pcseg: error: checkpoint {tmp_path / 'none.pt'} does not exist"
    d = subprocess.run(
        [*argv[:3], "--debug", *argv[3:]], capture_output=True, text=True, env=env, timeout=120
    )
    assert d.returncode == 1 and "Traceback (most recent call last)" in d.stderr
    assert d.stderr.strip().splitlines()[-1].startswith("FileNotFoundError: checkpoint")
