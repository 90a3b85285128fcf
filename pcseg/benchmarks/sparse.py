"""Sparse-convolution benchmark: pcseg (torch backend) vs spconv vs MinkowskiEngine.

    python -m pcseg.benchmarks sparse [--device cpu|cuda] [--threads 2] [--cases a,b,c]
        [--impls pcseg,spconv,minkowski] [--amp none|bf16|fp16] [--profile] [--json FILE]
        [--real-data DIR]

Cases: (a) sub-manifold 3x3x3 ``C -> C`` conv on a crop of the room (kernel-map build,
forward with the map cached, backward); (b) MinkUNet34C forward + backward on a synthetic
S3DIS room at 2 cm (>= 100k voxels at the default surface spacing); (c) the same on the real
SemanticKITTI scan 00/000000 at 5 cm, read from ``--real-data DIR`` (default
``$PCSEG_REAL_DATA``; skipped when neither is given or the scan is absent). Implementations
not importable are reported as skipped. Every measurement runs in its own worker process
(:func:`pcseg.benchmarks.harness.run_worker`): median ms, peak memory (a separate untimed
pass), and pcseg / peer ratios; the headline ``ratio_vs_spconv`` is case b's pcseg at
``--threads`` over spconv single-threaded on CPU.

The pieces: inputs in :mod:`~pcseg.benchmarks.scenes`, one measurement (the worker) in
:mod:`~pcseg.benchmarks.sparse_measure`, the op-time breakdown in
:mod:`~pcseg.benchmarks.profiling`, the run list in :mod:`~pcseg.benchmarks.sparse_runs`,
ratios and tables in :mod:`~pcseg.benchmarks.sparse_tables`; this module parses the options
and drives the workers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.benchmarks.harness import loadavg, run_worker, worker_env
from pcseg.benchmarks.scenes import (
    KITTI_SCAN,
    REAL_DATA_ENV,
    default_real_data,
    kitti_scan_path,
    kitti_scene,
    missing_scan_reason,
    room_scene,
    with_batch_column,
)
from pcseg.benchmarks.sparse_measure import impl_available
from pcseg.benchmarks.sparse_runs import configs
from pcseg.benchmarks.sparse_tables import (
    case_ratios,
    headline_ratios,
    print_results,
    profile_lines,
    run_line,
)

#: implementations the benchmark knows (``--impls``)
SPARSE_IMPLS = ("pcseg", "spconv", "minkowski")
#: benchmark cases (``--cases``)
CASES = ("a", "b", "c")
#: worker target of one measurement
WORKER = "pcseg.benchmarks.sparse_measure:measure"


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
    p.add_argument(
        "--real-data",
        type=Path,
        default=default_real_data(),
        metavar="DIR",
        help=f"folder of the real scans; case c reads DIR/{KITTI_SCAN} (default: "
        f"${REAL_DATA_ENV}; case c is skipped when neither is given)",
    )
    p.add_argument(
        "--kitti",
        type=Path,
        default=None,
        metavar="FILE",
        help="case c: this SemanticKITTI .bin scan instead of the one under --real-data",
    )
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


def _measure_in_worker(spec: dict[str, Any], tmp: Path, timeout: float) -> dict[str, Any]:
    tag = f"{spec['case']}_{spec['label']}_{spec.get('mode', 'time')}"
    env = worker_env(
        int(spec["threads"]),
        spec.get("omp_wait_policy", "inherit"),
        memory_pass=spec.get("mode") == "memory",
    )
    return run_worker(WORKER, spec, tmp, timeout, tag=tag, env=env)


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
        torch.save(
            {"coords": torch.from_numpy(with_batch_column(c)), "feats": f}, tmp / f"{case}.pt"
        )

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
        scan = kitti_scan_path(args.real_data, args.kitti)
        why = missing_scan_reason(scan)
        if scan is None or why is not None:
            print(f"[sparse] case c skipped: SemanticKITTI scan: {why}")
            res["cases"]["c"] = {"skipped": why}
        else:
            c, f, src = kitti_scene(scan)
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
        print(run_line(label, r, time.perf_counter() - t0))
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
        for line in profile_lines(name, nt, r):
            print(line)
    return prof


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Sparse convolution benchmark: pcseg (torch backend) vs spconv vs MinkowskiEngine.

    Cases: (a) 3x3x3 sub-manifold conv C -> C on ~``voxels_a`` voxels: kernel-map build,
    forward with the map cached, backward; (b) ``model`` forward + backward on a synthetic
    S3DIS room at 2 cm (pcseg.readers.synthetic -> pcseg.readers.s3dis.read_scene ->
    pcseg.data.voxelize); (c) the same on SemanticKITTI 00/000000 at 5 cm under
    ``--real-data`` (skipped without a folder or when absent). Every measurement runs in
    its own worker process (clean peak memory). Returns the raw figures per case and
    configuration plus pcseg / peer ratios; the top-level
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
        "loadavg_start": loadavg(),
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
    res["loadavg_end"] = loadavg()
    if args.amp != "none":
        res["amp"] = args.amp
    res.update(headline_ratios(res["cases"].get("b", {}).get("ratios", {}), args.amp))
    print_results(res)
    return res
