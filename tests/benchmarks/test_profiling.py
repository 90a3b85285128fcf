"""pcseg.benchmarks.profiling: GEMM work accounting by hand and on a profiled run."""

from __future__ import annotations

import pytest
import torch

from pcseg.benchmarks import profiling


def test_gemm_flops_hand_worked():
    # (3 x 4) @ (4 x 5): 3 * 5 outputs, 4 multiply-adds each = 120 flops
    assert profiling.gemm_flops("aten::mm", [[3, 4], [4, 5]]) == 120
    # addmm_(acc (4 x 5), a (4 x 7), b (7 x 5)) = 2 * 4 * 7 * 5
    assert profiling.gemm_flops("aten::addmm_", [[4, 5], [4, 7], [7, 5], [], []]) == 280
    assert profiling.gemm_flops("aten::addmm", [[5], [4, 7], [7, 5], [], []]) == 280
    assert profiling.gemm_flops("aten::index_select", [[10, 4], [], [3]]) == 0
    assert profiling.gemm_flops("aten::mm", [[3, 4]]) == 0  # malformed shapes: no guess


def test_profile_counts_the_gemm_work_of_a_known_run(_one_thread):
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    acc, x, y = torch.zeros(8, 6), torch.randn(8, 5), torch.randn(5, 6)

    def run():
        for _ in range(3):
            torch.mm(a, b)
        acc.addmm_(x, y)

    prof = profiling.profile_step(run, torch.device("cpu"))
    expected = (3 * 2 * 64 * 32 * 16 + 2 * 8 * 5 * 6) / 1e9
    assert prof["gemm_gflop"] == pytest.approx(expected, rel=1e-12)
    assert prof["seconds"]["gemm"] > 0 and prof["gemm_gflop_per_s"] > 0
    want = prof["profiled_self_s"] / prof["seconds"]["gemm"]
    assert prof["vs_gemm_limit"] == pytest.approx(want) and prof["vs_gemm_limit"] >= 1
