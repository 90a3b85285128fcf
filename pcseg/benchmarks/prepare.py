"""Prepare throughput: :func:`pcseg.readers.prepare.prepare_dataset` on synthetic S3DIS rooms.

    python -m pcseg.benchmarks prepare [--workers 2] [--reference-workers 1] [--rooms N]
        [--json FILE]

The raw rooms are written once (pcseg.readers.synthetic.write_synthetic_s3dis); every run
prepares them into its own folder in its own worker process
(:func:`pcseg.benchmarks.harness.run_worker`), with the weak-label specs ``1% 0.1% 1pt``.
Reported: points/s, the peak RSS of the run (the worker and, with ``--workers > 1``, its
largest pool process), and the speed-up / memory ratio against the ``--reference-workers``
run of the same command.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from pcseg.benchmarks.harness import Column, max_rss_mib, print_table, ratio, run_worker

#: weak-label specs drawn by every run
LABELS = ("1%", "0.1%", "1pt")
#: worker target of one run
WORKER = "pcseg.benchmarks.prepare:measure"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the ``prepare`` subcommand."""
    p.add_argument("--workers", type=int, default=2, help="prepare worker processes")
    p.add_argument(
        "--reference-workers",
        type=int,
        default=1,
        help="worker count of the reference run the ratios are taken against "
        "(equal to --workers: one run only)",
    )
    p.add_argument(
        "--rooms", type=int, default=None, help="synthetic rooms per area (generator default)"
    )
    p.add_argument("--areas", type=int, default=None, help="synthetic areas (generator default)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per prepare run")
    p.add_argument("--json", type=Path, default=None, help="write results to this JSON file")


def write_raw(raw: Path, rooms: int | None = None, areas: int | None = None) -> None:
    """The synthetic S3DIS raw folder every run prepares."""
    from pcseg.readers.synthetic import write_synthetic_s3dis

    kwargs: dict[str, Any] = {}
    if rooms is not None:
        kwargs["rooms_per_area"] = rooms
    if areas is not None:
        kwargs["num_areas"] = areas
    write_synthetic_s3dis(raw, **kwargs)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One prepare run (worker target): ``spec`` = raw, out, workers, labels."""
    from pcseg.readers.prepare import PrepareError, PrepareOptions, prepare_dataset

    opts = PrepareOptions(
        dataset="s3dis",
        raw=Path(spec["raw"]),
        out=Path(spec["out"]),
        labels=list(spec["labels"]),
        workers=int(spec["workers"]),
    )
    t0 = time.perf_counter()
    try:
        s = prepare_dataset(opts)
        code, error = 0, None
    except PrepareError as e:
        code, error = 1, str(e)
        s = {"scenes": 0, "points": 0, "failed": None}
    wall = time.perf_counter() - t0
    own = max_rss_mib()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    res = {
        "exit_code": code,
        "workers": opts.workers,
        "scenes": s["scenes"],
        "points": s["points"],
        "seconds": wall,
        "points_per_second": s["points"] / wall if wall > 0 else 0.0,
        "failed": s["failed"],
        "peak_rss_mib": own,
        "children_peak_rss_mib": children,
        "peak_mib": max(own, children),
    }
    if error is not None:
        res["error_message"] = error
    return res


def bench_once(
    raw: Path, tmp: Path, workers: int, timeout: float = 3600, labels: tuple[str, ...] = LABELS
) -> dict[str, Any]:
    """Prepare ``raw`` into ``tmp/out_<workers>`` with ``workers`` processes, in a worker
    process; returns :func:`measure`'s result (or ``{"error": ...}``)."""
    spec = {
        "raw": str(raw),
        "out": str(tmp / f"out_{workers}"),
        "workers": workers,
        "labels": list(labels),
    }
    return run_worker(WORKER, spec, tmp, timeout, tag=f"prepare_{workers}")


def describe(p: dict[str, Any]) -> str:
    """One line about one run."""
    if "error" in p:
        return f"ERROR {p['error']}"
    return (
        f"--workers {p['workers']}: {p['scenes']} scenes, {p['points']:,} points in "
        f"{p['seconds']:.2f}s = {p['points_per_second']:,.0f} points/s, "
        f"peak RSS {p['peak_mib']:.0f} MiB"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare throughput at ``--workers`` and at ``--reference-workers`` (the reference)."""
    if args.workers < 1 or args.reference_workers < 1:
        raise SystemExit("prepare: --workers >= 1 and --reference-workers >= 1 are required")
    counts = list(dict.fromkeys([args.reference_workers, args.workers]))
    res: dict[str, Any] = {
        "dataset": "s3dis (pcseg.readers.synthetic)",
        "labels": list(LABELS),
        "reference": f"workers_{args.reference_workers}",
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="pcseg_bench_prepare_") as tmpdir:
        tmp = Path(tmpdir)
        write_raw(tmp / "raw", args.rooms, args.areas)
        for n in counts:
            r = bench_once(tmp / "raw", tmp, n, args.timeout)
            res["runs"][f"workers_{n}"] = r
            print(f"[prepare] {describe(r)}")
    ref = res["runs"][res["reference"]]

    def get(r: dict[str, Any], key: str) -> float | None:
        return None if "error" in r else r.get(key)

    for r in res["runs"].values():
        r["speedup_vs_reference"] = ratio(get(ref, "seconds"), get(r, "seconds"))
        r["memory_vs_reference"] = ratio(get(r, "peak_mib"), get(ref, "peak_mib"))
    main = res["runs"][f"workers_{args.workers}"]
    res["speedup_vs_reference"] = main["speedup_vs_reference"]
    res["memory_vs_reference"] = main["memory_vs_reference"]
    print()
    print(
        f"prepare throughput (synthetic S3DIS, labels {' '.join(LABELS)}; reference "
        f"{res['reference']})"
    )
    cols = (
        Column("run", 11),
        Column("scenes", 7, "d"),
        Column("points", 11, ",d"),
        Column("seconds", 8, ".2f"),
        Column("points/s", 11, ",.0f"),
        Column("peak MiB", 9, ".0f"),
        Column("x ref", 6, ".2f"),
        Column("mem/ref", 8, ".2f"),
    )
    rows: list[Any] = []
    for name, r in res["runs"].items():
        if "error" in r:
            rows.append(f"{name:>11s} ERROR {r['error'][:80]}")
        else:
            rows.append(
                [
                    name,
                    r["scenes"],
                    r["points"],
                    r["seconds"],
                    r["points_per_second"],
                    r["peak_mib"],
                    r["speedup_vs_reference"],
                    r["memory_vs_reference"],
                ]
            )
    print_table(cols, rows)
    return res
