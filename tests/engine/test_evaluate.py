"""pcseg.engine.evaluate.evaluate on a tiny prepared synthetic S3DIS set (``prepared_rooms``).

A 3-iteration ERDA run on Area_1 gives the checkpoint; evaluate scores every original point
of Area_2. The reported scores are checked against a brute-force count over the written
predictions and the processed ground truth.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pcseg.config import config_from_dict
from pcseg.data import processed
from pcseg.engine.checkpoint import load_checkpoint, save_checkpoint
from pcseg.engine.evaluate import evaluate, tta_variants
from pcseg.engine.trainer import train


def _cfg(root: Path, run_dir: Path, **test_over):
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
                "val_split": "",
                "test_split": "Area_2",
            },
            "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
            "method": {"name": "erda", "weight": 0.1, "momentum": 0.9},
            "train": {
                "iterations": 3,
                "optimizer": "adamw",
                "lr": 0.01,
                "scheduler": "constant",
                "log_every": 1,
                "val_every": 0,
                "progress": False,
                "device": "cpu",
                "seed": 0,
            },
            "test": test_over,
            "run_dir": str(run_dir),
        },
        "tiny-eval",
    )


@pytest.fixture(scope="module")
def trained(prepared_rooms, tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, last.pt) of a short training run."""
    run = tmp_path_factory.mktemp("eval_run")
    train(_cfg(prepared_rooms, run))
    return run, run / "checkpoints" / "last.pt"


def _brute_force_scores(pred: np.ndarray, gt: np.ndarray, k: int) -> tuple[float, float, list]:
    """(mIoU, OA, per-class IoU with NaN for absent classes) by counting, class by class."""
    labelled = gt >= 0
    ious = []
    for c in range(k):
        tp = int(np.sum((gt == c) & (pred == c)))
        fp = int(np.sum(labelled & (gt != c) & (pred == c)))
        fn = int(np.sum((gt == c) & (pred != c)))
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else float("nan"))
    oa = int(np.sum(labelled & (pred == gt))) / int(labelled.sum())
    return float(np.nanmean(ious)), oa, ious


def test_metrics_match_the_written_predictions(prepared_rooms, trained, tmp_path):
    run, ckpt = trained
    cfg = _cfg(prepared_rooms, run)
    out = tmp_path / "test"
    m = evaluate(cfg, ckpt, out_dir=out, progress=False)
    on_disk = json.loads((out / "metrics.json").read_text())
    scenes = processed.split_scenes(prepared_rooms, "Area_2")
    assert on_disk["scenes"] == m["scenes"] and sorted(m["scenes"]) == sorted(scenes)
    assert on_disk["split"] == "Area_2" and on_disk["checkpoint"] == str(ckpt)
    # `pcseg view OUT` finds the processed scenes through data_root (issue 24 item 8)
    assert on_disk["data_root"] == str(Path(prepared_rooms).resolve())
    assert on_disk["label_spec"] == cfg.data.label_spec
    assert on_disk["iteration"] == 3 and on_disk["tta"]["passes"] == 1
    k = len(m["class_names"])
    assert k == 13 and on_disk["class_names"] == m["class_names"]
    preds, gts = [], []
    for name in m["scenes"]:
        with np.load(out / "predictions" / f"{name}.npz") as z:
            arrays = {key: z[key] for key in z.files}
        gt = processed.read_scene(prepared_rooms, name).semantic
        n = len(gt)
        assert set(arrays) == {"pred", "pseudo", "confidence", "entropy"}
        assert arrays["pred"].shape == (n,) and arrays["pred"].dtype == np.int64
        assert arrays["pseudo"].shape == (n,) and arrays["pseudo"].dtype == np.int64
        assert arrays["confidence"].dtype == np.float32 and arrays["entropy"].dtype == np.float32
        assert ((arrays["pred"] >= 0) & (arrays["pred"] < k)).all()
        assert ((arrays["pseudo"] >= 0) & (arrays["pseudo"] < k)).all()  # ERDA has a p
        assert ((arrays["confidence"] >= 1.0 / k - 1e-6) & (arrays["confidence"] <= 1 + 1e-6)).all()
        assert ((arrays["entropy"] >= -1e-6) & (arrays["entropy"] <= math.log(k) + 1e-5)).all()
        preds.append(arrays["pred"])
        gts.append(gt)
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    miou, oa, ious = _brute_force_scores(pred, gt, k)
    assert m["num_points"] == int((gt >= 0).sum())
    assert m["miou"] == pytest.approx(miou, rel=1e-12) and on_disk["miou"] == pytest.approx(miou)
    assert m["oa"] == pytest.approx(oa, rel=1e-12)
    np.testing.assert_allclose(m["iou"], ious, rtol=1e-12)
    absent = [m["per_class_iou"][n] is None for n in m["class_names"]]
    assert absent == [math.isnan(v) for v in ious]
    assert np.asarray(m["confusion"]).sum() == m["num_points"]
    # the folder opens in `pcseg view` with these predictions over the processed scenes
    from pcseg.viz.data import open_source

    src = open_source(out)
    assert src.scenes == sorted(m["scenes"])
    v = src.load(m["scenes"][0])
    np.testing.assert_array_equal(v.pred, preds[0])
    np.testing.assert_array_equal(v.semantic, gts[0])


def test_tta_passes_and_scores_from_their_predictions(prepared_rooms, trained, tmp_path):
    run, ckpt = trained
    cfg = _cfg(prepared_rooms, run, tta_rotations=2, tta_flips=True, submission=False)
    m = evaluate(cfg, ckpt, split="Area_2", out_dir=tmp_path / "tta", progress=False)
    assert m["tta"] == {"rotations": 2, "flips": True, "passes": 4}
    assert len(tta_variants(2, True)) == 4 and tta_variants(2, True)[0] is None
    pred = np.concatenate(
        [np.load(tmp_path / "tta" / "predictions" / f"{n}.npz")["pred"] for n in m["scenes"]]
    )
    gt = np.concatenate([processed.read_scene(prepared_rooms, n).semantic for n in m["scenes"]])
    miou, oa, _ = _brute_force_scores(pred, gt, len(m["class_names"]))
    assert m["miou"] == pytest.approx(miou, rel=1e-12) and m["oa"] == pytest.approx(oa, rel=1e-12)
    assert not (tmp_path / "tta" / "submission").exists()  # S3DIS has no submission format


def test_unlabelled_score_leaves_the_weakly_labelled_voxels_out(prepared_rooms, trained, tmp_path):
    run, ckpt = trained
    full = evaluate(
        _cfg(prepared_rooms, run, save_predictions=False),
        ckpt,
        out_dir=tmp_path / "all",
        progress=False,
    )
    part = evaluate(
        _cfg(prepared_rooms, run, score="unlabelled", save_predictions=False),
        ckpt,
        out_dir=tmp_path / "unl",
        progress=False,
    )
    weak = sum(len(processed.read_labels(prepared_rooms, "1%", n)) for n in full["scenes"])
    assert weak > 0 and 0 < part["num_points"] <= full["num_points"] - weak
    assert part["score"] == "unlabelled" and not (tmp_path / "unl" / "predictions").exists()
    cfg = _cfg(prepared_rooms, run, score="unlabelled")
    cfg.data.label_spec = "full"
    with pytest.raises(ValueError, match="test.score='unlabelled' needs a weak data.label_spec"):
        evaluate(cfg, ckpt, out_dir=tmp_path / "x", progress=False)


def test_evaluate_restores_the_thread_count_and_checks_the_checkpoint(
    prepared_rooms, trained, tmp_path
):
    run, ckpt = trained
    cfg = _cfg(prepared_rooms, run, save_predictions=False)
    cfg.train.threads = 2
    before = torch.get_num_threads()
    evaluate(cfg, ckpt, out_dir=tmp_path / "t", progress=False)
    assert torch.get_num_threads() == before
    state = load_checkpoint(ckpt)
    del state["feature_dim"]
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, state)
    with pytest.raises(ValueError, match="lacks 'feature_dim'"):
        evaluate(cfg, bad, out_dir=tmp_path / "b", progress=False)
    assert torch.get_num_threads() == before


def test_kitti_submission_layout(tmp_path):
    from pcseg.config import Config
    from pcseg.engine.evaluate import _write_submission

    cfg = Config()
    cfg.data.dataset = "semantickitti"
    y = tmp_path / "k.yaml"
    y.write_text(yaml.safe_dump({"learning_map_inv": {i: 10 + i for i in range(20)}}))
    cfg.data.semantickitti_yaml = str(y)
    p = _write_submission(cfg, tmp_path, tmp_path, "08_000123", np.array([0, 18, 5]), {})
    assert p == tmp_path / "submission" / "sequences" / "08" / "predictions" / "000123.label"
    np.testing.assert_array_equal(np.fromfile(p, dtype="<u4"), [11, 29, 16])
