"""tools/benchmark.py: GEMM work accounting, run configurations, a tiny end-to-end sparse run."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("pcseg_tools_benchmark", ROOT / "tools" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_gemm_flops_hand_worked(bench):
    # (3 x 4) @ (4 x 5): 3 * 5 outputs, 4 multiply-adds each = 120 flops
    assert bench.gemm_flops("aten::mm", [[3, 4], [4, 5]]) == 120
    # addmm_(acc (4 x 5), a (4 x 7), b (7 x 5)) = 2 * 4 * 7 * 5
    assert bench.gemm_flops("aten::addmm_", [[4, 5], [4, 7], [7, 5], [], []]) == 280
    assert bench.gemm_flops("aten::addmm", [[5], [4, 7], [7, 5], [], []]) == 280
    assert bench.gemm_flops("aten::index_select", [[10, 4], [], [3]]) == 0
    assert bench.gemm_flops("aten::mm", [[3, 4]]) == 0  # malformed shapes: no guess


def test_profile_counts_the_gemm_work_of_a_known_run(bench, _one_thread):
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    acc, x, y = torch.zeros(8, 6), torch.randn(8, 5), torch.randn(5, 6)

    def run():
        for _ in range(3):
            torch.mm(a, b)
        acc.addmm_(x, y)

    prof = bench._profile_step(run, torch.device("cpu"))
    expected = (3 * 2 * 64 * 32 * 16 + 2 * 8 * 5 * 6) / 1e9
    assert prof["gemm_gflop"] == pytest.approx(expected, rel=1e-12)
    assert prof["seconds"]["gemm"] > 0 and prof["gemm_gflop_per_s"] > 0


def test_configs_add_one_autocast_pcseg_run(bench):
    base = bench._configs(["pcseg", "spconv", "minkowski"], "cpu", 2)
    assert [c[0] for c in base] == ["pcseg_2t", "pcseg_1t", "spconv_2t", "spconv_1t", "minkowski_2t"]
    assert {c[3] for c in base} == {"none"}
    amp = bench._configs(["pcseg", "spconv"], "cpu", 2, "bf16")
    assert ("pcseg_2t_bf16", "pcseg", 2, "bf16") in amp
    assert [c for c in amp if c[3] != "none"] == [("pcseg_2t_bf16", "pcseg", 2, "bf16")]
    assert bench._configs(["pcseg"], "cuda", 1, "fp16") == [("pcseg", "pcseg", 1, "none"),
                                                            ("pcseg_fp16", "pcseg", 1, "fp16")]


def test_sparse_benchmark_end_to_end_with_autocast(bench, tmp_path):
    """Case a on a small crop, pcseg only, float32 and bf16 autocast, each in its own worker
    process: every configuration runs and the ratios are the quotients of the medians."""
    out = tmp_path / "b.json"
    rc = bench.main(["sparse", "--cases", "a", "--impls", "pcseg", "--voxels-a", "3000", "--room-spacing", "0.08",
                     "--repeats", "1", "--warmup", "1", "--threads", "1", "--amp", "bf16", "--no-memory",
                     "--json", str(out), "--timeout", "600"])
    assert rc == 0
    res = json.loads(out.read_text())
    runs = res["cases"]["a"]["runs"]
    assert set(runs) == {"pcseg_1t", "pcseg_1t_bf16"}
    for r in runs.values():
        assert "error" not in r, r
        assert r["voxels"] == 3000
    med = {k: v["median_ms"]["forward"] + v["median_ms"]["backward"] for k, v in runs.items()}
    ratios = res["cases"]["a"]["ratios"]
    assert ratios["time_amp_vs_float32"] == pytest.approx(med["pcseg_1t_bf16"] / med["pcseg_1t"])
    assert ratios["time_vs_minkowski"] is None  # not measured: no ratio invented
