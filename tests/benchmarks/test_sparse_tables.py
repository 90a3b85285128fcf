"""pcseg.benchmarks.sparse_tables: ratios of hand-made runs, headline and progress lines."""

from __future__ import annotations

import argparse

import pytest

from pcseg.benchmarks import sparse_tables


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
    r = sparse_tables.case_ratios("b", runs, args)
    assert r["time_vs_spconv"] == pytest.approx(30 / 60)
    assert r["time_vs_spconv_same_threads"] == pytest.approx(30 / 40)
    assert r["time_1t_vs_spconv_1t"] == pytest.approx(40 / 60)
    assert r["memory_vs_spconv"] == pytest.approx(100 / 200)
    assert r["time_vs_minkowski"] is None and r["memory_vs_minkowski"] is None


def test_headline_ratios_take_case_b():
    b = {"time_vs_spconv": 0.5, "memory_vs_spconv": 0.8, "time_vs_minkowski": None}
    assert sparse_tables.headline_ratios(b) == {
        "ratio_vs_spconv": 0.5,
        "memory_ratio_vs_spconv": 0.8,
    }
    b.update(time_vs_minkowski=0.7, memory_vs_minkowski=0.9, time_amp_vs_float32=0.6)
    h = sparse_tables.headline_ratios(b, "bf16")
    assert h["ratio_vs_minkowski"] == 0.7 and h["memory_ratio_vs_minkowski"] == 0.9
    assert h["ratio_amp_vs_float32"] == 0.6 and "ratio_amp_vs_spconv" not in h
    assert sparse_tables.headline_ratios({}) == {
        "ratio_vs_spconv": None,
        "memory_ratio_vs_spconv": None,
    }


def test_progress_lines():
    r = {"median_ms": {"forward": 1.25, "backward": 2.0}, "peak_mib": 12.4}
    assert sparse_tables.run_line("pcseg_1t", r, 3.2) == (
        "[sparse]   pcseg_1t: forward 1.2 ms, backward 2.0 ms, peak 12 MiB  (3 s)"
    )
    assert sparse_tables.run_line("x", {"error": "boom"}, 0) == "[sparse]   x: ERROR boom"
    prof = {
        "profile": {
            "seconds": {"gemm": 0.3, "gather": 0.1, "other": 0.0},
            "percent": {"gemm": 75.0, "gather": 25.0, "other": 0.0},
            "wall_s": 0.5,
            "gemm_gflop": 2.0,
            "gemm_gflop_per_s": 6.666,
            "vs_gemm_limit": 1.3333,
        }
    }
    assert sparse_tables.profile_lines("pcseg", 1, prof) == [
        "[sparse]   profile pcseg (1 thread, one iteration, wall 0.50s): "
        "gemm 0.30s (75%), gather 0.10s (25%)",
        "[sparse]   profile pcseg: GEMM work 2.0 GFLOP at 6.7 GFLOP/s; "
        "step / GEMM-bound limit 1.33x",
    ]
