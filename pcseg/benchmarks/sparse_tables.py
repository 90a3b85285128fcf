"""Ratios and tables of the sparse benchmark's runs.

:func:`case_ratios` (pcseg / peer time and memory of one case), :func:`print_results` (the
table of every run and case b's headline ratios), and the progress lines of one timed run
(:func:`run_line`) or one profiled iteration (:func:`profile_lines`).
"""

from __future__ import annotations

import argparse
from typing import Any

from pcseg.benchmarks.harness import Column, print_table, ratio
from pcseg.benchmarks.sparse_runs import amp_label, ratio_labels


def run_time_ms(r: dict[str, Any] | None) -> float | None:
    """The time a ratio compares of one run: ``total`` for the models, ``forward + backward``
    for the conv (case a); None for a missing or failed run."""
    if not r or "error" in r:
        return None
    m = r["median_ms"]
    return m["total"] if "total" in m else m["forward"] + m["backward"]


def case_ratios(case: str, runs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """pcseg / peer ratios of one case (time: :func:`run_time_ms`; memory: ``peak_mib``)."""

    def t(label: str) -> float | None:
        return run_time_ms(runs.get(label))

    def part(label: str, key: str) -> float | None:
        r = runs.get(label)
        return None if not r or "error" in r else r["median_ms"].get(key)

    def mem(label: str) -> float | None:
        r = runs.get(label)
        return None if not r or "error" in r else r.get("peak_mib")

    n = args.threads
    lab = ratio_labels(args.device, n)
    ours, ours1, sp1, spn, me = (
        lab["ours"],
        lab["ours_1t"],
        lab["spconv_1t"],
        lab["spconv_nt"],
        lab["minkowski"],
    )
    out: dict[str, Any] = {
        "definition": f"{ours} / peer; time_vs_spconv uses {sp1}, time_vs_spconv_same_threads "
        f"uses {spn}, time_1t_vs_spconv_1t uses {ours1} / {sp1}",
        "time_vs_spconv": ratio(t(ours), t(sp1)),
        "time_vs_spconv_same_threads": ratio(t(ours), t(spn)),
        "time_1t_vs_spconv_1t": ratio(t(ours1), t(sp1)),
        "cpu_time_1t_vs_spconv_1t": ratio(part(ours1, "cpu"), part(sp1, "cpu")),
        "memory_vs_spconv": ratio(mem(ours), mem(sp1)),
        "time_vs_minkowski": ratio(t(ours), t(me)),
        "memory_vs_minkowski": ratio(mem(ours), mem(me)),
    }
    if args.amp != "none":
        amp = amp_label(args.device, n, args.amp)
        out["definition"] += f"; *_amp_* use {amp} (autocast {args.amp}) / the same float32 peers"
        out.update(
            {
                "time_amp_vs_float32": ratio(t(amp), t(ours)),
                "time_amp_vs_spconv": ratio(t(amp), t(sp1)),
                "time_amp_vs_minkowski": ratio(t(amp), t(me)),
                "memory_amp_vs_spconv": ratio(mem(amp), mem(sp1)),
                "memory_amp_vs_minkowski": ratio(mem(amp), mem(me)),
            }
        )
    if case == "a":
        for key in ("kmap", "forward", "backward"):
            out[f"{key}_vs_spconv"] = ratio(part(ours, key), part(sp1, key))
    return out


def headline_ratios(b: dict[str, Any], amp: str = "none") -> dict[str, Any]:
    """The top-level ratios from case b's :func:`case_ratios` ``b``: ``ratio_vs_spconv`` and
    ``memory_ratio_vs_spconv`` always (None when not measured), the MinkowskiEngine ones when
    measured, and with ``amp`` the measured ``ratio_amp_vs_*``."""
    out: dict[str, Any] = {
        "ratio_vs_spconv": b.get("time_vs_spconv"),
        "memory_ratio_vs_spconv": b.get("memory_vs_spconv"),
    }
    if b.get("time_vs_minkowski") is not None:
        out["ratio_vs_minkowski"] = b["time_vs_minkowski"]
        out["memory_ratio_vs_minkowski"] = b.get("memory_vs_minkowski")
    if amp != "none":
        for key in ("time_amp_vs_float32", "time_amp_vs_spconv", "time_amp_vs_minkowski"):
            if b.get(key) is not None:
                out[f"ratio_{key[len('time_') :]}"] = b[key]
    return out


#: columns of the result table
TABLE = (
    Column("case", 4),
    Column("config", 14),
    Column("voxels", 8, ",d"),
    Column("kmap ms", 9, ".1f"),
    Column("fwd ms", 9, ".1f"),
    Column("bwd ms", 9, ".1f"),
    Column("total ms", 9, ".1f"),
    Column("cpu ms", 9, ".1f"),
    Column("peak MiB", 9, ".0f"),
    Column("pcseg/this", 10, ".2f"),
)
#: headline keys printed under the table
HEADLINE = (
    "ratio_vs_spconv",
    "memory_ratio_vs_spconv",
    "ratio_vs_minkowski",
    "memory_ratio_vs_minkowski",
    "ratio_amp_vs_float32",
    "ratio_amp_vs_spconv",
    "ratio_amp_vs_minkowski",
)


def print_results(res: dict[str, Any]) -> None:
    """The table of every run (``pcseg/this``: the reference pcseg run's time over this run's)
    and case b's headline ratios."""
    print()
    print(
        f"sparse benchmark ({res['device']}, --threads {res['threads']}, median of "
        f"{res['repeats']} after {res['warmup']} warm-up; load average "
        f"{res.get('loadavg_start')} -> {res.get('loadavg_end')} on {res['cpu_count']} CPUs)"
    )
    rows: list[Any] = []
    for case, cr in res["cases"].items():
        if "skipped" in cr:
            rows.append(f"{case:>4s} skipped: {cr['skipped']}")
            continue
        runs = cr["runs"]
        ref_t = run_time_ms(runs.get(ratio_labels(res["device"], res["threads"])["ours"]))
        for label, r in runs.items():
            if "error" in r:
                rows.append(f"{case:>4s} {label:>14s} ERROR {r['error'][:80]}")
                continue
            m = r["median_ms"]
            tot = run_time_ms(r)
            rows.append(
                [
                    case,
                    label,
                    r["voxels"],
                    m.get("kmap"),
                    m["forward"],
                    m["backward"],
                    tot,
                    m.get("cpu"),
                    r.get("peak_mib"),
                    ratio(ref_t, tot),
                ]
            )
    print_table(TABLE, rows)
    for k in HEADLINE:
        if res.get(k) is not None:
            print(f"case b {k}: {res[k]:.3f}")


def run_line(label: str, r: dict[str, Any], seconds: float) -> str:
    """Progress line of one finished run (its medians and peak, or its error)."""
    if "error" in r:
        return f"[sparse]   {label}: ERROR {r['error']}"
    peak = f", peak {r['peak_mib']:.0f} MiB" if r.get("peak_mib") is not None else ""
    return (
        f"[sparse]   {label}: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in r["median_ms"].items())
        + peak
        + f"  ({seconds:.0f} s)"
    )


def profile_lines(name: str, threads: int, r: dict[str, Any]) -> list[str]:
    """Progress lines of one profiled iteration: the time per category, largest first, and
    the GEMM work (or the error)."""
    if "error" in r:
        return [f"[sparse]   profile {name}: ERROR {r['error']}"]
    pr = r["profile"]
    parts = ", ".join(
        f"{k} {v:.2f}s ({pr['percent'][k]:.0f}%)"
        for k, v in sorted(pr["seconds"].items(), key=lambda kv: -kv[1])
        if v > 0
    )
    lines = [
        f"[sparse]   profile {name} ({threads} thread{'s' if threads > 1 else ''}, one "
        f"iteration, wall {pr['wall_s']:.2f}s): {parts}"
    ]
    if pr.get("gemm_gflop"):
        rate = pr.get("gemm_gflop_per_s")
        lim = pr.get("vs_gemm_limit")
        lines.append(
            f"[sparse]   profile {name}: GEMM work {pr['gemm_gflop']:.1f} GFLOP"
            + (f" at {rate:.1f} GFLOP/s" if rate else "")
            + (f"; step / GEMM-bound limit {lim:.2f}x" if lim else "")
        )
    return lines
