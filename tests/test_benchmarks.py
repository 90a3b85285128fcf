"""pcseg.benchmarks: the shared harness on hand examples, GEMM work accounting, run
configurations, the CLI, tiny end-to-end sparse / voxelize / prepare runs, gpu_check."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

from pcseg import benchmarks
from pcseg.benchmarks import gpu_check, harness, prepare, sparse, voxelize


# ----------------------------------------------------------------- harness
def test_summarize_and_time_repeats_on_a_fake_clock():
    assert harness.summarize([3.0, 1.0, 2.0, 10.0]) == {
        "min": 1.0,
        "median": 2.5,
        "times": [3.0, 1.0, 2.0, 10.0],
    }
    with pytest.raises(ValueError):
        harness.summarize([])
    # the clock advances by the duration of each call: 5 (warm-up, untimed), then 4, 1, 3
    durations = iter([5.0, 4.0, 1.0, 3.0])
    now = [0.0]
    calls = []

    def fn():
        calls.append(1)
        now[0] += next(durations)

    t = harness.time_repeats(fn, repeats=3, warmup=1, clock=lambda: now[0])
    assert len(calls) == 4
    assert t == {"min_s": 1.0, "median_s": 3.0, "times_s": [4.0, 1.0, 3.0]}
    with pytest.raises(ValueError):
        harness.time_repeats(fn, repeats=0)


def test_ratio_helpers():
    assert harness.ratio(3.0, 2.0) == 1.5
    assert harness.ratio(None, 2.0) is None and harness.ratio(3.0, None) is None
    assert harness.ratio(3.0, 0.0) is None  # no ratio invented
    times = {"ref": 2.0, "fast": 1.0, "slow": 8.0, "failed": None}
    assert harness.ratios_to(times, "ref") == {"ref": 1.0, "fast": 0.5, "slow": 4.0, "failed": None}
    assert harness.ratios_to(times, "ref", invert=True) == {
        "ref": 1.0,
        "fast": 2.0,
        "slow": 0.25,
        "failed": None,
    }


def test_table_formatting():
    cols = (harness.Column("name", 6), harness.Column("n", 7, ",d"), harness.Column("ms", 6, ".1f"))
    lines = harness.format_table(cols, [["a", 12345, 1.25], ["b", 7, None], "b raw line"])
    assert lines[0] == "  name       n     ms"
    assert lines[1] == "-" * len(lines[0])
    assert lines[2] == "     a  12,345    1.2"
    assert lines[3] == "     b       7    nan"
    assert lines[4] == "b raw line"


def test_peak_memory_sees_a_large_allocation():
    import numpy as np

    with harness.PeakMemory() as m:
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del a
    d = m.as_dict()
    assert set(d) == {"baseline_rss_mib", "peak_rss_mib", "peak_mib"}
    if d["peak_mib"] is not None:  # None where /proc/self/clear_refs is not writable
        assert d["peak_mib"] >= 60
    assert harness.tracemalloc_peak_mib(lambda: np.zeros(2**20)) >= 7.9  # 8 MiB


def test_run_worker_returns_the_result_or_the_error(tmp_path):
    # target(spec) runs in a fresh interpreter; builtins:dict echoes the spec through JSON
    spec = {"times": [2.0, 1.0, 4.0], "name": "x"}
    assert harness.run_worker("builtins:dict", spec, tmp_path, timeout=120, tag="ok") == spec
    bad = harness.run_worker(
        "pcseg.benchmarks.harness:no_such_function", {}, tmp_path, timeout=120, tag="bad"
    )
    assert "error" in bad and "no_such_function" in bad["error"]
    with pytest.raises(ValueError):
        harness.resolve("no_colon")


# ----------------------------------------------------------------- sparse
def test_gemm_flops_hand_worked():
    # (3 x 4) @ (4 x 5): 3 * 5 outputs, 4 multiply-adds each = 120 flops
    assert sparse.gemm_flops("aten::mm", [[3, 4], [4, 5]]) == 120
    # addmm_(acc (4 x 5), a (4 x 7), b (7 x 5)) = 2 * 4 * 7 * 5
    assert sparse.gemm_flops("aten::addmm_", [[4, 5], [4, 7], [7, 5], [], []]) == 280
    assert sparse.gemm_flops("aten::addmm", [[5], [4, 7], [7, 5], [], []]) == 280
    assert sparse.gemm_flops("aten::index_select", [[10, 4], [], [3]]) == 0
    assert sparse.gemm_flops("aten::mm", [[3, 4]]) == 0  # malformed shapes: no guess


def test_profile_counts_the_gemm_work_of_a_known_run(_one_thread):
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    acc, x, y = torch.zeros(8, 6), torch.randn(8, 5), torch.randn(5, 6)

    def run():
        for _ in range(3):
            torch.mm(a, b)
        acc.addmm_(x, y)

    prof = sparse.profile_step(run, torch.device("cpu"))
    expected = (3 * 2 * 64 * 32 * 16 + 2 * 8 * 5 * 6) / 1e9
    assert prof["gemm_gflop"] == pytest.approx(expected, rel=1e-12)
    assert prof["seconds"]["gemm"] > 0 and prof["gemm_gflop_per_s"] > 0


def test_configs_add_one_autocast_pcseg_run():
    base = sparse.configs(["pcseg", "spconv", "minkowski"], "cpu", 2)
    assert [c[0] for c in base] == [
        "pcseg_2t",
        "pcseg_1t",
        "spconv_2t",
        "spconv_1t",
        "minkowski_2t",
    ]
    assert {c[3] for c in base} == {"none"}
    amp = sparse.configs(["pcseg", "spconv"], "cpu", 2, "bf16")
    assert ("pcseg_2t_bf16", "pcseg", 2, "bf16") in amp
    assert [c for c in amp if c[3] != "none"] == [("pcseg_2t_bf16", "pcseg", 2, "bf16")]
    assert sparse.configs(["pcseg"], "cuda", 1, "fp16") == [
        ("pcseg", "pcseg", 1, "none"),
        ("pcseg_fp16", "pcseg", 1, "fp16"),
    ]


def test_case_ratios_on_hand_runs():
    def run(fwd, bwd, peak, cpu=None):
        return {
            "median_ms": {
                "forward": fwd,
                "backward": bwd,
                "total": fwd + bwd,
                "cpu": cpu if cpu is not None else fwd + bwd,
            },
            "peak_mib": peak,
        }

    runs = {
        "pcseg_2t": run(10, 20, 100),
        "pcseg_1t": run(15, 25, 90),
        "spconv_1t": run(30, 30, 200),
        "spconv_2t": run(20, 20, 150),
        "minkowski_2t": {"error": "boom"},
    }
    args = argparse.Namespace(threads=2, device="cpu", amp="none")
    r = sparse.case_ratios("b", runs, args)
    assert r["time_vs_spconv"] == pytest.approx(30 / 60)
    assert r["time_vs_spconv_same_threads"] == pytest.approx(30 / 40)
    assert r["time_1t_vs_spconv_1t"] == pytest.approx(40 / 60)
    assert r["memory_vs_spconv"] == pytest.approx(100 / 200)
    assert r["time_vs_minkowski"] is None and r["memory_vs_minkowski"] is None


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


# ----------------------------------------------------------------- voxelize / prepare
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


def test_prepare_benchmark_tiny(tmp_path):
    out = tmp_path / "p.json"
    assert (
        benchmarks.main(
            ["prepare", "--rooms", "1", "--areas", "1", "--workers", "1", "--json", str(out)]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert list(res["runs"]) == ["workers_1"] and res["reference"] == "workers_1"
    r = res["runs"]["workers_1"]
    assert r["exit_code"] == 0 and r["failed"] == 0 and r["scenes"] == 1 and r["points"] > 0
    assert r["peak_mib"] > 0 and r["speedup_vs_reference"] == pytest.approx(1.0)
    assert res["speedup_vs_reference"] == pytest.approx(1.0)
    assert prepare.LABELS == ("1%", "0.1%", "1pt")


# ----------------------------------------------------------------- gpu_check
def test_gpu_check_training_config_is_minkunet34c_under_autocast(tmp_path):
    from pcseg.config import load_config

    cfg = load_config(
        gpu_check.DEMO_CONFIG,
        gpu_check.train_overrides(
            tmp_path / "processed", tmp_path / "run", "cuda", 200, "bf16", 50_000
        ),
    )
    assert cfg.model.name == "MinkUNet34C" and cfg.model.planes is None
    assert cfg.model.init_dim is None
    assert cfg.train.amp is True and cfg.train.amp_dtype == "bf16"
    assert cfg.train.iterations == 200 and cfg.train.device == "cuda"
    assert cfg.data.max_voxels == 50_000 and str(cfg.data.root) == str(tmp_path / "processed")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit")
def test_gpu_check_exits_2_without_cuda(capsys):
    assert gpu_check.main([]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA" in out[0]


def test_predict_benchmark_tiny(tmp_path, capsys):
    from pcseg.benchmarks import predict

    p = argparse.ArgumentParser()
    predict.add_arguments(p)
    args = p.parse_args(
        [
            "--sizes",
            "3000,6000",
            "--voxel-budget",
            "1500",
            "--chunk-points",
            "2000",
            "--planes",
            "8",
            "--tmp",
            str(tmp_path),
            "--untiled-max-voxels",
            "4000",
        ]
    )
    res = predict.run(args)
    runs = res["runs"]
    assert not [r for r in runs if "error" in r], runs
    modes = sorted({(r["mode"], r["points"]) for r in runs})
    assert modes == [
        ("in_memory", 3000),
        ("in_memory", 6000),
        ("stream", 3000),
        ("stream", 6000),
        ("untiled", 3000),
    ]
    for r in runs:
        for k in (
            "points_per_second",
            "tiles",
            "voxels",
            "overlap_cost",
            "peak_rss_mib",
            "memory_vs_first",
            "speed_vs_first",
        ):
            assert k in r and math.isfinite(r[k]), (k, r)
        assert r["streamed"] == (r["mode"] == "stream")
        assert (r["tiles"] > 1) == (r["mode"] != "untiled")
    assert "mem/first" in capsys.readouterr().out


def test_las_to_binary_ply_keeps_every_point(tmp_path):
    import laspy
    from plyfile import PlyData

    from pcseg.benchmarks import predict

    las = predict.write_synthetic_las(tmp_path / "s.las", 2500, seed=3)
    ply = predict.las_to_binary_ply(las, tmp_path / "s.ply", chunk_points=1000)
    ref, back = laspy.read(str(las)), PlyData.read(str(ply))["vertex"]
    assert not PlyData.read(str(ply)).text and len(back.data) == 2500
    for k in ("x", "y", "z", "intensity", "classification"):
        np.testing.assert_array_equal(back[k], np.asarray(getattr(ref, k)))


def test_predict_benchmark_on_binary_ply(tmp_path):
    from pcseg.benchmarks import predict

    p = argparse.ArgumentParser()
    predict.add_arguments(p)
    args = p.parse_args(
        "--sizes 3000 --voxel-budget 1500 --chunk-points 2000 --planes 8 --no-in-memory "
        f"--untiled-max-voxels 0 --format ply --tmp {tmp_path}".split()
    )
    res = predict.run(args)
    assert res["format"] == "ply"
    (run,) = res["runs"]
    assert run["mode"] == "stream" and run["streamed"] and run["points"] == 3000, run
