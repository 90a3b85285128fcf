"""pcseg.benchmarks.prepare: a tiny run."""

from __future__ import annotations

import json

import pytest

from pcseg import benchmarks
from pcseg.benchmarks import prepare


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
