"""Grid-sampling throughput: pcseg.data.voxelize vs the plain numpy baseline.

    python -m pcseg.benchmarks voxelize [--points N] [--voxel-size 0.05] [--repeats 3]
        [--no-prepare] [--prepare-workers 2] [--rooms N] [--json FILE]

pcseg train / test / mean / grid-only modes against ``floor`` + ``np.unique(axis=0,
return_inverse=True)`` (:func:`pcseg.data.voxelize.voxelize_baseline`, the reference of the
``speedup_vs_baseline`` ratios) on a LiDAR-like +-80 m cloud: best-of-``--repeats`` seconds,
points/s and the tracemalloc peak of each case, then (unless ``--no-prepare``) one prepare
throughput run on the synthetic S3DIS set (:mod:`pcseg.benchmarks.prepare`).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.benchmarks import prepare
from pcseg.benchmarks.harness import (
    Column,
    max_rss_mib,
    print_table,
    ratio,
    time_repeats,
    tracemalloc_peak_mib,
)

#: the case every ``speedup_vs_baseline`` is taken against
REFERENCE = "numpy_baseline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the ``voxelize`` subcommand."""
    p.add_argument("--points", type=int, default=2_000_000)
    p.add_argument("--voxel-size", type=float, default=0.05)
    p.add_argument("--repeats", type=int, default=3, help="best of N timings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write results to this JSON file")
    p.add_argument(
        "--no-prepare", dest="prepare", action="store_false", help="skip the prepare throughput run"
    )
    p.add_argument("--prepare-workers", type=int, default=2)
    p.add_argument(
        "--rooms", type=int, default=None, help="synthetic rooms per area (generator default)"
    )


def lidar_like_cloud(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A surface-like +-80 m LiDAR-style scan: ~60% ground rings (density ~ 1/r), ~40% on
    vertical facades / poles. Returns coords (n, 3) float32, remission (n, 1) float32,
    labels (n,) int64 in [0, 19)."""
    rng = np.random.default_rng(seed)
    n_ground = int(n * 0.6)
    n_wall = n - n_ground
    r = np.exp(rng.uniform(np.log(3.0), np.log(80.0), n_ground))
    th = rng.uniform(-np.pi, np.pi, n_ground)
    ground = np.stack([r * np.cos(th), r * np.sin(th), -1.73 + rng.normal(0, 0.03, n_ground)], 1)
    # 200 facades: random segments at 5-79 m, 0-8 m high
    k = 200
    cen = rng.uniform(-75, 75, (k, 2))
    ang = rng.uniform(0, np.pi, k)
    length = rng.uniform(2, 30, k)
    which = rng.integers(0, k, n_wall)
    t = rng.uniform(-0.5, 0.5, n_wall) * length[which]
    walls = np.stack(
        [
            cen[which, 0] + t * np.cos(ang[which]),
            cen[which, 1] + t * np.sin(ang[which]),
            rng.uniform(-1.73, 6.0, n_wall),
        ],
        1,
    )
    walls[:, :2] += rng.normal(0, 0.02, (n_wall, 2))
    coords = np.concatenate([ground, walls]).astype(np.float32)
    coords = np.clip(coords, -80, 80)
    labels = np.concatenate([rng.choice([8, 9, 10, 16], n_ground), 12 + which % 7]).astype(np.int64)
    remission = rng.random((n, 1)).astype(np.float32)
    perm = rng.permutation(n)
    return coords[perm], remission[perm], labels[perm]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Grid-sampling throughput vs the numpy baseline, peak memory, prepare throughput."""
    from pcseg.data.voxelize import voxelize, voxelize_baseline

    if args.points < 1 or args.repeats < 1:
        raise SystemExit("voxelize: --points >= 1 and --repeats >= 1 are required")
    coords, feats, labels = lidar_like_cloud(args.points, args.seed)
    vs = args.voxel_size
    keep = np.random.default_rng(1).choice(args.points, max(args.points // 1000, 1), replace=False)
    cases: dict[str, Callable[[], Any]] = {
        REFERENCE: lambda: voxelize_baseline(coords, vs),
        "pcseg_train": lambda: voxelize(
            coords, vs, "train", feats=feats, labels=labels, keep=keep, rng=0
        ),
        "pcseg_test": lambda: voxelize(coords, vs, "test", feats=feats, labels=labels),
        "pcseg_mean": lambda: voxelize(coords, vs, "mean", feats=feats, labels=labels),
        "pcseg_grid_only": lambda: voxelize(coords, vs, "test"),
    }
    n_vox = voxelize(coords, vs, "test").num_voxels
    extent = [float(coords[:, i].max() - coords[:, i].min()) for i in range(3)]
    res: dict[str, Any] = {
        "points": args.points,
        "voxels": n_vox,
        "voxel_size": vs,
        "extent_m": extent,
        "reference": REFERENCE,
        "cases": {},
    }
    for name, fn in cases.items():
        t = time_repeats(fn, args.repeats if name != REFERENCE else max(1, args.repeats // 2))
        res["cases"][name] = {
            "seconds": t["min_s"],
            "median_seconds": t["median_s"],
            "points_per_second": args.points / t["min_s"],
            "peak_mib": tracemalloc_peak_mib(fn),
        }
    base = res["cases"][REFERENCE]
    for c in res["cases"].values():
        c["speedup_vs_baseline"] = ratio(base["seconds"], c["seconds"])
        c["memory_vs_baseline"] = ratio(c["peak_mib"], base["peak_mib"])
    res["max_rss_mib"] = max_rss_mib()
    print(
        f"grid sampling of {args.points:,} points at {vs} m -> {n_vox:,} voxels "
        f"(extent {extent[0]:.0f} x {extent[1]:.0f} x {extent[2]:.0f} m)"
    )
    cols = (
        Column("case", 18),
        Column("seconds", 9, ".3f"),
        Column("Mpoints/s", 10, ".2f"),
        Column("x baseline", 10, ".2f"),
        Column("peak MiB", 9, ".1f"),
        Column("mem/base", 9, ".2f"),
    )
    print_table(
        cols,
        [
            [
                name,
                c["seconds"],
                c["points_per_second"] / 1e6,
                c["speedup_vs_baseline"],
                c["peak_mib"],
                c["memory_vs_baseline"],
            ]
            for name, c in res["cases"].items()
        ],
    )
    print(f"process max RSS {res['max_rss_mib']:.0f} MiB")
    if args.prepare:
        with tempfile.TemporaryDirectory(prefix="pcseg_bench_") as tmpdir:
            tmp = Path(tmpdir)
            prepare.write_raw(tmp / "raw", args.rooms)
            res["prepare_data"] = prepare.bench_once(tmp / "raw", tmp, args.prepare_workers)
        print(f"prepare (synthetic S3DIS) {prepare.describe(res['prepare_data'])}")
    return res
