"""pcseg.benchmarks.predict_engines: the structure of a tiny --vs-spconv run and the FLOP
count of the GEMM-bound limit against a hand computation (no wall-clock asserts)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from pcseg.benchmarks.predict_engines import Gemm, conv_gemms, gemm_limit_seconds, mm_rate
from pcseg.sparse import Conv3d, SparseTensor, SubMConv3d


def test_flops_of_one_submanifold_conv_by_hand():
    """Three voxels in a row along x, 0-1-2, and a 3x3x3 conv 3 -> 4: the centre offset
    pairs every voxel with itself (3 pairs), offset -x pairs 1->0 and 2->1, offset +x pairs
    0->1 and 1->2 (2 each): 7 pairs, 2 * 7 * 3 * 4 = 168 FLOPs; the linear head 4 -> 2 on
    3 rows adds 2 * 3 * 4 * 2 = 48."""
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 2, 0, 0]], dtype=torch.int32)
    conv, head = SubMConv3d(3, 4, 3), torch.nn.Linear(4, 2)
    model = torch.nn.ModuleDict({"conv": conv, "head": head})
    x = SparseTensor(coords, torch.randn(3, 3))
    gemms = conv_gemms(model, lambda: head(conv(x).feats))
    assert sorted(g.rows for g in gemms[:-1]) == [2, 2, 3]
    assert sum(g.flops for g in gemms[:-1]) == 168
    assert gemms[-1] == Gemm(3, 4, 2) and gemms[-1].flops == 48


def test_flops_of_a_strided_conv_by_hand():
    """Two voxels (0,0,0) and (1,0,0) go to one coarse voxel through offsets 0 and 1 of a
    k=2 s=2 conv 2 -> 5: 2 pairs, 2 * 2 * 2 * 5 = 40 FLOPs."""
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32)
    conv = Conv3d(2, 5, 2)
    x = SparseTensor(coords, torch.randn(2, 2))
    gemms = conv_gemms(conv, lambda: conv(x))
    assert [g.rows for g in gemms] == [1, 1] and sum(g.flops for g in gemms) == 40


def test_gemm_limit_is_flops_over_the_measured_rate():
    torch.set_num_threads(1)
    gemms = [Gemm(512, 16, 16)] * 3
    lim = gemm_limit_seconds(gemms, min_seconds=0.005)
    assert lim > 0 and math.isfinite(lim)
    assert mm_rate(512, 16, 16, min_seconds=0.005) > 0


def test_vs_spconv_run_prints_every_ratio(tmp_path, capsys):
    pytest.importorskip("spconv")
    from pcseg.benchmarks import main

    out = tmp_path / "engines.json"
    argv = ["predict", "--vs-spconv", "--sizes", "3000", "--voxel-budget", "1500"]
    argv += ["--gemm-sample-seconds", "0.001"]
    argv += ["--planes", "8", "--engines", "unfused,fused,spconv", "--engine-threads", "1,2"]
    assert main([*argv, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for col in ("/spconv", "/unfused", "/GEMM", "mem/spc", "labels=", "GEMM-bound limit"):
        assert col in text
    res = json.loads(out.read_text())
    (rec,) = res["results"]
    runs = {(r["engine"], r["threads"]) for r in rec["runs"]}
    assert runs == {("unfused", 1), ("fused", 1), ("spconv", 1), ("unfused", 2), ("fused", 2)}
    assert rec["tiles"] > 1 and rec["gemm_gflop"] > 0
    assert set(rec["gemm_limit_seconds"]) == {"1", "2"}
    for r in rec["runs"]:
        for k in ("points_per_second", "speed_vs_spconv", "speed_vs_unfused", "vs_gemm_limit"):
            assert r[k] is not None and math.isfinite(r[k]) and r[k] > 0, (k, r)
        assert r["labels_equal"] >= 0.999  # same weights, fp32: the same labels
    sp = next(r for r in rec["runs"] if r["engine"] == "spconv")
    assert sp["speed_vs_spconv"] == 1.0


def test_vs_spconv_rejects_unknown_engines():
    from pcseg.benchmarks import predict

    p = argparse.ArgumentParser()
    predict.add_arguments(p)
    args = p.parse_args(["--vs-spconv", "--sizes", "500", "--engines", "fused,tvm"])
    with pytest.raises(SystemExit, match="engines must be among"):
        predict.run(args)
