"""Sparse-convolution benchmark: pcseg (torch backend) vs spconv vs MinkowskiEngine.

    python -m pcseg.benchmarks sparse [--device cpu|cuda] [--threads 2] [--cases a,b,c]
        [--impls pcseg,spconv,minkowski] [--amp none|bf16|fp16] [--profile] [--json FILE]

Cases: (a) sub-manifold 3x3x3 ``C -> C`` conv on a crop of the room (kernel-map build,
forward with the map cached, backward); (b) MinkUNet34C forward + backward on a synthetic
S3DIS room at 2 cm (>= 100k voxels at the default surface spacing); (c) the same on the real
SemanticKITTI scan 00/000000 at 5 cm (skipped when absent). Implementations not importable
are reported as skipped. Every measurement runs in its own worker process
(:func:`pcseg.benchmarks.harness.run_worker`): median ms, peak memory (a separate untimed
pass), and pcseg / peer ratios; the headline ``ratio_vs_spconv`` is case b's pcseg at
``--threads`` over spconv single-threaded on CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.benchmarks.harness import (
    PACKAGE_ROOT,
    Column,
    PeakMemory,
    print_table,
    ratio,
    run_worker,
    summarize,
    sync,
    timed_ms,
)

#: implementations the benchmark knows (``--impls``)
SPARSE_IMPLS = ("pcseg", "spconv", "minkowski")
#: benchmark cases (``--cases``)
CASES = ("a", "b", "c")
#: the real scan of case c: $PCSEG_REAL_DATA (else ../shared/data/real next to the checkout)
REAL_DATA = Path(
    os.environ.get("PCSEG_REAL_DATA", PACKAGE_ROOT.parent / "shared" / "data" / "real")
)
KITTI_SCAN = REAL_DATA / "semantickitti/dataset/sequences/00/velodyne/000000.bin"
#: worker target of one measurement
WORKER = "pcseg.benchmarks.sparse:measure"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the ``sparse`` subcommand."""
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads of the multi-threaded runs (pcseg, patched spconv, MinkowskiEngine)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument(
        "--cases",
        default="a,b,c",
        help="a: sub-manifold 3x3x3 conv; b: MinkUNet34C on an indoor room at 2 cm; "
        "c: MinkUNet34C on SemanticKITTI 00/000000 at 5 cm",
    )
    p.add_argument(
        "--impls",
        default=",".join(SPARSE_IMPLS),
        help="implementations to measure (those not importable are reported as skipped)",
    )
    p.add_argument("--channels", type=int, default=32, help="case a: C_in = C_out")
    p.add_argument(
        "--voxels-a", type=int, default=100_000, help="case a: voxels (crop of the room)"
    )
    p.add_argument(
        "--room-spacing",
        type=float,
        default=0.02,
        help="case b: surface sampling step (m) of the synthetic S3DIS room",
    )
    p.add_argument("--kitti", type=Path, default=KITTI_SCAN, help="case c: SemanticKITTI .bin scan")
    p.add_argument("--model", default="MinkUNet34C")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per measurement subprocess")
    p.add_argument(
        "--omp-wait-policy",
        choices=("inherit", "passive", "active"),
        default="inherit",
        help="OMP_WAIT_POLICY of the measurement processes; 'passive' avoids the "
        "collapse of multi-threaded runs on a machine busier than its core count",
    )
    p.add_argument("--json", type=Path, default=None, help="write results to this JSON file")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile one iteration per implementation (single-threaded on CPU) "
        "of every case and print the time per category (GEMM, gather, scatter, "
        "kernel map, BatchNorm, ...)",
    )
    p.add_argument(
        "--amp",
        choices=("none", "bf16", "fp16"),
        default="none",
        help="also run pcseg under torch.autocast with this dtype (extra "
        "configuration pcseg_<N>t_<amp>; the peers and the headline ratios stay "
        "float32)",
    )
    p.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the separate peak-memory pass of every measurement",
    )


# ----------------------------------------------------------------- scenes
def room_scene(spacing: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Case a / b input: one synthetic S3DIS room (pcseg.readers.synthetic) read back with
    pcseg.readers.s3dis.read_scene and voxelized at 2 cm (pcseg.data.voxelize, 'test' mode).
    Returns voxel coords (M, 3) int32, RGB feats (M, 3) float32, a description."""
    from pcseg.data.voxelize import voxelize
    from pcseg.readers import s3dis, synthetic

    with tempfile.TemporaryDirectory(prefix="pcseg_bench_room_") as tmp:
        synthetic.write_synthetic_s3dis(Path(tmp), num_areas=1, rooms_per_area=1, spacing=spacing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sid = s3dis.list_scenes(Path(tmp), "Area_1")[0]
        sc = s3dis.read_scene(Path(tmp), sid)
    pts, rgb = sc.coords, sc.feats
    src = (
        f"pcseg.readers.synthetic S3DIS room {sid} (surface spacing {spacing} m, "
        f"{len(pts):,} points)"
    )
    v = voxelize(pts, 0.02, "test", feats=rgb)
    assert v.feats is not None
    return v.voxel_coords.astype(np.int32), v.feats.astype(np.float32), src


def kitti_scene(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Case c input: a SemanticKITTI scan voxelized at 5 cm; feats = remission (M, 1)."""
    from pcseg.data.voxelize import voxelize
    from pcseg.readers.semantickitti import read_bin

    scan = read_bin(path)
    v = voxelize(scan[:, :3], 0.05, "test", feats=scan[:, 3:4])
    assert v.feats is not None
    return (
        v.voxel_coords.astype(np.int32),
        v.feats.astype(np.float32),
        f"{path} ({len(scan):,} points)",
    )


def _batch(coords: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((len(coords), 1), np.int32), coords], 1)


# ----------------------------------------------------------------- one measurement
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

        def kmap() -> float:
            return timed_ms(lambda: CoordinateManager(coords).kernel_map(1, 1, 3, 1, "subm"), dev)[
                0
            ]

        return {
            "kmap": kmap,
            "forward": lambda: conv(x).feats,
            "versions": {"torch": torch.__version__},
        }
    if impl == "spconv":
        import spconv
        import spconv.pytorch as sp
        from spconv.pytorch import ops

        from pcseg.sparse.backend_spconv import coords_to_indices

        conv = sp.SubMConv3d(C, C, 3, bias=False, indice_key="k").to(dev)
        idx, shape, _ = coords_to_indices(coords)
        x_cached = conv(sp.SparseConvTensor(f, idx, shape, 1)).replace_feature(f)

        def kmap() -> float:
            return timed_ms(
                lambda: ops.get_indice_pairs(
                    idx,
                    1,
                    shape,
                    conv.algo,
                    conv.kernel_size,
                    conv.stride,
                    conv.padding,
                    conv.dilation,
                    conv.output_padding,
                    True,
                    False,
                ),
                dev,
            )[0]

        return {
            "kmap": kmap,
            "forward": lambda: conv(x_cached).features,
            "versions": {"spconv": spconv.__version__},
        }
    if impl == "minkowski":
        from pcseg.sparse.backend_minkowski import import_minkowski

        ME = import_minkowski()
        conv = ME.MinkowskiConvolution(C, C, kernel_size=3, stride=1, dimension=3).to(dev)
        ci = coords.int()
        x_cached = ME.SparseTensor(f, coordinates=ci)
        conv(x_cached)

        def kmap() -> float:
            # MinkowskiEngine builds the map inside the first forward on new coordinates:
            # (first forward on a fresh tensor) - (forward with the map cached)
            with torch.no_grad():
                fresh = timed_ms(lambda: conv(ME.SparseTensor(f.detach(), coordinates=ci)), dev)[0]
                cached = timed_ms(lambda: conv(x_cached), dev)[0]
            return max(fresh - cached, 0.0)

        return {
            "kmap": kmap,
            "forward": lambda: conv(x_cached).F,
            "versions": {"MinkowskiEngine": str(getattr(ME, "__version__", "?"))},
        }
    raise ValueError(f"unknown implementation {impl!r}")


def _model_steps(
    impl: str, coords: Any, feats: Any, spec: dict[str, Any], dev: Any
) -> dict[str, Any]:
    """Cases b / c: MinkUNet ``forward() -> logits`` from the raw coordinates (every kernel
    map rebuilt, as in a training step) and ``backward(logits)`` of a cross-entropy loss."""
    import torch

    from pcseg.models import build_model
    from pcseg.sparse import SparseTensor

    backend = {"pcseg": "torch", "spconv": "spconv", "minkowski": "minkowski"}[impl]
    model = (
        build_model(
            spec["model"], int(spec["in_channels"]), int(spec["num_classes"]), backend=backend
        )
        .to(dev)
        .train()
    )
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
    "gemm": (
        "aten::mm",
        "aten::addmm_",
        "aten::addmm",
        "aten::bmm",
        "aten::baddbmm",
        "aten::matmul",
    ),
    "gather": ("aten::index_select", "aten::index", "aten::gather"),
    "scatter": (
        "aten::scatter_add_",
        "aten::index_add_",
        "aten::index_copy_",
        "aten::index_put_",
        "aten::_index_put_impl_",
        "aten::scatter_reduce_",
    ),
    "kernel_map": (
        "aten::searchsorted",
        "aten::sort",
        "aten::unique_dim",
        "aten::_unique2",
        "aten::unique_consecutive",
        "aten::nonzero",
        "aten::bincount",
        "aten::argsort",
        "aten::bitwise_and",
        "aten::bitwise_or",
        "aten::bitwise_right_shift",
        "aten::bitwise_left_shift",
        "aten::__rshift__",
        "aten::__lshift__",
        "aten::eq",
        "aten::ne",
        "aten::clamp_",
        "aten::cumsum",
        "aten::arange",
        "aten::remainder",
        "aten::floor_divide",
        "aten::div",
        "aten::masked_select",
        "aten::where",
    ),
    "batchnorm": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "relu_add_cat": (
        "aten::relu_",
        "aten::relu",
        "aten::clamp_min_",
        "aten::clamp_min",
        "aten::threshold_backward",
        "aten::add",
        "aten::add_",
        "aten::cat",
    ),
    "alloc_fill": (
        "aten::empty",
        "aten::zeros",
        "aten::zero_",
        "aten::fill_",
        "aten::new_zeros",
        "aten::new_empty",
        "aten::empty_like",
        "aten::zeros_like",
        "aten::copy_",
        "aten::to",
        "aten::_to_copy",
        "aten::contiguous",
        "aten::clone",
    ),
    "loss_head": (
        "aten::_log_softmax",
        "aten::_log_softmax_backward_data",
        "aten::nll_loss_forward",
        "aten::nll_loss_backward",
        "aten::linear",
        "aten::t",
    ),
    # spconv's C++ gather / scatter-add loops and pair generation run inside these autograd
    # functions (self time), its GEMMs are aten::mm
    "spconv_cpp_gather_scatter_pairs": (
        "SubMConvFunction",
        "SubMConvFunctionBackward",
        "SparseConvFunction",
        "SparseConvFunctionBackward",
        "SparseInverseConvFunction",
        "SparseInverseConvFunctionBackward",
    ),
}


def gemm_flops(name: str, shapes: list[list[int]]) -> int:
    """Floating-point operations (2 M K N) of one GEMM op call from its profiler input shapes:
    ``aten::mm`` (M,K),(K,N); ``aten::addmm`` / ``aten::addmm_`` (M,N),(M,K),(K,N); others 0."""
    if name == "aten::mm" and len(shapes) >= 2 and len(shapes[0]) == 2 and len(shapes[1]) == 2:
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2 * m * k * n
    if (
        name in ("aten::addmm", "aten::addmm_")
        and len(shapes) >= 3
        and len(shapes[1]) == 2
        and len(shapes[2]) == 2
    ):
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2 * m * k * n
    return 0


def profile_step(run: Callable[[], Any], dev: Any) -> dict[str, Any]:
    """Self time (s) per :data:`PROFILE_CATEGORIES` category of one ``run()`` under
    torch.profiler, plus the GEMM work: ``gemm_gflop`` (from the recorded input shapes, see
    :func:`gemm_flops`) and ``gemm_gflop_per_s`` (over the GEMM category's self time)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts, record_shapes=True) as prof:
        t0 = time.perf_counter()
        run()
        sync(dev)
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
    gflop = (
        sum(
            e.count * gemm_flops(e.key, e.input_shapes)
            for e in prof.key_averages(group_by_input_shape=True)
        )
        / 1e9
    )
    gemm_s = cats.get("gemm", 0.0)
    return {
        "wall_s": wall,
        "profiled_self_s": total,
        "seconds": cats,
        "gemm_gflop": gflop,
        "gemm_gflop_per_s": gflop / gemm_s if gemm_s > 0 else None,
        "percent": {k: 100 * v / total for k, v in cats.items()} if total else {},
        "other_top": dict(sorted(other.items(), key=lambda kv: -kv[1])[:8]),
    }


def measure(spec: dict[str, Any]) -> dict[str, Any]:
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
            rec["forward"], y = timed_ms(step["forward"], dev)
            rec["backward"], _ = timed_ms(lambda: y.backward(gout), dev)
        else:
            rec["forward"], logits = timed_ms(step["forward"], dev)
            rec["backward"], _ = timed_ms(lambda: step["backward"](logits), dev)
            rec["total"] = rec["forward"] + rec["backward"]
        # CPU time of the process (all threads): robust to a busy machine for 1-thread runs
        rec["cpu"] = (time.process_time() - c0) * 1e3
        return rec

    for _ in range(int(spec["warmup"])):
        iteration()
    if spec.get("mode") == "profile":
        return {
            "impl": impl,
            "case": case,
            "threads": int(spec["threads"]),
            "device": str(dev),
            "voxels": int(coords.shape[0]),
            "profile": profile_step(iteration, dev),
        }
    # memory baseline after the warm-up: one-time costs (library buffers, thread pools)
    # excluded; pcseg's reusable scratch buffers are freed first, so the measured peak
    # includes them
    if impl == "pcseg":
        from pcseg.sparse.functional import clear_workspace

        clear_workspace()
    times: dict[str, list[float]] = {}
    with PeakMemory(dev) as mem:
        for _ in range(int(spec["repeats"])):
            for k, v in iteration().items():
                times.setdefault(k, []).append(v)
    return {
        "impl": impl,
        "case": case,
        "threads": int(spec["threads"]),
        "device": str(dev),
        "voxels": int(coords.shape[0]),
        "times_ms": times,
        "median_ms": {k: summarize(v)["median"] for k, v in times.items()},
        **mem.as_dict(),
        "versions": step.get("versions", {}),
    }


# ----------------------------------------------------------------- driver
def impl_available(impl: str, device: str) -> str | None:
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


def amp_label(device: str, threads: int, amp: str) -> str:
    """Label of the autocast pcseg run: ``pcseg_<N>t_<amp>`` on CPU, ``pcseg_<amp>`` on CUDA."""
    return f"pcseg_{amp}" if device == "cuda" else f"pcseg_{threads}t_{amp}"


def configs(
    impls: list[str], device: str, threads: int, amp: str = "none"
) -> list[tuple[str, str, int, str]]:
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
            out.append((amp_label(device, threads, amp), impl, threads, amp))
    return out


#: what the figures mean (in the JSON)
NOTES = [
    (
        "spconv runs with spconv 2.3.8's CPU fixes (pcseg.sparse.backend_spconv.patch_spconv_cpu): "
        "the CUDA-stream lookup in backward, and its racy CPU scatter-add forced to one thread; "
        "spconv_1t = everything single-threaded (correct even unpatched), "
        "spconv_Nt = GEMMs / gathers on N threads, scatter on one (correct only patched)."
    ),
    (
        "times are medians (ms) over --repeats after --warmup; cases b/c rebuild every kernel map "
        "each iteration (fresh input, as in training); peak_mib = RSS high-water over the timed "
        "iterations minus the RSS after the warm-up, measured in a separate untimed pass "
        "(1 warm-up + 1 iteration) run with MALLOC_MMAP_THRESHOLD_=131072 so that freed tensors "
        "are returned to the OS (CUDA: max_memory_allocated minus allocated before); "
        "peak_mib_default_malloc is the same figure from the timing pass (glibc's default, heap "
        "growth included)."
    ),
]


def _loadavg() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _worker_env(spec: dict[str, Any]) -> dict[str, str]:
    env = {"OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    if spec.get("mode") == "memory":
        # fixed mmap threshold: freed tensors go back to the OS at once, so the RSS high-water
        # mark measures live memory, not glibc's heap growth (it slows allocation-heavy code
        # down -- page faults on every large allocation -- hence a separate, untimed pass)
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    if spec.get("omp_wait_policy", "inherit") != "inherit":
        env["OMP_WAIT_POLICY"] = spec["omp_wait_policy"].upper()
    return env


def _measure_in_worker(spec: dict[str, Any], tmp: Path, timeout: float) -> dict[str, Any]:
    tag = f"{spec['case']}_{spec['label']}_{spec.get('mode', 'time')}"
    return run_worker(WORKER, spec, tmp, timeout, tag=tag, env=_worker_env(spec))


def _parse_list(text: str, valid: tuple[str, ...], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    for x in items:
        if x not in valid:
            raise SystemExit(f"sparse: unknown {what} {x!r} (valid: {', '.join(valid)})")
    return items


def _prepare_inputs(
    args: argparse.Namespace, cases: list[str], tmp: Path, res: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Write every case's batch (coords with batch column, feats) to ``tmp/<case>.pt``."""
    import torch

    def save(case: str, c: np.ndarray, f: Any) -> None:
        torch.save({"coords": torch.from_numpy(_batch(c)), "feats": f}, tmp / f"{case}.pt")

    inputs: dict[str, dict[str, Any]] = {}
    if "a" in cases or "b" in cases:
        c, f, src = room_scene(args.room_spacing)
        if "a" in cases:
            order = np.argsort(c[:, 0], kind="stable")[: args.voxels_a]  # crop along x
            ca = c[np.sort(order)]
            save("a", ca, torch.zeros(len(ca), 1))
            inputs["a"] = {
                "source": f"crop (lowest x) of {src} at 2 cm",
                "voxels": len(ca),
                "channels": args.channels,
            }
        if "b" in cases:
            save("b", c, torch.from_numpy(f))
            inputs["b"] = {
                "source": src + " at 2 cm",
                "voxels": len(c),
                "in_channels": 3,
                "num_classes": 13,
            }
    if "c" in cases:
        if not Path(args.kitti).is_file():
            print(f"[sparse] case c skipped: SemanticKITTI scan {args.kitti} not found")
            res["cases"]["c"] = {"skipped": f"{args.kitti} not found"}
        else:
            c, f, src = kitti_scene(Path(args.kitti))
            save("c", c, torch.from_numpy(f))
            inputs["c"] = {
                "source": src + " at 5 cm",
                "voxels": len(c),
                "in_channels": 1,
                "num_classes": 19,
            }
    return inputs


def _spec(
    args: argparse.Namespace, case: str, info: dict[str, Any], tmp: Path, **kw: Any
) -> dict[str, Any]:
    return {
        "case": case,
        "device": args.device,
        "inputs": str(tmp / f"{case}.pt"),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "channels": args.channels,
        "model": args.model,
        "in_channels": info.get("in_channels", 0),
        "num_classes": info.get("num_classes", 0),
        "omp_wait_policy": args.omp_wait_policy,
        **kw,
    }


def _run_case(
    args: argparse.Namespace, case: str, info: dict[str, Any], tmp: Path, runnable: list[str]
) -> dict[str, Any]:
    """Every configuration of one case: a timing pass, then (``--memory``) a memory pass."""
    runs: dict[str, Any] = {}
    for label, impl, nt, amp in configs(runnable, args.device, args.threads, args.amp):
        spec = _spec(args, case, info, tmp, impl=impl, label=label, threads=nt, amp=amp)
        t0 = time.perf_counter()
        r = _measure_in_worker(dict(spec, mode="time"), tmp, args.timeout)
        if "error" not in r and args.memory:
            r["peak_mib_default_malloc"] = r.pop("peak_mib")
            m = _measure_in_worker(
                dict(spec, mode="memory", warmup=1, repeats=1), tmp, args.timeout
            )
            if "error" in m:
                r["peak_mib"], r["memory_error"] = None, m["error"]
            else:
                r["peak_mib"] = m["peak_mib"]
                r["memory_pass"] = {
                    k: m[k] for k in ("baseline_rss_mib", "peak_rss_mib", "peak_mib")
                }
        runs[label] = r
        if "error" in r:
            print(f"[sparse]   {label}: ERROR {r['error']}")
        else:
            med = r["median_ms"]
            peak = f", peak {r['peak_mib']:.0f} MiB" if r.get("peak_mib") is not None else ""
            print(
                f"[sparse]   {label}: "
                + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items())
                + peak
                + f"  ({time.perf_counter() - t0:.0f} s)"
            )
    return runs


def _profile_case(
    args: argparse.Namespace, case: str, info: dict[str, Any], tmp: Path, runnable: list[str]
) -> dict[str, Any]:
    """``--profile``: one profiled iteration per implementation (single-threaded on CPU)."""
    prof: dict[str, Any] = {}
    profiled = [(impl, impl, "none") for impl in runnable]
    if args.amp != "none" and "pcseg" in runnable:
        profiled.append((f"pcseg_{args.amp}", "pcseg", args.amp))
    for name, impl, amp in profiled:
        nt = 1 if args.device == "cpu" else args.threads
        spec = _spec(
            args,
            case,
            info,
            tmp,
            impl=impl,
            label=f"{name}_prof",
            threads=nt,
            amp=amp,
            repeats=1,
            warmup=1,
            mode="profile",
        )
        r = _measure_in_worker(spec, tmp, args.timeout)
        prof[name] = r.get("profile", r)
        if "error" in r:
            print(f"[sparse]   profile {name}: ERROR {r['error']}")
            continue
        pr = r["profile"]
        parts = ", ".join(
            f"{k} {v:.2f}s ({pr['percent'][k]:.0f}%)"
            for k, v in sorted(pr["seconds"].items(), key=lambda kv: -kv[1])
            if v > 0
        )
        print(
            f"[sparse]   profile {name} ({nt} thread{'s' if nt > 1 else ''}, one iteration, "
            f"wall {pr['wall_s']:.2f}s): {parts}"
        )
        if pr.get("gemm_gflop"):
            rate = pr.get("gemm_gflop_per_s")
            print(
                f"[sparse]   profile {name}: GEMM work {pr['gemm_gflop']:.1f} GFLOP"
                + (f" at {rate:.1f} GFLOP/s" if rate else "")
            )
    return prof


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Sparse convolution benchmark: pcseg (torch backend) vs spconv vs MinkowskiEngine.

    Cases: (a) 3x3x3 sub-manifold conv C -> C on ~``voxels_a`` voxels: kernel-map build,
    forward with the map cached, backward; (b) ``model`` forward + backward on a synthetic
    S3DIS room at 2 cm (pcseg.readers.synthetic -> pcseg.readers.s3dis.read_scene ->
    pcseg.data.voxelize); (c) the same on SemanticKITTI 00/000000 at 5 cm (skipped when
    absent). Every measurement runs in its own worker process (clean peak memory). Returns
    the raw figures per case and configuration plus pcseg / peer ratios; the top-level
    ``ratio_vs_spconv`` (and ``ratio_vs_minkowski``) are case b's pcseg at ``--threads``
    over spconv at 1 thread on CPU (over spconv on CUDA).
    """
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise SystemExit("sparse: --repeats >= 1, --warmup >= 0 and --threads >= 1 are required")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("sparse: --device cuda requested but torch.cuda.is_available() is False")
    cases = _parse_list(args.cases, CASES, "case")
    impls = _parse_list(args.impls, SPARSE_IMPLS, "implementation")
    skipped = {i: r for i in impls if (r := impl_available(i, args.device)) is not None}
    runnable = [i for i in impls if i not in skipped]
    ncpu = os.cpu_count()
    res: dict[str, Any] = {
        "device": args.device,
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "model": args.model,
        "cpu_count": ncpu,
        "skipped_impls": skipped,
        "loadavg_start": _loadavg(),
        "cases": {},
        "notes": list(NOTES),
    }
    res["omp_wait_policy"] = (
        args.omp_wait_policy
        if args.omp_wait_policy != "inherit"
        else os.environ.get("OMP_WAIT_POLICY", "(unset)")
    )
    for i, r in skipped.items():
        print(f"[sparse] {i}: skipped ({r})")
    load = res["loadavg_start"]
    if load and ncpu and load[0] > ncpu and res["omp_wait_policy"].lower() != "passive":
        print(
            f"[sparse] warning: load average {load[0]:.1f} > {ncpu} CPUs; multi-threaded "
            "timings will be distorted (OpenMP spin-waits on descheduled threads); consider "
            "--omp-wait-policy passive"
        )
    with tempfile.TemporaryDirectory(prefix="pcseg_bench_sparse_") as tmpdir:
        tmp = Path(tmpdir)
        inputs = _prepare_inputs(args, cases, tmp, res)
        for case, info in inputs.items():
            print(f"[sparse] case {case}: {info['voxels']:,} voxels -- {info['source']}")
            runs = _run_case(args, case, info, tmp, runnable)
            res["cases"][case] = {**info, "runs": runs, "ratios": case_ratios(case, runs, args)}
            if args.profile:
                res["cases"][case]["profile"] = _profile_case(args, case, info, tmp, runnable)
    res["loadavg_end"] = _loadavg()
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
                res[f"ratio_{key[len('time_') :]}"] = b[key]
    print_results(res)
    return res


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
    if args.device == "cuda":
        ours, ours1, sp1, spn, me = "pcseg", "pcseg", "spconv", "spconv", "minkowski"
    else:
        ours, ours1, sp1, spn, me = (
            f"pcseg_{n}t",
            "pcseg_1t",
            "spconv_1t",
            f"spconv_{n}t",
            f"minkowski_{n}t",
        )
        if n == 1:
            ours1, sp1 = ours, spn
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
        ref_t = run_time_ms(
            runs.get(f"pcseg_{res['threads']}t" if res["device"] == "cpu" else "pcseg")
        )
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
