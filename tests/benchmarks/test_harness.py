"""pcseg.benchmarks.harness: timing, memory, worker processes and tables on hand examples."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.benchmarks import harness


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


def test_worker_env():
    assert harness.worker_env(3) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    env = harness.worker_env(1, "passive", memory_pass=True)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["MALLOC_MMAP_THRESHOLD_"] == "131072"
    load = harness.loadavg()
    assert load is None or (len(load) == 3 and all(x >= 0 for x in load))
