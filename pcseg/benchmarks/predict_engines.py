"""``pcseg benchmark predict --vs-spconv``: the network of ``pcseg predict`` on pcseg's
engine against the same weights on spconv, same tiles, same process.

    python -m pcseg.benchmarks predict --vs-spconv [--sizes 2000000,10000000]
        [--engines unfused,fused,bf16,spconv] [--engine-threads 1,2] [--voxel-budget 100000]
        [--voxel-size 0.5] [--planes 16] [--json FILE]

For every size, one synthetic airborne scene (``outdoor``: the predict benchmark's
:func:`pcseg.benchmarks.predict.synthetic_outdoor`, passed in by it), voxelized in memory
as ``pcseg predict`` does (the first point of a voxel representing it), is cut into tiles
once (:func:`pcseg.inference.tiling.make_tiles`); every engine runs the
same tile loop (:func:`pcseg.inference.tiling.run_tiles`) over those tiles, one after the
other in this process (so a busy machine slows every engine alike):

* ``unfused``: the eval-mode MinkUNet14A with its batch norms, the engine's training-time
  neighbour tables (the prediction path before the fused one);
* ``fused``: what ``pcseg predict`` runs (:mod:`pcseg.inference.predictor`);
* ``bf16``: the fused network with bf16 GEMMs (CPUs with native bfloat16 only);
* ``spconv``: the unfused network's weights loaded into the same MinkUNet on the spconv
  backend (:func:`pcseg.sparse.backend_spconv.state_dict_to_spconv`); one thread only
  (spconv's CPU scatter is only correct single-threaded).

Figures per engine x thread count: seconds of the tile loop and points/s (scene points over
those seconds; voxelization and I/O excluded, they are the same for every engine), CPU
seconds, peak memory above the level before the loop (:class:`pcseg.benchmarks.harness.
PeakMemory`), labels equal to ``unfused`` on one thread (share of points) and the largest
confidence difference. Ratios: points/s against spconv and against unfused at the same
thread count, and CPU time over the GEMM-bound limit: the FLOPs of every convolution of
every tile (2 x pairs x C_in x C_out, counted from the kernel maps by :func:`conv_gemms`)
at ``torch.mm``'s rate measured on the same GEMM shapes and thread count, in process CPU
seconds as well (:func:`gemm_limit_seconds`; CPU time, not wall time, so that other load
on the machine cancels out of the ratio).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pcseg.benchmarks.harness import Column, PeakMemory, print_table, ratio

ENGINES = ("unfused", "fused", "bf16", "spconv")


@dataclass(frozen=True)
class Gemm:
    """One GEMM of a convolution: ``rows`` x ``cin`` times ``cin`` x ``cout``."""

    rows: int
    cin: int
    cout: int

    @property
    def flops(self) -> int:
        """2 * rows * cin * cout."""
        return 2 * self.rows * self.cin * self.cout


def conv_gemms(model: nn.Module, run: Callable[[], Any]) -> list[Gemm]:
    """The GEMMs of every pcseg-engine convolution (and ``nn.Linear``) of ``model`` during
    ``run()``: one per kernel offset with pairs (rows = its pairs; the submanifold centre:
    every voxel), one per 1x1 conv / linear layer (rows = voxels). Read from the kernel maps
    the layers use (cached in the coordinate manager: nothing is rebuilt)."""
    from pcseg.sparse.nn import Conv3d, ConvTranspose3d, SubMConv3d

    out: list[Gemm] = []

    def hook(mod: Any, args: tuple[Any, ...], _res: Any) -> None:
        x = args[0]
        if isinstance(mod, nn.Linear):
            out.append(Gemm(int(x.shape[0]), mod.in_features, mod.out_features))
            return
        cin, cout, ks, dil = mod.in_channels, mod.out_channels, mod.kernel_size, mod.dilation
        if isinstance(mod, SubMConv3d) and ks == 1:
            out.append(Gemm(len(x), cin, cout))
            return
        if isinstance(mod, SubMConv3d):
            km = x.manager.kernel_map(x.stride, x.stride, ks, dil, "subm")
        elif isinstance(mod, Conv3d):
            km = x.manager.kernel_map(x.stride, 2 * x.stride, ks, dil, "down")
        else:
            km = x.manager.kernel_map(x.stride, x.stride // 2, ks, dil, "up")
        rows = list(km.counts)
        if km.identity is not None:
            rows[km.identity] = km.n_in
        out.extend(Gemm(r, cin, cout) for r in rows if r)

    kinds = (SubMConv3d, Conv3d, ConvTranspose3d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return out


def _rows_bucket(rows: int) -> int:
    """The power of two nearest ``rows`` (at least 64): GEMMs are timed per bucket."""
    return max(64, 1 << max(0, round(np.log2(max(rows, 1)))))


def mm_rate(rows: int, cin: int, cout: int, min_seconds: float = 0.05) -> float:
    """FLOP/s of ``torch.mm`` (rows x cin) @ (cin x cout) into a preallocated output, at the
    current thread count, per second of process CPU time (all threads; robust to other load
    on the machine): best of repeated runs over at least ``min_seconds``."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(rows, cin, generator=g)
    w = torch.randn(cin, cout, generator=g)
    y = torch.empty(rows, cout)
    torch.mm(a, w, out=y)
    reps = max(1, int(2e7 // max(2 * rows * cin * cout, 1)))  # >= ~20 MFLOP a sample
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        t0 = time.process_time()
        for _ in range(reps):
            torch.mm(a, w, out=y)
        dt = (time.process_time() - t0) / reps
        best, spent = min(best, dt), spent + dt * reps
    return 2 * rows * cin * cout / max(best, 1e-9)


def gemm_limit_seconds(gemms: list[Gemm], min_seconds: float = 0.05) -> float:
    """CPU seconds the ``gemms`` take at ``torch.mm``'s measured rate: FLOPs of each
    (C_in, C_out, rows bucket) group over the rate measured on that bucket's shape."""
    groups: dict[tuple[int, int, int], int] = {}
    for g in gemms:
        key = (_rows_bucket(g.rows), g.cin, g.cout)
        groups[key] = groups.get(key, 0) + g.flops
    return sum(fl / mm_rate(r, ci, co, min_seconds) for (r, ci, co), fl in groups.items())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``--vs-spconv`` (the sizes, budget, voxel size, planes, json are the
    ``predict`` benchmark's own)."""
    p.add_argument(
        "--vs-spconv",
        action="store_true",
        help="compare the prediction engines (fused / unfused / bf16 pcseg, spconv) on the "
        "same tiles in one process instead of the tiling benchmark",
    )
    p.add_argument("--engines", default=",".join(ENGINES), help="engines of --vs-spconv")
    p.add_argument(
        "--engine-threads", default="1,2", help="thread counts of --vs-spconv (spconv: 1 only)"
    )
    p.add_argument(
        "--gemm-sample-seconds",
        type=float,
        default=0.05,
        help="CPU seconds torch.mm is timed on each GEMM shape of the limit",
    )


#: ``(n, seed) -> {"xyz", "intensity", ...}``: a synthetic scene of n points
SceneFn = Callable[..., dict[str, np.ndarray]]
#: ``(voxel_size, planes, fuse) -> Predictor``: a randomly initialised network
PredictorFn = Callable[..., Any]


def _scene(n: int, voxel_size: float, outdoor: SceneFn) -> dict[str, np.ndarray]:
    """The synthetic scene voxelized as ``pcseg predict`` does (test mode): voxels, their
    representative points and features, and every point's voxel."""
    from pcseg.data.voxelize import voxelize

    d = outdoor(n, seed=0)
    xyz = d["xyz"].astype(np.float32)
    v = voxelize(xyz, voxel_size, "test", feats=(d["intensity"][:, None] / 4096.0))
    assert v.feats is not None
    return {
        "vox": v.voxel_coords.astype(np.int64),
        "pts": xyz[v.point_index],
        "feats": v.feats.astype(np.float32),
        "inverse": v.inverse,
    }


def _predictors(
    voxel_size: float, planes: int, engines: list[str], make: PredictorFn
) -> tuple[dict[str, Any], Any]:
    """(engine name -> Predictor in :data:`ENGINES` order, the fused predictor), all with
    the weights of one randomly initialised network ``make(voxel_size, planes, fuse=False)``."""
    from pcseg.inference.predictor import bf16_supported
    from pcseg.models.minkunet import fused_for_inference
    from pcseg.sparse.tensor import DENSE_CELLS_PER_VOXEL

    plain = make(voxel_size, planes, fuse=False)
    out: dict[str, Any] = {}
    if "unfused" in engines:
        out["unfused"] = dataclasses.replace(plain, dense_cells_per_voxel=DENSE_CELLS_PER_VOXEL)
    fused = dataclasses.replace(plain, model=fused_for_inference(plain.model))
    if "fused" in engines:
        out["fused"] = fused
    if "bf16" in engines and bf16_supported():
        out["bf16"] = dataclasses.replace(fused, precision="bf16")
    if "spconv" in engines:
        from pcseg.sparse.backend_spconv import state_dict_to_spconv

        net = type(plain.model)(1, len(plain.class_names), backend="spconv")
        net.load_state_dict(state_dict_to_spconv(plain.model.state_dict()))
        out["spconv"] = dataclasses.replace(plain, model=net.eval())
    return out, fused


def _measure(
    pred: Any, sc: dict[str, np.ndarray], tiles: list[Any]
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(seconds, CPU seconds and peak memory of the tile loop; voxel classes, confidences)."""
    from pcseg.inference.tiling import run_tiles

    with PeakMemory() as mem:
        c0, t0 = time.process_time(), time.perf_counter()
        v_pred, v_conf, _, _ = run_tiles(pred, sc["vox"], sc["pts"], sc["feats"], tiles)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": sec, "cpu_seconds": cpu, "peak_mib": mem.peak_mib}, v_pred, v_conf


def _gemms_of_tiles(pred: Any, sc: dict[str, np.ndarray], tiles: list[Any]) -> list[Gemm]:
    from pcseg.inference.tiling import run_tiles

    return conv_gemms(pred.model, lambda: run_tiles(pred, sc["vox"], sc["pts"], sc["feats"], tiles))


def measure_size(
    n: int, args: argparse.Namespace, outdoor: SceneFn, make: PredictorFn
) -> dict[str, Any]:
    """Every engine x thread count on the tiles of the ``n``-point scene ``outdoor(n)``
    with the network of ``make`` (see the module docstring); returns the size's record
    with one entry per run."""
    from pcseg.inference.tiling import make_tiles, margin_voxels

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    threads = [int(t) for t in str(args.engine_threads).split(",") if t.strip()]
    sc = _scene(n, args.voxel_size, outdoor)
    tiles = make_tiles(sc["vox"], args.voxel_budget, margin_voxels(args.voxel_size, args.overlap))
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or not threads or min(threads) < 1:
        raise SystemExit(
            f"predict --vs-spconv: engines must be among {ENGINES} (got {unknown}), "
            f"threads >= 1 (got {threads})"
        )
    preds, fused = _predictors(args.voxel_size, args.planes, engines, make)
    gemms = _gemms_of_tiles(fused, sc, tiles)
    rec: dict[str, Any] = {
        "points": n,
        "voxels": len(sc["vox"]),
        "tiles": len(tiles),
        "gemm_gflop": sum(g.flops for g in gemms) / 1e9,
        "runs": [],
    }
    if "spconv" in preds:
        from pcseg.sparse.backend_spconv import patch_spconv_cpu

        patch_spconv_cpu()
    ref: tuple[np.ndarray, np.ndarray] | None = None
    for t in threads:
        torch.set_num_threads(t)
        limit = gemm_limit_seconds(gemms, args.gemm_sample_seconds)
        rec.setdefault("gemm_limit_seconds", {})[str(t)] = limit
        for name, pred in preds.items():
            if name == "spconv" and t != 1:
                continue
            r, v_pred, v_conf = _measure(pred, sc, tiles)
            ref = ref if ref is not None else (v_pred, v_conf)
            inv = sc["inverse"]
            r.update(
                engine=name,
                threads=t,
                points_per_second=n / r["seconds"],
                vs_gemm_limit=ratio(r["cpu_seconds"], limit),
                labels_equal=float(np.mean(v_pred[inv] == ref[0][inv])),
                max_conf_diff=float(np.abs(v_conf - ref[1]).max()) if len(v_conf) else 0.0,
            )
            rec["runs"].append(r)
    _add_ratios(rec["runs"])
    return rec


def _add_ratios(runs: list[dict[str, Any]]) -> None:
    """points/s against spconv (its one-thread run) and against unfused at the same thread
    count; peak memory against spconv's."""
    sp: dict[str, Any] = next((r for r in runs if r["engine"] == "spconv"), {})
    unf = {r["threads"]: r for r in runs if r["engine"] == "unfused"}
    for r in runs:
        u: dict[str, Any] = unf.get(r["threads"], {})
        r["speed_vs_spconv"] = ratio(r["points_per_second"], sp.get("points_per_second"))
        r["speed_vs_unfused"] = ratio(r["points_per_second"], u.get("points_per_second"))
        r["memory_vs_spconv"] = ratio(r["peak_mib"], sp.get("peak_mib"))


COLUMNS = (
    Column("engine", 8),
    Column("thr", 3, "d"),
    Column("points", 11, ",d"),
    Column("seconds", 8, ".2f"),
    Column("cpu s", 8, ".2f"),
    Column("points/s", 10, ",.0f"),
    Column("/spconv", 7, ".2f"),
    Column("/unfused", 8, ".2f"),
    Column("/GEMM", 6, ".2f"),
    Column("peak MiB", 8, ",.0f"),
    Column("mem/spc", 7, ".2f"),
    Column("labels=", 8, ".4%"),
    Column("dconf", 8, ".1e"),
)


def run(
    args: argparse.Namespace, sizes: list[int], outdoor: SceneFn, make: PredictorFn
) -> dict[str, Any]:
    """``--vs-spconv``: :func:`measure_size` for every size (scenes of ``outdoor``, the
    network of ``make``); prints one table with every ratio. Returns ``{"sizes",
    "voxel_budget", ..., "results": [size records]}``."""
    from pcseg.benchmarks.harness import loadavg

    res: dict[str, Any] = {
        "benchmark": "predict --vs-spconv",
        "sizes": sizes,
        "voxel_budget": args.voxel_budget,
        "voxel_size": args.voxel_size,
        "planes": args.planes,
        "loadavg_before": loadavg(),
        "results": [measure_size(n, args, outdoor, make) for n in sizes],
        "loadavg_after": loadavg(),
    }
    print(
        f"predict engines: MinkUNet14A ({args.planes} planes) at {args.voxel_size} m, tiles of "
        f"<= {args.voxel_budget:,} voxels, one process; /spconv, /unfused: points/s ratios; "
        "/GEMM: CPU time over the GEMM-bound limit; labels=: points labelled as unfused, 1 thread"
    )
    rows: list[Any] = []
    for rec in res["results"]:
        lim = ", ".join(f"{t} thr {s:.2f} s" for t, s in rec.get("gemm_limit_seconds", {}).items())
        rows.append(
            f"{rec['points']:,} points, {rec['voxels']:,} voxels, {rec['tiles']} tiles, "
            f"{rec['gemm_gflop']:.1f} GFLOP of convolutions; GEMM-bound limit: {lim}"
        )
        for r in rec["runs"]:
            rows.append([r["engine"], r["threads"], rec["points"]] + [r.get(k) for k in _KEYS])
    print_table(COLUMNS, rows)
    return res


_KEYS = (
    "seconds",
    "cpu_seconds",
    "points_per_second",
    "speed_vs_spconv",
    "speed_vs_unfused",
    "vs_gemm_limit",
    "peak_mib",
    "memory_vs_spconv",
    "labels_equal",
    "max_conf_diff",
)
