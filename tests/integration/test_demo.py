"""The end-to-end demo (pcseg.workflows.demo, `pcseg demo`) on a tiny budget: every stage runs
for real."""

import json

import pytest

from pcseg.workflows.demo import run_demo

pytestmark = pytest.mark.integration


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
