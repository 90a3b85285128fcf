"""pcseg.benchmarks.voxelize: a tiny run."""

from __future__ import annotations

import json
import math

import pytest

from pcseg import benchmarks
from pcseg.benchmarks import voxelize


def test_voxelize_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / "v.json"
    assert (
        benchmarks.main(
            ["voxelize", "--points", "5000", "--repeats", "1", "--no-prepare", "--json", str(out)]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert set(res["cases"]) == {
        "numpy_baseline",
        "pcseg_train",
        "pcseg_test",
        "pcseg_mean",
        "pcseg_grid_only",
    }
    assert res["cases"]["numpy_baseline"]["speedup_vs_baseline"] == pytest.approx(1.0)
    for c in res["cases"].values():
        assert c["seconds"] > 0 and c["peak_mib"] > 0 and math.isfinite(c["speedup_vs_baseline"])
        assert c["points_per_second"] == pytest.approx(5000 / c["seconds"])
    assert "prepare_data" not in res and res["max_rss_mib"] > 0
    assert "x baseline" in capsys.readouterr().out
    coords, feats, labels = voxelize.lidar_like_cloud(1000, seed=3)
    assert coords.shape == (1000, 3) and feats.shape == (1000, 1) and labels.max() < 19
