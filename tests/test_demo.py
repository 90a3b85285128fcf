"""The end-to-end demo (pcseg.workflows.demo, `pcseg demo`) on a tiny budget: every stage runs
for real."""

import json

import numpy as np
import pytest

from pcseg.workflows.demo import run_demo


@pytest.mark.integration
def test_demo_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    res = run_demo(
        out,
        ["supervised", "erda"],
        0,
        [
            f"data.root={tmp_path / 'processed'}",
            f"data.raw={tmp_path / 'raw'}",
            "data.synthetic={num_areas: 4, rooms_per_area: 1, seed: 0, spacing: 0.1}",
            "data.max_voxels=1500",
            "train.iterations=6",
            "train.val_every=6",
            "train.log_every=2",
            "train.checkpoint_every=6",
            "train.threads=1",
        ],
    )
    printed = capsys.readouterr().out
    # the table holds exactly the numbers of this run's metrics.json files: the full-label
    # ceiling, then each method at 1 % and 0.1 %
    rows = [("full", "supervised", "supervised-only (full-label ceiling)")] + [
        (b, m, t)
        for b in ("1%", "0.1%")
        for m, t in (("supervised", "supervised-only"), ("erda", "ERDA"))
    ]
    for b, m, title in rows:
        d = {"full": "full", "1%": "1pct", "0.1%": "0.1pct"}[b]
        metrics = json.loads((out / "runs" / d / m / "test" / "metrics.json").read_text())
        assert f"| {b} | {title} | {100 * metrics['miou']:.1f} |" in res["table"]
    assert len(res["results"]) == 5
    assert res["table"] in printed
    assert (out / "results.md").read_text().strip() == res["table"]
    for png in res["pictures"]:
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in res["pictures"]} == {
        "panel_supervised.png",
        "curves_supervised.png",
        "panel_erda.png",
        "curves_erda.png",
    }


def test_demo_validates_on_its_own_area():
    """best.pt is chosen on a validation area, never on the test area it is scored with; the
    training areas stay Area_1 + Area_2."""
    from conftest import REPO

    from pcseg.config import load_config

    for name in ("erda", "supervised"):
        d = load_config(REPO / "configs" / "demo" / f"{name}.yaml", []).data
        assert (d.train_split, d.val_split, d.test_split) == ("Area_1+Area_2", "Area_4", "Area_3")
        assert (
            d.synthetic is not None and d.synthetic.num_areas == 4 and "Area_4" in d.prepare_splits
        )


def test_prepare_if_missing_adds_a_new_validation_area(tmp_path):
    """An old demo folder (3 areas) gets the added area: generated and prepared; the first
    areas are the same rooms (one seed, areas drawn in order)."""
    from pcseg.config import Config
    from pcseg.data import processed
    from pcseg.readers.synthetic import SyntheticRooms
    from pcseg.workflows.prepare import prepare_if_missing

    cfg = Config()
    cfg.data.dataset, cfg.data.root = "s3dis", str(tmp_path / "p")
    cfg.data.raw = str(tmp_path / "r")
    cfg.data.label_spec, cfg.data.voxel_size = "1%", 0.1
    cfg.data.synthetic = SyntheticRooms(num_areas=2, rooms_per_area=1, seed=0, spacing=0.15)
    cfg.data.prepare_splits = ["Area_1", "Area_2"]
    prepare_if_missing(cfg)
    first = processed.split_scenes(tmp_path / "p", "Area_1")[0]
    before = processed.read_scene(tmp_path / "p", first)
    cfg.data.synthetic = cfg.data.synthetic.model_copy(update={"num_areas": 3})
    cfg.data.prepare_splits = ["Area_1", "Area_2", "Area_3"]
    prepare_if_missing(cfg)
    meta = processed.read_meta(tmp_path / "p")
    assert set(meta["splits"]) == {"Area_1", "Area_2", "Area_3"}
    after = processed.read_scene(tmp_path / "p", first)
    np.testing.assert_array_equal(before.coords, after.coords)
