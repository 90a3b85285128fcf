"""The simulated-user active-labelling study (pcseg.workflows.active, `pcseg active-study`):
the two users on a hand-made scene, and a tiny end-to-end study that resumes."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import yaml

from pcseg.cli.main import main
from pcseg.data import processed
from pcseg.workflows.active import (
    ScenePrediction,
    add_clicks,
    click_rng,
    random_clicks,
    simulate_round,
    suggested_clicks,
    true_rows,
)


def _scene():
    """A 10 m x 10 m floor of 10k points, 5 classes in 2 m stripes; confident everywhere
    except two 1.5 m squares, around (2, 8) and (8, 2), of high entropy and wrong prediction;
    a few points of class -1 inside one of them."""
    rng = np.random.default_rng(0)
    n, k = 10000, 5
    coords = np.concatenate([rng.random((n, 2)) * 10, np.zeros((n, 1))], axis=1)
    gt = (coords[:, 0] // 2).astype(np.int64) % k
    entropy = (rng.random(n) * 0.2).astype(np.float32)
    hot = np.zeros(n, dtype=bool)
    for cx, cy in ((2, 8), (8, 2)):
        hot |= (np.abs(coords[:, 0] - cx) < 0.75) & (np.abs(coords[:, 1] - cy) < 0.75)
    entropy[hot] = math.log(k) * rng.uniform(0.7, 1.0, hot.sum())
    pred = np.where(hot, (gt + 1) % k, gt)
    gt[np.flatnonzero(hot)[:5]] = -1
    return coords, gt, ScenePrediction(pred, entropy), hot, k


def test_suggested_clicks_land_in_the_uncertain_regions_spread_over_both():
    coords, gt, pr, hot, k = _scene()
    labelled = np.zeros(len(gt), dtype=bool)
    clicks = suggested_clicks(coords, gt, pr.scores(k), labelled, 4, cell=0.5)
    assert len(clicks) == 4 and len(set(clicks.tolist())) == 4
    assert hot[clicks].all() and (gt[clicks] >= 0).all()
    # spread: both squares get clicks, not one blob
    near = [np.linalg.norm(coords[clicks, :2] - c, axis=1) < 1.2 for c in ((2, 8), (8, 2))]
    assert near[0].any() and near[1].any()


def test_random_clicks_are_seeded_uniform_and_skip_labelled_and_unknown_points():
    coords, gt, _, _, _ = _scene()
    labelled = np.zeros(len(gt), dtype=bool)
    labelled[:100] = True
    a = random_clicks(gt, labelled, 50, click_rng(0, 1, "room"))
    b = random_clicks(gt, labelled, 50, click_rng(0, 1, "room"))
    c = random_clicks(gt, labelled, 50, click_rng(1, 1, "room"))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(set(a.tolist())) == 50 and not labelled[a].any() and (gt[a] >= 0).all()
    # uniform: 4000 clicks over the 4 quadrants of the floor, each about a quarter
    many = random_clicks(gt, labelled, 4000, click_rng(0, 2, "room"))
    q = (coords[many, 0] >= 5).astype(int) * 2 + (coords[many, 1] >= 5)
    frac = np.bincount(q, minlength=4) / len(many)
    assert np.all(np.abs(frac - 0.25) < 0.04)


def test_rounds_accumulate_never_repeat_and_both_users_click_equally_often():
    coords, gt, pr, _, k = _scene()
    ok = np.flatnonzero(gt >= 0)
    unknown = int(np.flatnonzero(gt < 0)[0])
    start = true_rows(np.array([ok[7], ok[3], ok[3], unknown, ok[11]]), gt)
    assert start[:, 0].tolist() == ok[[3, 7, 11]].tolist()  # sorted, unique, no class -1
    assert (start[:, 1] == gt[start[:, 0]]).all()
    for strategy in ("suggested", "random"):
        rows = start
        for rnd in range(1, 4):
            # 30 clicks: more than the uncertain cells, so the suggested user fills up
            clicks, new = simulate_round(
                strategy, coords, gt, rows, 30, pr, k, rng=click_rng(0, rnd, "room")
            )
            assert len(clicks) == 30
            assert len(new) == len(rows) + 30
            assert set(rows[:, 0].tolist()) <= set(new[:, 0].tolist())
            assert len(np.unique(new[:, 0])) == len(new) and np.all(np.diff(new[:, 0]) > 0)
            assert (new[:, 1] == gt[new[:, 0]]).all()
            rows = new
    with pytest.raises(ValueError, match="repeats"):
        add_clicks(start, start[:1, 0], gt)


@pytest.fixture()
def tiny_config(prepared_rooms, tmp_path):
    root = tmp_path / "processed"
    shutil.copytree(prepared_rooms, root)
    cfg = {
        "data": {
            "dataset": "s3dis",
            "root": str(root),
            "label_spec": "1%",
            "voxel_size": 0.1,
            "max_voxels": 600,
            "batch_size": 1,
            "num_workers": 0,
            "train_split": "Area_1",
            "val_split": "Area_2",
            "test_split": "Area_2",
            "prepare_splits": [],
        },
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "method": {"name": "erda", "weight": 0.1, "momentum": 0.5},
        "train": {
            "iterations": 2,
            "optimizer": "adamw",
            "lr": 0.01,
            "scheduler": "constant",
            "log_every": 1,
            "progress": False,
            "device": "cpu",
            "threads": 1,
            "val_every": 0,
        },
        "run_dir": str(tmp_path / "unused"),
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, root


def test_active_study_end_to_end_resumes(tiny_config, tmp_path):
    path, root = tiny_config
    args = [
        "active-study",
        "--config",
        str(path),
        "--start-spec",
        "1%",
        "--rounds",
        "1",
        "--clicks-per-round",
        "3",
        "--seeds",
        "0",
        "--run-root",
        str(tmp_path / "runs"),
        "--json",
        str(tmp_path / "r.json"),
        "--out",
        str(tmp_path / "t.md"),
        "--plot",
        str(tmp_path / "p.png"),
    ]
    assert main(args) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    runs = {(r["strategy"], r["round"]): r for r in res["runs"]}
    assert set(runs) == {(s, r) for s in ("suggested", "random") for r in (0, 1)}
    scenes = processed.split_scenes(root, "Area_1")
    for s in ("suggested", "random"):
        assert runs[(s, 1)]["clicks"] == 3 * len(scenes)
        assert runs[(s, 1)]["labels"] == runs[(s, 0)]["labels"] + 3 * len(scenes)
        assert runs[(s, 0)]["miou"] == runs[("random", 0)]["miou"]
        assert 0.0 <= runs[(s, 1)]["misclassified_fraction"] <= 1.0
    for sid in scenes:
        rows = np.load(processed.labels_path(root, "import:active_suggested_s0_r1", sid))
        assert rows.ndim == 2 and rows.shape[1] == 2
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "| 1 |" in (tmp_path / "t.md").read_text()
    # the same command again trains nothing: checkpoints untouched, same numbers
    ckpts = sorted((tmp_path / "runs").rglob("last.pt"))
    assert len(ckpts) == 3
    mtimes = [p.stat().st_mtime_ns for p in ckpts]
    assert main(args) == 0
    assert [p.stat().st_mtime_ns for p in ckpts] == mtimes
    assert json.loads((tmp_path / "r.json").read_text())["runs"] == res["runs"]
    # other settings for the same JSON are refused, not mixed in
    assert main([*args[:8], "4", *args[9:]]) == 2


def test_table_pairs_the_strategies_by_seed():
    from pcseg.workflows.active import format_active_table

    runs = [
        {
            "strategy": s,
            "seed": sd,
            "round": 1,
            "labels": 10,
            "misclassified_fraction": 0.5,
            "miou": m,
        }
        for s, sd, m in (
            ("suggested", 0, 0.5),
            ("suggested", 1, 0.4),
            ("random", 0, 0.3),
            ("random", 1, 0.3),
        )
    ]
    table = format_active_table({"runs": runs})
    row = table.splitlines()[2]
    assert row.startswith("| 1 | 10 | 45.0 ± 7.1 | s0 50.0, s1 40.0 | 50 % | 10 | 30.0 ± 0.0 |")
    assert row.endswith("| 15.0 ± 7.1 |")
