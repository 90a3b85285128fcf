"""pcseg.benchmarks.sparse_runs: the run list and the labels the ratios compare."""

from __future__ import annotations

import pytest

from pcseg.benchmarks import sparse_runs


def test_configs_add_one_autocast_pcseg_run():
    base = sparse_runs.configs(["pcseg", "spconv", "minkowski"], "cpu", 2)
    assert [c[0] for c in base] == [
        "pcseg_2t",
        "pcseg_1t",
        "spconv_2t",
        "spconv_1t",
        "minkowski_2t",
    ]
    assert {c[3] for c in base} == {"none"}
    amp = sparse_runs.configs(["pcseg", "spconv"], "cpu", 2, "bf16")
    assert ("pcseg_2t_bf16", "pcseg", 2, "bf16") in amp
    assert [c for c in amp if c[3] != "none"] == [("pcseg_2t_bf16", "pcseg", 2, "bf16")]
    assert sparse_runs.configs(["pcseg"], "cuda", 1, "fp16") == [
        ("pcseg", "pcseg", 1, "none"),
        ("pcseg_fp16", "pcseg", 1, "fp16"),
    ]


@pytest.mark.parametrize(("device", "threads"), [("cpu", 2), ("cpu", 1), ("cuda", 4)])
def test_ratio_labels_name_runs_that_configs_makes(device, threads):
    made = {c[0] for c in sparse_runs.configs(["pcseg", "spconv", "minkowski"], device, threads)}
    lab = sparse_runs.ratio_labels(device, threads)
    assert set(lab.values()) <= made
    if device == "cpu" and threads == 2:
        assert lab == {
            "ours": "pcseg_2t",
            "ours_1t": "pcseg_1t",
            "spconv_1t": "spconv_1t",
            "spconv_nt": "spconv_2t",
            "minkowski": "minkowski_2t",
        }
    if threads == 1:
        assert lab["ours_1t"] == lab["ours"] == "pcseg_1t"
