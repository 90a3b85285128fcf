#!/usr/bin/env python
"""Benchmarks.

    python tools/benchmark.py voxelize [--points N] [--json FILE]
        grid sampling points/s (pcseg train / test / mean modes vs the plain numpy baseline
        ``floor`` + ``np.unique(axis=0, return_inverse=True)``) on a LiDAR-like +-80 m cloud,
        with peak memory, then tools/prepare_data.py throughput on the synthetic S3DIS set.
    python tools/benchmark.py sparse [--device cpu|cuda] [--threads 2] [--json FILE]
        (a) submanifold 3x3x3 32->32 forward / backward / kernel-map build, (b) MinkUNet34C
        forward+backward on a synthetic room (>= 100k voxels at 2 cm), (c) MinkUNet34C on the
        real SemanticKITTI scan at 5 cm: pcseg vs spconv (single-thread, patched) vs
        MinkowskiEngine when installed; median ms, peak memory, ratio pcseg/peer. Each
        measurement runs in its own subprocess.
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
    """tools/prepare_data.py on the synthetic S3DIS set (pcseg.datasets.synthetic)."""
    try:
        from pcseg.datasets import synthetic
    except ImportError as e:
        return {"skipped": f"pcseg.datasets.synthetic not available: {e}"}
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
import os as _os
import statistics as _statistics
import subprocess as _subprocess

SPARSE_IMPLS = ("pcseg", "spconv", "minkowski")
KITTI_SCAN = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "semantickitti"
              / "dataset" / "sequences" / "00" / "velodyne" / "000000.bin")


def add_sparse_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the ``sparse`` subcommand (owned by the sparse benchmark)."""
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads of the multi-threaded runs (pcseg, patched spconv, MinkowskiEngine)")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument("--cases", default="a,b,c",
                   help="a: sub-manifold 3x3x3 conv; b: MinkUNet34C on an indoor room at 2 cm; "
                        "c: MinkUNet34C on SemanticKITTI 00/000000 at 5 cm")
    p.add_argument("--impls", default=",".join(SPARSE_IMPLS),
                   help="implementations to measure (those not importable are reported as skipped)")
    p.add_argument("--channels", type=int, default=32, help="case a: C_in = C_out")
    p.add_argument("--voxels-a", type=int, default=100_000, help="case a: voxels (crop of the room)")
    p.add_argument("--room-spacing", type=float, default=0.02,
                   help="case b: surface sampling step (m) of the synthetic S3DIS room")
    p.add_argument("--kitti", type=Path, default=KITTI_SCAN, help="case c: SemanticKITTI .bin scan")
    p.add_argument("--model", default="MinkUNet34C")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per measurement subprocess")
    p.add_argument("--omp-wait-policy", choices=("inherit", "passive", "active"), default="inherit",
                   help="OMP_WAIT_POLICY of the measurement processes; 'passive' avoids the collapse of "
                        "multi-threaded runs on a machine busier than its core count")
    p.add_argument("--json", type=Path, default=None, help="write results to this JSON file")
    p.add_argument("--profile", action="store_true",
                   help="also profile one iteration per implementation (single-threaded on CPU) of every case "
                        "and print the time per category (GEMM, gather, scatter, kernel map, BatchNorm, ...)")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
                   help="also run pcseg under torch.autocast with this dtype (extra configuration "
                        "pcseg_<N>t_<amp>; the peers and the headline ratios stay float32)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the separate peak-memory pass of every measurement")
    p.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)


# ----------------------------------------------------------------- scenes
def _planes_room(voxel: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fallback room (no data_prep): floor, ceiling, 4 walls, 6 boxes of 4.4 x 5 x 3 m,
    surfaces sampled at 1 cm. Returns points (N, 3) float32 m, colours (N, 3) float32."""
    rng = np.random.default_rng(seed)
    W, L, H, s = 4.4, 5.0, 3.0, 0.01

    def rect(o, u, v, a, b):
        i, j = np.meshgrid(np.arange(0, a, s), np.arange(0, b, s), indexing="ij")
        return np.asarray(o) + i.reshape(-1, 1) * np.asarray(u) + j.reshape(-1, 1) * np.asarray(v)

    parts = [rect((0, 0, 0), (1, 0, 0), (0, 1, 0), W, L), rect((0, 0, H), (1, 0, 0), (0, 1, 0), W, L),
             rect((0, 0, 0), (1, 0, 0), (0, 0, 1), W, H), rect((0, L, 0), (1, 0, 0), (0, 0, 1), W, H),
             rect((0, 0, 0), (0, 1, 0), (0, 0, 1), L, H), rect((W, 0, 0), (0, 1, 0), (0, 0, 1), L, H)]
    for _ in range(6):
        lo = rng.uniform([0.2, 0.2, 0], [W - 1.2, L - 1.2, 0])
        d = rng.uniform([0.4, 0.4, 0.4], [1.0, 1.0, 1.1])
        x0, y0, z0 = lo
        dx, dy, dz = d
        parts += [rect((x0, y0, dz), (1, 0, 0), (0, 1, 0), dx, dy),
                  rect((x0, y0, z0), (1, 0, 0), (0, 0, 1), dx, dz), rect((x0, y0 + dy, z0), (1, 0, 0), (0, 0, 1), dx, dz),
                  rect((x0, y0, z0), (0, 1, 0), (0, 0, 1), dy, dz), rect((x0 + dx, y0, z0), (0, 1, 0), (0, 0, 1), dy, dz)]
    pts = np.concatenate(parts) + rng.normal(0, 0.004, (sum(len(p) for p in parts), 3))
    return pts.astype(np.float32), rng.random((len(pts), 3)).astype(np.float32)


def _room_scene(spacing: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Case b input: one synthetic S3DIS room written by pcseg.datasets.synthetic, read back with
    data_prep.s3dis.read_scene, voxelized at 2 cm (pcseg.data.voxelize, 'test' mode).
    Returns voxel coords (M, 3) int32, RGB feats (M, 3) float32, a description."""
    from pcseg.data.voxelize import voxelize

    try:
        from pcseg.datasets import s3dis, synthetic
    except ImportError as e:  # pragma: no cover - fallback when data_prep is not ready
        pts, rgb = _planes_room()
        src = f"planes/boxes fallback room (data_prep unavailable: {e})"
    else:
        with tempfile.TemporaryDirectory(prefix="pcseg_bench_room_") as tmp:
            synthetic.write_synthetic_s3dis(Path(tmp), num_areas=1, rooms_per_area=1, spacing=spacing)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sid = s3dis.list_scenes(Path(tmp), "Area_1")[0]
            sc = s3dis.read_scene(Path(tmp), sid)
        pts, rgb = sc.coords, sc.feats
        src = f"pcseg.datasets.synthetic S3DIS room {sid} (surface spacing {spacing} m, {len(pts):,} points)"
    v = voxelize(pts, 0.02, "test", feats=rgb)
    return v.voxel_coords.astype(np.int32), v.feats.astype(np.float32), src


def _kitti_scene(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Case c input: a SemanticKITTI scan voxelized at 5 cm; feats = remission (M, 1)."""
    from pcseg.data.voxelize import voxelize

    try:
        from pcseg.datasets.semantickitti import read_bin
        scan = read_bin(path)
    except ImportError:  # pragma: no cover
        scan = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    v = voxelize(scan[:, :3], 0.05, "test", feats=scan[:, 3:4])
    return v.voxel_coords.astype(np.int32), v.feats.astype(np.float32), f"{path} ({len(scan):,} points)"


def _batch(coords: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((len(coords), 1), np.int32), coords], 1)


# ----------------------------------------------------------------- worker
def _rss_mib() -> tuple[float, float]:
    """(current RSS, high-water RSS) of this process in MiB (Linux /proc, else ru_maxrss)."""
    cur = hwm = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (cur if cur is not None else ru), (hwm if hwm is not None else ru)


def _reset_hwm() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _sync(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _ms(fn: Callable[[], Any], dev: Any) -> tuple[float, Any]:
    """(milliseconds, result) of ``fn()`` with device synchronisation around it."""
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return (time.perf_counter() - t0) * 1e3, out


def _conv_steps(impl: str, coords: Any, feats: Any, C: int, dev: Any) -> dict[str, Any]:
    """Case a: ``kmap() -> ms`` (build the 3x3x3 sub-manifold kernel map from scratch),
    ``forward() -> out`` (map cached, as every conv after the first of a level) for a
    C -> C conv on ``coords`` (M, 4)."""
    import torch

    f = feats.requires_grad_(True)
    if impl == "pcseg":
        from pcseg.sparse import CoordinateManager, SparseTensor, SubMConv3d

        conv = SubMConv3d(C, C, 3).to(dev)
        x = SparseTensor(coords, f)
        return {"kmap": lambda: _ms(lambda: CoordinateManager(coords).kernel_map(1, 1, 3, 1, "subm"), dev)[0],
                "forward": lambda: conv(x).feats, "versions": {"torch": torch.__version__}}
    if impl == "spconv":
        import spconv
        import spconv.pytorch as sp
        from spconv.pytorch import ops

        from pcseg.sparse.backend_spconv import coords_to_indices

        conv = sp.SubMConv3d(C, C, 3, bias=False, indice_key="k").to(dev)
        idx, shape, _ = coords_to_indices(coords)
        x_cached = conv(sp.SparseConvTensor(f, idx, shape, 1)).replace_feature(f)

        def kmap() -> float:
            return _ms(lambda: ops.get_indice_pairs(idx, 1, shape, conv.algo, conv.kernel_size, conv.stride,
                                                    conv.padding, conv.dilation, conv.output_padding,
                                                    True, False), dev)[0]

        return {"kmap": kmap, "forward": lambda: conv(x_cached).features,
                "versions": {"spconv": spconv.__version__}}
    if impl == "minkowski":
        from pcseg.sparse.backend_minkowski import import_minkowski

        ME = import_minkowski()  # noqa: N806
        conv = ME.MinkowskiConvolution(C, C, kernel_size=3, stride=1, dimension=3).to(dev)
        ci = coords.int()
        x_cached = ME.SparseTensor(f, coordinates=ci)
        conv(x_cached)

        def kmap() -> float:
            # MinkowskiEngine builds the map inside the first forward on new coordinates:
            # (first forward on a fresh tensor) - (forward with the map cached)
            with torch.no_grad():
                fresh = _ms(lambda: conv(ME.SparseTensor(f.detach(), coordinates=ci)), dev)[0]
                cached = _ms(lambda: conv(x_cached), dev)[0]
            return max(fresh - cached, 0.0)

        return {"kmap": kmap, "forward": lambda: conv(x_cached).F,
                "versions": {"MinkowskiEngine": str(getattr(ME, "__version__", "?"))}}
    raise ValueError(f"unknown implementation {impl!r}")


def _model_steps(impl: str, coords: Any, feats: Any, spec: dict[str, Any], dev: Any) -> dict[str, Any]:
    """Cases b / c: MinkUNet ``forward() -> logits`` from the raw coordinates (every kernel
    map rebuilt, as in a training step) and ``backward(logits)`` of a cross-entropy loss."""
    import torch

    from pcseg.models import build_model
    from pcseg.sparse import SparseTensor

    backend = {"pcseg": "torch", "spconv": "spconv", "minkowski": "minkowski"}[impl]
    model = build_model(spec["model"], int(spec["in_channels"]), int(spec["num_classes"]),
                        backend=backend).to(dev).train()
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, int(spec["num_classes"]), (coords.shape[0],), generator=g).to(dev)
    versions = {"torch": torch.__version__}
    if impl == "spconv":
        import spconv

        versions["spconv"] = spconv.__version__

    def forward() -> Any:
        return model(SparseTensor(coords, feats))[0]

    def backward(logits: Any) -> None:
        torch.nn.functional.cross_entropy(logits, target).backward()
        model.zero_grad(set_to_none=True)  # (an optimizer step would go here)

    return {"forward": forward, "backward": backward, "versions": versions}


#: torch.profiler op names per category of the time breakdown (``--profile``)
PROFILE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "gemm": ("aten::mm", "aten::addmm_", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul"),
    "gather": ("aten::index_select", "aten::index", "aten::gather"),
    "scatter": ("aten::scatter_add_", "aten::index_add_", "aten::index_copy_", "aten::index_put_",
                "aten::_index_put_impl_", "aten::scatter_reduce_"),
    "kernel_map": ("aten::searchsorted", "aten::sort", "aten::unique_dim", "aten::_unique2", "aten::unique_consecutive",
                   "aten::nonzero", "aten::bincount", "aten::argsort", "aten::bitwise_and", "aten::bitwise_or",
                   "aten::bitwise_right_shift", "aten::bitwise_left_shift", "aten::__rshift__", "aten::__lshift__",
                   "aten::eq", "aten::ne", "aten::clamp_", "aten::cumsum", "aten::arange", "aten::remainder",
                   "aten::floor_divide", "aten::div", "aten::masked_select", "aten::where"),
    "batchnorm": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "relu_add_cat": ("aten::relu_", "aten::relu", "aten::clamp_min_", "aten::clamp_min", "aten::threshold_backward",
                     "aten::add", "aten::add_", "aten::cat"),
    "alloc_fill": ("aten::empty", "aten::zeros", "aten::zero_", "aten::fill_", "aten::new_zeros",
                   "aten::new_empty", "aten::empty_like", "aten::zeros_like", "aten::copy_", "aten::to",
                   "aten::_to_copy", "aten::contiguous", "aten::clone"),
    "loss_head": ("aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::nll_loss_forward",
                  "aten::nll_loss_backward", "aten::linear", "aten::t"),
    # spconv's C++ gather / scatter-add loops and pair generation run inside these autograd
    # functions (self time), its GEMMs are aten::mm
    "spconv_cpp_gather_scatter_pairs": ("SubMConvFunction", "SubMConvFunctionBackward", "SparseConvFunction",
                                        "SparseConvFunctionBackward", "SparseInverseConvFunction",
                                        "SparseInverseConvFunctionBackward"),
}


def gemm_flops(name: str, shapes: list[list[int]]) -> int:
    """Floating-point operations (2 M K N) of one GEMM op call from its profiler input shapes:
    ``aten::mm`` (M,K),(K,N); ``aten::addmm`` / ``aten::addmm_`` (M,N),(M,K),(K,N); others 0."""
    if name == "aten::mm" and len(shapes) >= 2 and len(shapes[0]) == 2 and len(shapes[1]) == 2:
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2 * m * k * n
    if name in ("aten::addmm", "aten::addmm_") and len(shapes) >= 3 and len(shapes[1]) == 2 \
            and len(shapes[2]) == 2:
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2 * m * k * n
    return 0


def _profile_step(run: Callable[[], Any], dev: Any) -> dict[str, Any]:
    """Self time (s) per :data:`PROFILE_CATEGORIES` category of one ``run()`` under
    torch.profiler, plus the GEMM work: ``gemm_gflop`` (from the recorded input shapes, see
    :func:`gemm_flops`) and ``gemm_gflop_per_s`` (over the GEMM category's self time)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts, record_shapes=True) as prof:
        t0 = time.perf_counter()
        run()
        _sync(dev)
        wall = time.perf_counter() - t0
    lookup = {name: cat for cat, names in PROFILE_CATEGORIES.items() for name in names}
    cats: dict[str, float] = {}
    other: dict[str, float] = {}
    for e in prof.key_averages():
        t = (e.self_device_time_total if dev.type == "cuda" else e.self_cpu_time_total) / 1e6
        if t <= 0:
            continue
        cat = lookup.get(e.key)
        if cat is None:
            other[e.key] = other.get(e.key, 0.0) + t
        else:
            cats[cat] = cats.get(cat, 0.0) + t
    cats["other"] = sum(other.values())
    total = sum(cats.values())
    gflop = sum(e.count * gemm_flops(e.key, e.input_shapes)
                for e in prof.key_averages(group_by_input_shape=True)) / 1e9
    gemm_s = cats.get("gemm", 0.0)
    return {"wall_s": wall, "profiled_self_s": total, "seconds": cats,
            "gemm_gflop": gflop, "gemm_gflop_per_s": gflop / gemm_s if gemm_s > 0 else None,
            "percent": {k: 100 * v / total for k, v in cats.items()} if total else {},
            "other_top": dict(sorted(other.items(), key=lambda kv: -kv[1])[:8])}


def _sparse_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement (case x implementation x threads) in this fresh process.

    Runs ``warmup`` untimed iterations, then times (ms) ``repeats`` iterations; memory is the
    RSS high-water mark over the timed iterations (reset after the warm-up) minus the RSS at
    that point, or on CUDA ``torch.cuda.max_memory_allocated`` likewise.
    """
    import torch

    impl, case, dev = spec["impl"], spec["case"], torch.device(spec["device"])
    torch.set_num_threads(int(spec["threads"]))
    if impl == "spconv":
        from pcseg.sparse.backend_spconv import patch_spconv_cpu

        patch_spconv_cpu()
    data = torch.load(spec["inputs"])
    coords, feats = data["coords"].to(dev), data["feats"].to(dev)
    torch.manual_seed(0)
    if case == "a":
        C = int(spec["channels"])
        feats = torch.randn(coords.shape[0], C, device=dev)
        gout = torch.randn(coords.shape[0], C, device=dev)
        step = _conv_steps(impl, coords, feats, C, dev)
    else:
        step = _model_steps(impl, coords, feats, spec, dev)

    amp = spec.get("amp", "none")
    if amp != "none":  # forward under autocast; backward follows the dtypes it recorded
        fwd = step["forward"]
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]

        def amp_forward() -> Any:
            with torch.autocast(dev.type, dtype=dtype):
                return fwd()

        step["forward"] = amp_forward

    def iteration() -> dict[str, float]:
        rec: dict[str, float] = {}
        c0 = time.process_time()
        if case == "a":
            rec["kmap"] = step["kmap"]()
            rec["forward"], y = _ms(step["forward"], dev)
            rec["backward"], _ = _ms(lambda: y.backward(gout), dev)
        else:
            rec["forward"], logits = _ms(step["forward"], dev)
            rec["backward"], _ = _ms(lambda: step["backward"](logits), dev)
            rec["total"] = rec["forward"] + rec["backward"]
        # CPU time of the process (all threads): robust to a busy machine for 1-thread runs
        rec["cpu"] = (time.process_time() - c0) * 1e3
        return rec

    for _ in range(int(spec["warmup"])):
        iteration()
    if spec.get("mode") == "profile":
        return {"impl": impl, "case": case, "threads": int(spec["threads"]), "device": str(dev),
                "voxels": int(coords.shape[0]), "profile": _profile_step(iteration, dev)}
    # memory baseline after the warm-up: one-time costs (library buffers, thread pools) excluded;
    # pcseg's reusable scratch buffers are freed first, so the measured peak includes them
    if impl == "pcseg":
        from pcseg.sparse.functional import clear_workspace

        clear_workspace()
    base_rss, _ = _rss_mib()
    hwm_ok = _reset_hwm()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base_cuda = torch.cuda.memory_allocated(dev)
    times: dict[str, list[float]] = {}
    for _ in range(int(spec["repeats"])):
        for k, v in iteration().items():
            times.setdefault(k, []).append(v)
    _, hwm = _rss_mib()
    res: dict[str, Any] = {
        "impl": impl, "case": case, "threads": int(spec["threads"]), "device": str(dev),
        "voxels": int(coords.shape[0]), "times_ms": times,
        "median_ms": {k: _statistics.median(v) for k, v in times.items()},
        "baseline_rss_mib": base_rss, "peak_rss_mib": hwm,
        "peak_mib": (hwm - base_rss) if hwm_ok else None, "versions": step.get("versions", {}),
    }
    if dev.type == "cuda":
        res["peak_mib"] = (torch.cuda.max_memory_allocated(dev) - base_cuda) / 2**20
        res["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return res


# ----------------------------------------------------------------- driver
def _impl_available(impl: str, device: str) -> str | None:
    """None if ``impl`` can run on ``device`` here, else the reason it is skipped."""
    import importlib.util

    if impl == "pcseg":
        return None
    if impl == "spconv":
        if importlib.util.find_spec("spconv") is None:
            return "spconv not installed"
        if device == "cuda":
            from spconv.cppconstants import CPU_ONLY_BUILD

            if CPU_ONLY_BUILD:
                return "the installed spconv is the CPU-only build"
        return None
    if impl == "minkowski":
        from pcseg.sparse.backends import BackendUnavailableError

        try:
            from pcseg.sparse.backend_minkowski import import_minkowski

            import_minkowski()
        except BackendUnavailableError:
            return "MinkowskiEngine not importable (see pcseg.sparse.backends.MINKOWSKI_INSTALL)"
        return None
    return f"unknown implementation {impl!r}"


def _amp_label(device: str, threads: int, amp: str) -> str:
    """Label of the autocast pcseg run: ``pcseg_<N>t_<amp>`` on CPU, ``pcseg_<amp>`` on CUDA."""
    return f"pcseg_{amp}" if device == "cuda" else f"pcseg_{threads}t_{amp}"


def _configs(impls: list[str], device: str, threads: int,
             amp: str = "none") -> list[tuple[str, str, int, str]]:
    """(label, impl, threads, amp) of every run: on CPU pcseg at ``threads`` and at 1, spconv
    at 1 (its only correct setting unpatched) and at ``threads`` (with the patched scatter),
    MinkowskiEngine at ``threads``; on CUDA one run per implementation. All float32; with
    ``amp`` != 'none' one more pcseg run under autocast (label ``pcseg_<N>t_<amp>``, CUDA
    ``pcseg_<amp>``)."""
    out: list[tuple[str, str, int, str]] = []
    for impl in impls:
        if device == "cuda":
            out.append((impl, impl, threads, "none"))
        elif impl == "pcseg" or impl == "spconv":
            out.append((f"{impl}_{threads}t", impl, threads, "none"))
            if threads != 1:
                out.append((f"{impl}_1t", impl, 1, "none"))
        else:
            out.append((f"{impl}_{threads}t", impl, threads, "none"))
        if impl == "pcseg" and amp != "none":
            out.append((_amp_label(device, threads, amp), impl, threads, amp))
    return out


def _run_worker(spec: dict[str, Any], tmp: Path, timeout: int) -> dict[str, Any]:
    tag = f"{spec['case']}_{spec['label']}_{spec.get('mode', 'time')}"
    spec_path = tmp / f"spec_{tag}.json"
    spec["out"] = str(tmp / f"res_{tag}.json")
    spec_path.write_text(json.dumps(spec))
    env = dict(_os.environ)
    env.update(OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    if spec.get("mode") == "memory":
        # fixed mmap threshold: freed tensors go back to the OS at once, so the RSS high-water
        # mark measures live memory, not glibc's heap growth (it slows allocation-heavy code
        # down -- page faults on every large allocation -- hence a separate, untimed pass)
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    if spec.get("omp_wait_policy", "inherit") != "inherit":
        env["OMP_WAIT_POLICY"] = spec["omp_wait_policy"].upper()
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + (_os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, str(Path(__file__).resolve()), "sparse", "--worker", str(spec_path)]
    try:
        p = _subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except _subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    out = Path(spec["out"])
    if p.returncode != 0 or not out.exists():
        tail = (p.stderr or p.stdout or "").strip().splitlines()[-6:]
        return {"error": f"worker exit code {p.returncode}: " + " | ".join(tail)}
    return json.loads(out.read_text())


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def bench_sparse(args: argparse.Namespace) -> dict[str, Any]:
    """Sparse convolution benchmark: pcseg (torch backend) vs spconv vs MinkowskiEngine.

    Cases: (a) 3x3x3 sub-manifold conv C -> C on ~``voxels_a`` voxels: kernel-map build,
    forward with the map cached, backward; (b) ``model`` forward + backward on a synthetic
    S3DIS room at 2 cm (pcseg.datasets.synthetic -> data_prep.s3dis.read_scene ->
    pcseg.data.voxelize); (c) the same on SemanticKITTI 00/000000 at 5 cm (skipped when
    absent). Every measurement runs in its own subprocess (clean peak memory). Returns the
    raw figures per case and configuration plus pcseg / peer ratios; the top-level
    ``ratio_vs_spconv`` (and ``ratio_vs_minkowski``) are case b's pcseg at ``--threads``
    over spconv at 1 thread, the configuration the issue's target refers to.
    """
    if args.worker is not None:
        spec = json.loads(Path(args.worker).read_text())
        res = _sparse_worker(spec)
        Path(spec["out"]).write_text(json.dumps(res))
        args.json = None  # the worker's result goes to spec["out"] only
        return res
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise SystemExit("sparse: --repeats >= 1, --warmup >= 0 and --threads >= 1 are required")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("sparse: --device cuda requested but torch.cuda.is_available() is False")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    for c in cases:
        if c not in ("a", "b", "c"):
            raise SystemExit(f"sparse: unknown case {c!r} (valid: a, b, c)")
    for i in impls:
        if i not in SPARSE_IMPLS:
            raise SystemExit(f"sparse: unknown implementation {i!r} (valid: {', '.join(SPARSE_IMPLS)})")
    skipped = {i: r for i in impls if (r := _impl_available(i, args.device)) is not None}
    runnable = [i for i in impls if i not in skipped]
    res: dict[str, Any] = {
        "device": args.device, "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
        "model": args.model, "cpu_count": _os.cpu_count(), "skipped_impls": skipped,
        "loadavg_start": list(_os.getloadavg()) if hasattr(_os, "getloadavg") else None, "cases": {},
        "notes": [
            "spconv runs with spconv 2.3.8's CPU fixes (pcseg.sparse.backend_spconv.patch_spconv_cpu): "
            "the CUDA-stream lookup in backward, and its racy CPU scatter-add forced to one thread; "
            "spconv_1t = everything single-threaded (correct even unpatched), "
            "spconv_Nt = GEMMs / gathers on N threads, scatter on one (correct only patched).",
            "times are medians (ms) over --repeats after --warmup; cases b/c rebuild every kernel map "
            "each iteration (fresh input, as in training); peak_mib = RSS high-water over the timed "
            "iterations minus the RSS after the warm-up, measured in a separate untimed pass (1 warm-up + "
            "1 iteration) run with MALLOC_MMAP_THRESHOLD_=131072 so that freed tensors are returned to "
            "the OS (CUDA: max_memory_allocated minus allocated before); peak_mib_default_malloc is the "
            "same figure from the timing pass (glibc's default, heap growth included).",
        ],
    }
    res["omp_wait_policy"] = (args.omp_wait_policy if args.omp_wait_policy != "inherit"
                              else _os.environ.get("OMP_WAIT_POLICY", "(unset)"))
    for i, r in skipped.items():
        print(f"[sparse] {i}: skipped ({r})")
    load = res["loadavg_start"]
    if load and _os.cpu_count() and load[0] > _os.cpu_count() and res["omp_wait_policy"].lower() != "passive":
        print(f"[sparse] warning: load average {load[0]:.1f} > {_os.cpu_count()} CPUs; multi-threaded timings "
              "will be distorted (OpenMP spin-waits on descheduled threads); consider --omp-wait-policy passive")
    with tempfile.TemporaryDirectory(prefix="pcseg_bench_sparse_") as tmpdir:
        tmp = Path(tmpdir)
        inputs: dict[str, dict[str, Any]] = {}
        room = None
        if "a" in cases or "b" in cases:
            room = _room_scene(args.room_spacing)
        if "a" in cases:
            c, _, src = room  # type: ignore[misc]
            order = np.argsort(c[:, 0], kind="stable")[: args.voxels_a]  # crop along x
            ca = c[np.sort(order)]
            torch.save({"coords": torch.from_numpy(_batch(ca)), "feats": torch.zeros(len(ca), 1)}, tmp / "a.pt")
            inputs["a"] = {"source": f"crop (lowest x) of {src} at 2 cm", "voxels": len(ca),
                           "channels": args.channels}
        if "b" in cases:
            c, f, src = room  # type: ignore[misc]
            torch.save({"coords": torch.from_numpy(_batch(c)), "feats": torch.from_numpy(f)}, tmp / "b.pt")
            inputs["b"] = {"source": src + " at 2 cm", "voxels": len(c), "in_channels": 3, "num_classes": 13}
        if "c" in cases:
            if not Path(args.kitti).is_file():
                print(f"[sparse] case c skipped: SemanticKITTI scan {args.kitti} not found")
                res["cases"]["c"] = {"skipped": f"{args.kitti} not found"}
            else:
                c, f, src = _kitti_scene(Path(args.kitti))
                torch.save({"coords": torch.from_numpy(_batch(c)), "feats": torch.from_numpy(f)}, tmp / "c.pt")
                inputs["c"] = {"source": src + " at 5 cm", "voxels": len(c), "in_channels": 1, "num_classes": 19}
        for case, info in inputs.items():
            print(f"[sparse] case {case}: {info['voxels']:,} voxels -- {info['source']}")
            runs: dict[str, Any] = {}
            for label, impl, nt, amp in _configs(runnable, args.device, args.threads, args.amp):
                spec = {"case": case, "impl": impl, "label": label, "threads": nt, "device": args.device,
                        "amp": amp,
                        "inputs": str(tmp / f"{case}.pt"), "repeats": args.repeats, "warmup": args.warmup,
                        "channels": args.channels, "model": args.model,
                        "in_channels": info.get("in_channels", 0), "num_classes": info.get("num_classes", 0),
                        "omp_wait_policy": args.omp_wait_policy}
                t0 = time.perf_counter()
                r = _run_worker(dict(spec, mode="time"), tmp, args.timeout)
                if "error" not in r and args.memory:
                    r["peak_mib_default_malloc"] = r.pop("peak_mib")
                    m = _run_worker(dict(spec, mode="memory", warmup=1, repeats=1), tmp, args.timeout)
                    if "error" in m:
                        r["peak_mib"], r["memory_error"] = None, m["error"]
                    else:
                        r["peak_mib"] = m["peak_mib"]
                        r["memory_pass"] = {k: m[k] for k in ("baseline_rss_mib", "peak_rss_mib", "peak_mib")}
                runs[label] = r
                if "error" in r:
                    print(f"[sparse]   {label}: ERROR {r['error']}")
                else:
                    med = r["median_ms"]
                    print(f"[sparse]   {label}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items())
                          + (f", peak {r['peak_mib']:.0f} MiB" if r.get("peak_mib") is not None else "")
                          + f"  ({time.perf_counter() - t0:.0f} s)")
            res["cases"][case] = {**info, "runs": runs, "ratios": _case_ratios(case, runs, args)}
            if args.profile:
                prof: dict[str, Any] = {}
                profiled = [(impl, impl, "none") for impl in runnable]
                if args.amp != "none" and "pcseg" in runnable:
                    profiled.append((f"pcseg_{args.amp}", "pcseg", args.amp))
                for name, impl, amp in profiled:
                    nt = 1 if args.device == "cpu" else args.threads
                    spec = {"case": case, "impl": impl, "label": f"{name}_prof", "threads": nt, "amp": amp,
                            "device": args.device, "inputs": str(tmp / f"{case}.pt"), "repeats": 1,
                            "warmup": 1, "channels": args.channels, "model": args.model, "mode": "profile",
                            "in_channels": info.get("in_channels", 0), "num_classes": info.get("num_classes", 0),
                            "omp_wait_policy": args.omp_wait_policy}
                    r = _run_worker(spec, tmp, args.timeout)
                    prof[name] = r.get("profile", r)
                    if "error" in r:
                        print(f"[sparse]   profile {name}: ERROR {r['error']}")
                    else:
                        pr = r["profile"]
                        parts = ", ".join(f"{k} {v:.2f}s ({pr['percent'][k]:.0f}%)"
                                          for k, v in sorted(pr["seconds"].items(), key=lambda kv: -kv[1]) if v > 0)
                        print(f"[sparse]   profile {name} ({nt} thread{'s' if nt > 1 else ''}, one iteration, "
                              f"wall {pr['wall_s']:.2f}s): {parts}")
                        if pr.get("gemm_gflop"):
                            rate = pr.get("gemm_gflop_per_s")
                            print(f"[sparse]   profile {name}: GEMM work {pr['gemm_gflop']:.1f} GFLOP"
                                  + (f" at {rate:.1f} GFLOP/s" if rate else ""))
                res["cases"][case]["profile"] = prof
    res["loadavg_end"] = list(_os.getloadavg()) if hasattr(_os, "getloadavg") else None
    b = res["cases"].get("b", {}).get("ratios", {})
    res["ratio_vs_spconv"] = b.get("time_vs_spconv")
    res["memory_ratio_vs_spconv"] = b.get("memory_vs_spconv")
    if b.get("time_vs_minkowski") is not None:
        res["ratio_vs_minkowski"] = b["time_vs_minkowski"]
        res["memory_ratio_vs_minkowski"] = b.get("memory_vs_minkowski")
    if args.amp != "none":
        res["amp"] = args.amp
        for key in ("time_amp_vs_float32", "time_amp_vs_spconv", "time_amp_vs_minkowski"):
            if b.get(key) is not None:
                res[f"ratio_{key[len('time_'):]}"] = b[key]
    _print_sparse_table(res)
    return res


def _case_ratios(case: str, runs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """pcseg / peer ratios of one case (time: ``total`` for models, ``forward + backward`` for
    the conv; memory: ``peak_mib``)."""
    def t(label: str) -> float | None:
        r = runs.get(label)
        if not r or "error" in r:
            return None
        m = r["median_ms"]
        return m["total"] if "total" in m else m["forward"] + m["backward"]

    def cpu(label: str) -> float | None:
        r = runs.get(label)
        return None if not r or "error" in r else r["median_ms"].get("cpu")

    def mem(label: str) -> float | None:
        r = runs.get(label)
        return None if not r or "error" in r else r.get("peak_mib")

    n = args.threads
    if args.device == "cuda":
        ours, sp1, spn, me = "pcseg", "spconv", "spconv", "minkowski"
        ours1 = "pcseg"
    else:
        ours, ours1, sp1, spn, me = f"pcseg_{n}t", "pcseg_1t", "spconv_1t", f"spconv_{n}t", f"minkowski_{n}t"
        if n == 1:
            ours1, sp1 = ours, spn
    out = {
        "definition": f"{ours} / peer; time_vs_spconv uses {sp1}, time_vs_spconv_same_threads uses {spn}, "
                      f"time_1t_vs_spconv_1t uses {ours1} / {sp1}",
        "time_vs_spconv": _ratio(t(ours), t(sp1)),
        "time_vs_spconv_same_threads": _ratio(t(ours), t(spn)),
        "time_1t_vs_spconv_1t": _ratio(t(ours1), t(sp1)),
        "cpu_time_1t_vs_spconv_1t": _ratio(cpu(ours1), cpu(sp1)),
        "memory_vs_spconv": _ratio(mem(ours), mem(sp1)),
        "time_vs_minkowski": _ratio(t(ours), t(me)),
        "memory_vs_minkowski": _ratio(mem(ours), mem(me)),
    }
    if args.amp != "none":
        amp = _amp_label(args.device, n, args.amp)
        out["definition"] += f"; *_amp_* use {amp} (autocast {args.amp}) / the same float32 peers"
        out.update({
            "time_amp_vs_float32": _ratio(t(amp), t(ours)),
            "time_amp_vs_spconv": _ratio(t(amp), t(sp1)),
            "time_amp_vs_minkowski": _ratio(t(amp), t(me)),
            "memory_amp_vs_spconv": _ratio(mem(amp), mem(sp1)),
            "memory_amp_vs_minkowski": _ratio(mem(amp), mem(me)),
        })
    if case == "a":
        def part(label: str, key: str) -> float | None:
            r = runs.get(label)
            return None if not r or "error" in r else r["median_ms"].get(key)

        for key in ("kmap", "forward", "backward"):
            out[f"{key}_vs_spconv"] = _ratio(part(ours, key), part(sp1, key))
    return out


def _print_sparse_table(res: dict[str, Any]) -> None:
    print()
    print(f"sparse benchmark ({res['device']}, --threads {res['threads']}, median of {res['repeats']} "
          f"after {res['warmup']} warm-up; load average {res.get('loadavg_start')} -> {res.get('loadavg_end')} "
          f"on {res['cpu_count']} CPUs)")
    hdr = f"{'case':>4s} {'config':>14s} {'voxels':>8s} {'kmap ms':>9s} {'fwd ms':>9s} {'bwd ms':>9s} " \
          f"{'total ms':>9s} {'cpu ms':>9s} {'peak MiB':>9s} {'pcseg/this':>10s}"
    print(hdr)
    print("-" * len(hdr))
    for case, cr in res["cases"].items():
        if "skipped" in cr:
            print(f"{case:>4s} skipped: {cr['skipped']}")
            continue
        runs = cr["runs"]
        ref_label = f"pcseg_{res['threads']}t" if res["device"] == "cpu" else "pcseg"
        ref = runs.get(ref_label, {})
        ref_t = None
        if ref and "error" not in ref:
            m = ref["median_ms"]
            ref_t = m.get("total", m["forward"] + m["backward"])
        for label, r in runs.items():
            if "error" in r:
                print(f"{case:>4s} {label:>14s} ERROR {r['error'][:80]}")
                continue
            m = r["median_ms"]
            tot = m.get("total", m["forward"] + m["backward"])
            pk = r.get("peak_mib")
            print(f"{case:>4s} {label:>14s} {r['voxels']:>8,d} {m.get('kmap', float('nan')):9.1f} "
                  f"{m['forward']:9.1f} {m['backward']:9.1f} {tot:9.1f} {m.get('cpu', float('nan')):9.1f} "
                  f"{(pk if pk is not None else float('nan')):9.0f} "
                  f"{(ref_t / tot if ref_t else float('nan')):10.2f}")
    for k in ("ratio_vs_spconv", "memory_ratio_vs_spconv", "ratio_vs_minkowski", "memory_ratio_vs_minkowski",
              "ratio_amp_vs_float32", "ratio_amp_vs_spconv", "ratio_amp_vs_minkowski"):
        if res.get(k) is not None:
            print(f"case b {k}: {res[k]:.3f}")
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
