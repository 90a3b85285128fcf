"""pcseg.benchmarks.sparse (and the package parser): options, --real-data, a tiny
end-to-end run in worker processes."""

from __future__ import annotations

import json
import math

import pytest

from pcseg import benchmarks
from pcseg.benchmarks import sparse


def test_parser_has_one_subcommand_per_benchmark():
    assert set(benchmarks.BENCHMARKS) == {"sparse", "voxelize", "prepare", "predict"}
    for mod in benchmarks.BENCHMARKS.values():
        assert callable(mod.add_arguments) and callable(mod.run)
    p = benchmarks.build_parser()
    a = p.parse_args(["sparse", "--amp", "bf16", "--json", "bench_sparse.json"])
    assert (a.benchmark, a.amp, str(a.json), a.cases) == (
        "sparse",
        "bf16",
        "bench_sparse.json",
        "a,b,c",
    )
    assert set(sparse.CASES) == {"a", "b", "c"}
    a = p.parse_args(["predict", "--sizes", "2000000,5000000,10000000", "--voxel-budget", "100000"])
    assert (a.benchmark, a.voxel_budget, a.chunk_points) == ("predict", 100_000, 1_000_000)
    with pytest.raises(SystemExit):
        p.parse_args(["nonesuch"])


def test_sparse_benchmark_end_to_end_with_autocast(tmp_path):
    """Case a on a small crop, pcseg only, float32 and bf16 autocast, each in its own worker
    process: every configuration runs and the ratios are the quotients of the medians."""
    out = tmp_path / "b.json"
    rc = benchmarks.main(
        [
            "sparse",
            "--cases",
            "a",
            "--impls",
            "pcseg",
            "--voxels-a",
            "3000",
            "--room-spacing",
            "0.08",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--amp",
            "bf16",
            "--no-memory",
            "--json",
            str(out),
            "--timeout",
            "600",
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    for key in (
        "device",
        "threads",
        "cases",
        "notes",
        "ratio_vs_spconv",
        "amp",
        "loadavg_start",
        "loadavg_end",
        "skipped_impls",
    ):
        assert key in res
    runs = res["cases"]["a"]["runs"]
    assert set(runs) == {"pcseg_1t", "pcseg_1t_bf16"}
    for r in runs.values():
        assert "error" not in r, r
        assert r["voxels"] == 3000
        assert {"kmap", "forward", "backward", "cpu"} <= set(r["median_ms"])
        assert "peak_mib" in r and "baseline_rss_mib" in r
    med = {k: v["median_ms"]["forward"] + v["median_ms"]["backward"] for k, v in runs.items()}
    ratios = res["cases"]["a"]["ratios"]
    assert ratios["time_amp_vs_float32"] == pytest.approx(med["pcseg_1t_bf16"] / med["pcseg_1t"])
    assert math.isfinite(ratios["time_amp_vs_float32"]) and ratios["time_amp_vs_float32"] > 0
    assert ratios["time_vs_minkowski"] is None  # not measured: no ratio invented
    assert res["ratio_vs_spconv"] is None  # case b not run


def test_real_data_option_default_and_help(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PCSEG_REAL_DATA", str(tmp_path))
    assert benchmarks.build_parser().parse_args(["sparse"]).real_data == tmp_path
    monkeypatch.delenv("PCSEG_REAL_DATA")
    a = benchmarks.build_parser().parse_args(["sparse"])
    assert a.real_data is None and a.kitti is None
    with pytest.raises(SystemExit):
        benchmarks.build_parser().parse_args(["sparse", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--real-data DIR" in help_text and "$PCSEG_REAL_DATA" in help_text
    assert "skipped" in help_text


@pytest.mark.parametrize("given", ["none", "missing"])
def test_case_c_is_skipped_without_the_scan(monkeypatch, tmp_path, given):
    monkeypatch.delenv("PCSEG_REAL_DATA", raising=False)
    argv = ["sparse", "--cases", "c", "--impls", "pcseg", "--json", str(tmp_path / "c.json")]
    if given == "missing":
        argv += ["--real-data", str(tmp_path)]
    assert benchmarks.main(argv) == 0
    res = json.loads((tmp_path / "c.json").read_text())
    why = res["cases"]["c"]["skipped"]
    if given == "none":
        assert "--real-data DIR or $PCSEG_REAL_DATA" in why
    else:
        assert (
            why
            == f"{tmp_path / 'semantickitti/dataset/sequences/00/velodyne/000000.bin'} not found"
        )
    assert res["ratio_vs_spconv"] is None
