"""`pcseg`'s label-budget study (pcseg.workflows.budget.run_budget_study) run for real on tiny
configs: runs reused, results accumulated, the transductive study scored on all points."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pcseg.data import processed
from pcseg.workflows.budget import (
    format_budget_matrix,
    format_budget_table,
    run_budget_study,
)
from pcseg.workflows.runs import StaleRunError

pytestmark = pytest.mark.integration


def _tiny_budget_configs(root, **test):
    """A two-area synthetic study folder with supervised.yaml and erda.yaml; returns it."""
    base = {
        "data": {
            "dataset": "s3dis",
            "root": str(root / "processed"),
            "raw": str(root / "raw"),
            "synthetic": {"num_areas": 2, "rooms_per_area": 1, "seed": 1, "spacing": 0.15},
            "prepare_splits": ["Area_1", "Area_2"],
            "voxel_size": 0.15,
            "max_voxels": 400,
            "batch_size": 1,
            "train_split": "Area_1",
            "val_split": "",
            "test_split": "Area_2",
        },
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "train": {"iterations": 2, "log_every": 1, "progress": False, "device": "cpu"},
        "test": test,
    }
    cdir = root / "cfgs"
    cdir.mkdir()
    (cdir / "base.yaml").write_text(yaml.safe_dump(base))
    (cdir / "supervised.yaml").write_text("_base_: base.yaml\nmethod: {name: supervised}\n")
    (cdir / "erda.yaml").write_text("_base_: base.yaml\nmethod: {name: erda, weight: 0.1}\n")
    return cdir


def test_budget_study_accumulates_and_reuses(tmp_path, capsys):
    root = tmp_path
    cdir = _tiny_budget_configs(root)
    js = root / "r.json"
    res = run_budget_study(
        cdir,
        ["supervised"],
        ["1pt", "full"],
        [0],
        root / "runs",
        json_out=js,
        table_out=root / "t.md",
        plot_out=root / "c.png",
    )
    assert set(res["budgets"]) == {"1pt", "full"}
    run = root / "runs" / "1pt" / "supervised" / "seed_0"
    got = json.loads((run / "test" / "metrics.json").read_text())["miou"]
    assert res["budgets"]["1pt"]["methods"]["supervised"][0]["miou"] == got
    assert res["budgets"]["1pt"]["methods"]["supervised"][0]["checkpoint"] == "last.pt"
    assert res["budgets"]["full"]["fraction"] > res["budgets"]["1pt"]["fraction"] > 0
    assert (root / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "c_val.png").read_bytes()[:4] == b"\x89PNG"  # validation curves
    stamp = (run / "summary.json").stat().st_mtime_ns
    # a second call adds a method; the finished supervised runs are reused, not retrained
    res2 = run_budget_study(cdir, ["erda"], ["1pt"], [0], root / "runs", json_out=js)
    assert (run / "summary.json").stat().st_mtime_ns == stamp
    assert set(res2["budgets"]["1pt"]["methods"]) == {"supervised", "erda"}
    assert json.loads(js.read_text()) == json.loads(json.dumps(res2))  # tuples become lists
    table = format_budget_table(res2)
    v = 100 * res2["budgets"]["1pt"]["methods"]["erda"][0]["miou"]
    assert "| 1pt | " in table and f"| erda | {np.round(v, 1):.1f} ± 0.0 |" in table
    # a setting that changes what is computed stops the study before anything trains,
    # naming the run and the setting; one that only changes speed reuses the run
    with pytest.raises(StaleRunError) as e:
        run_budget_study(
            cdir, ["supervised", "erda"], ["1pt"], [0], root / "runs", ["train.iterations=3"]
        )
    assert str(run) in str(e.value) and "train.iterations: 2 -> 3" in str(e.value)
    assert "--rerun" in str(e.value)
    assert (run / "summary.json").stat().st_mtime_ns == stamp
    run_budget_study(cdir, ["supervised"], ["1pt"], [0], root / "runs", ["train.threads=1"])
    assert (run / "summary.json").stat().st_mtime_ns == stamp
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(saved.replace("train:\n", "train:\n  lrr: 1\n", 1))
    with pytest.raises(StaleRunError, match="not a valid config now.*lrr"):
        run_budget_study(cdir, ["supervised"], ["1pt"], [0], root / "runs")
    (run / "config.yaml").write_text(saved)
    res3 = run_budget_study(
        cdir, ["supervised"], ["1pt"], [0], root / "runs", ["train.iterations=3"], rerun=True
    )
    assert json.loads((run / "summary.json").read_text())["iterations"] == 3
    assert (
        res3["budgets"]["1pt"]["methods"]["supervised"][0]["miou"]
        == json.loads((run / "test" / "metrics.json").read_text())["miou"]
    )


def test_transductive_budget_study_scores_full_on_all_points(tmp_path):
    # scored on the unlabelled points of the training area (as on the real KITTI scan): full
    # labels leave none, so the full ceiling is scored on every labelled point and marked
    root = tmp_path
    cdir = _tiny_budget_configs(root, score="unlabelled")
    cfg = yaml.safe_load((cdir / "base.yaml").read_text())
    cfg["data"]["test_split"] = "Area_1"
    (cdir / "base.yaml").write_text(yaml.safe_dump(cfg))
    res = run_budget_study(cdir, ["supervised"], ["1pt", "full"], [0], root / "runs")
    assert res["budgets"]["1pt"]["score"] == "unlabelled"
    assert res["budgets"]["full"]["score"] == "all"
    runs = root / "runs"
    m_1pt = json.loads(
        (runs / "1pt" / "supervised" / "seed_0" / "test" / "metrics.json").read_text()
    )
    m_full = json.loads(
        (runs / "full" / "supervised" / "seed_0" / "test" / "metrics.json").read_text()
    )
    assert m_1pt["score"] == "unlabelled" and m_full["score"] == "all"
    # the 1pt run leaves out its labelled points, the full run scores every labelled point
    n_labelled = sum(
        int(sum(processed.read_scene_info(root / "processed", sid)["class_counts"]))
        for sid in processed.split_scenes(root / "processed", ["Area_1"])
    )
    assert m_full["num_points"] == n_labelled > m_1pt["num_points"]
    table = format_budget_table(res)
    assert "| full † |" in table and "| 1pt |" in table and "† scored on every labelled" in table
    assert "| full † (100 %) |" in format_budget_matrix(res)
