"""pcseg.benchmarks.predict: tiny tiled / streamed runs and the LAS -> PLY conversion."""

from __future__ import annotations

import argparse
import math

import numpy as np


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
