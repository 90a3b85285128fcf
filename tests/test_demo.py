"""The end-to-end demo (pcseg.workflows.demo, `pcseg demo`) on a tiny budget: every stage runs
for real."""
import json

import pytest

from pcseg.workflows.demo import run_demo


@pytest.mark.integration
def test_demo_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    res = run_demo(out, ["supervised", "erda"], 0, [
        f"data.root={tmp_path / 'processed'}", f"data.raw={tmp_path / 'raw'}",
        "data.synthetic={num_areas: 3, rooms_per_area: 1, seed: 0, spacing: 0.1}",
        "data.max_voxels=1500", "train.iterations=6", "train.val_every=6", "train.log_every=2",
        "train.checkpoint_every=6", "train.threads=1",
    ])
    printed = capsys.readouterr().out
    metrics = {m: json.loads((out / "runs" / m / "test" / "metrics.json").read_text()) for m in ("supervised", "erda")}
    # the table holds exactly the numbers of this run's metrics.json files
    for m, title in (("supervised", "supervised-only"), ("erda", "ERDA")):
        assert f"| {title} | {100 * metrics[m]['miou']:.1f} |" in res["table"]
    assert res["table"] in printed
    assert (out / "results.md").read_text().strip() == res["table"]
    for png in res["pictures"]:
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in res["pictures"]} == {
        "panel_supervised.png", "curves_supervised.png", "panel_erda.png", "curves_erda.png"}
