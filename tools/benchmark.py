#!/usr/bin/env python
"""Benchmarks.

    python tools/benchmark.py voxelize [--points N] [--json FILE]
        grid sampling points/s (pcseg train / test / mean modes vs the plain numpy baseline
        ``floor`` + ``np.unique(axis=0, return_inverse=True)``) on a LiDAR-like +-80 m cloud,
        with peak memory, then tools/prepare_data.py throughput on the synthetic S3DIS set.
    python tools/benchmark.py sparse [...]
        sparse convolution benchmark (bench_sparse).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pcseg.utils.io import atomic_write_json


# ============================================================================ voxelize
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
    walls = np.stack([cen[which, 0] + t * np.cos(ang[which]), cen[which, 1] + t * np.sin(ang[which]),
                      rng.uniform(-1.73, 6.0, n_wall)], 1)
    walls[:, :2] += rng.normal(0, 0.02, (n_wall, 2))
    coords = np.concatenate([ground, walls]).astype(np.float32)
    coords = np.clip(coords, -80, 80)
    labels = np.concatenate([rng.choice([8, 9, 10, 16], n_ground), 12 + which % 7]).astype(np.int64)
    remission = rng.random((n, 1)).astype(np.float32)
    perm = rng.permutation(n)
    return coords[perm], remission[perm], labels[perm]


def _time(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _peak_mib(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def _bench_prepare(workers: int, rooms: int | None) -> dict[str, Any]:
    """tools/prepare_data.py on the synthetic S3DIS set (data_prep.synthetic)."""
    try:
        from data_prep import synthetic
    except ImportError as e:
        return {"skipped": f"data_prep.synthetic not available: {e}"}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import prepare_data

    with tempfile.TemporaryDirectory(prefix="pcseg_bench_") as tmp:
        raw = Path(tmp) / "raw"
        kwargs = {} if rooms is None else {"rooms_per_area": rooms}
        synthetic.write_synthetic_s3dis(raw, **kwargs)
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        log = io.StringIO()
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            code = prepare_data.main(["--dataset", "s3dis", "--raw", str(raw), "--out", str(out),
                                      "--labels", "1%", "0.1%", "1pt", "--workers", str(workers)])
        wall = time.perf_counter() - t0
        s = json.loads((out / "summary.json").read_text())
    return {"exit_code": code, "workers": workers, "scenes": s["scenes"], "points": s["points"],
            "seconds": wall, "points_per_second": s["points"] / wall if wall > 0 else 0.0,
            "failed": s["failed"]}


def bench_voxelize(args: argparse.Namespace) -> dict[str, Any]:
    """Grid-sampling throughput vs the numpy baseline, peak memory, prepare_data throughput."""
    from pcseg.data.voxelize import voxelize, voxelize_baseline

    coords, feats, labels = lidar_like_cloud(args.points, args.seed)
    vs = args.voxel_size
    keep = np.random.default_rng(1).choice(args.points, max(args.points // 1000, 1), replace=False)
    cases: dict[str, Callable[[], Any]] = {
        "numpy_baseline": lambda: voxelize_baseline(coords, vs),
        "pcseg_train": lambda: voxelize(coords, vs, "train", feats=feats, labels=labels, keep=keep, rng=0),
        "pcseg_test": lambda: voxelize(coords, vs, "test", feats=feats, labels=labels),
        "pcseg_mean": lambda: voxelize(coords, vs, "mean", feats=feats, labels=labels),
        "pcseg_grid_only": lambda: voxelize(coords, vs, "test"),
    }
    n_vox = voxelize(coords, vs, "test").num_voxels
    res: dict[str, Any] = {"points": args.points, "voxels": n_vox, "voxel_size": vs,
                           "extent_m": [float(coords[:, i].max() - coords[:, i].min()) for i in range(3)],
                           "cases": {}}
    for name, fn in cases.items():
        sec = _time(fn, args.repeats if name != "numpy_baseline" else max(1, args.repeats // 2))
        res["cases"][name] = {"seconds": sec, "points_per_second": args.points / sec, "peak_mib": _peak_mib(fn)}
    base = res["cases"]["numpy_baseline"]["seconds"]
    for name, c in res["cases"].items():
        c["speedup_vs_baseline"] = base / c["seconds"]
    res["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"grid sampling of {args.points:,} points at {vs} m -> {n_vox:,} voxels "
          f"(extent {res['extent_m'][0]:.0f} x {res['extent_m'][1]:.0f} x {res['extent_m'][2]:.0f} m)")
    print(f"{'case':>18s} {'seconds':>9s} {'Mpoints/s':>10s} {'x baseline':>10s} {'peak MiB':>9s}")
    for name, c in res["cases"].items():
        print(f"{name:>18s} {c['seconds']:9.3f} {c['points_per_second'] / 1e6:10.2f} "
              f"{c['speedup_vs_baseline']:10.2f} {c['peak_mib']:9.1f}")
    print(f"process max RSS {res['max_rss_mib']:.0f} MiB")
    if args.prepare:
        res["prepare_data"] = _bench_prepare(args.prepare_workers, args.rooms)
        p = res["prepare_data"]
        if "skipped" in p:
            print(f"prepare_data: skipped ({p['skipped']})")
        else:
            print(f"prepare_data (synthetic S3DIS, --workers {p['workers']}): {p['scenes']} scenes, "
                  f"{p['points']:,} points in {p['seconds']:.2f}s = {p['points_per_second']:,.0f} points/s")
    return res


# ============================================================================ sparse
# >>> bench_sparse: owned by the sparse-convolution benchmark (replaced by its author). <<<
def add_sparse_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the ``sparse`` subcommand (owned by the sparse benchmark)."""
    p.add_argument("--json", type=Path, default=None, help="write results to this JSON file")


def bench_sparse(args: argparse.Namespace) -> dict[str, Any]:
    """Sparse convolution benchmark (owned by the sparse benchmark)."""
    raise NotImplementedError("filled by the sparse benchmark")
# >>> end of bench_sparse <<<


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    p = argparse.ArgumentParser(description="pcseg benchmarks")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("voxelize", help="grid sampling vs numpy baseline, prepare_data throughput",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("--points", type=int, default=2_000_000)
    v.add_argument("--voxel-size", type=float, default=0.05)
    v.add_argument("--repeats", type=int, default=3, help="best of N timings")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--json", type=Path, default=None, help="write results to this JSON file")
    v.add_argument("--no-prepare", dest="prepare", action="store_false",
                   help="skip the prepare_data throughput run")
    v.add_argument("--prepare-workers", type=int, default=2)
    v.add_argument("--rooms", type=int, default=None, help="synthetic rooms per area (generator default)")
    s = sub.add_parser("sparse", help="sparse convolution benchmark")
    add_sparse_arguments(s)
    args = p.parse_args(argv)
    if args.cmd == "voxelize":
        if args.points < 1:
            p.error("--points must be >= 1")
        res = bench_voxelize(args)
    else:
        res = bench_sparse(args)
    if args.json is not None:
        atomic_write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
