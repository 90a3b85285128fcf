"""Tiled prediction of large scenes: points/s, tiles, overlap cost and peak memory.

    python -m pcseg.benchmarks predict [--sizes 2000000,5000000,10000000]
        [--voxel-budget 100000] [--voxel-size 0.5] [--overlap M] [--chunk-points 1000000]
        [--threads 1] [--untiled-max-voxels 3000000] [--no-in-memory] [--format las|ply]
        [--json FILE]

Synthetic airborne-style LAS tiles (:func:`synthetic_outdoor`: sloped ground, box
buildings, round trees, low vegetation at 4 points / m^2, so a scene grows in AREA with its
size; UTM-like offsets) are predicted by a small randomly initialised MinkUNet14A on the CPU,
each run in a fresh worker process (:func:`pcseg.benchmarks.harness.run_worker`) so that its
peak RSS (``ru_maxrss``, includes the interpreter and torch, ~300 MiB) is its own:

* ``stream``: the out-of-core path of ``pcseg predict`` (:mod:`pcseg.inference.streamed`,
  LAS in, labelled LAS out; ``--format ply``: binary PLY in and out): its peak memory is set
  by ``--voxel-budget`` and ``--chunk-points``, so it must stay flat as the scene grows
  (``memory_vs_first`` near 1);
* ``in_memory``: the in-memory tiled path (file read whole) for comparison (unless
  ``--no-in-memory``);
* ``untiled``: one network pass over the whole scene where it has at most
  ``--untiled-max-voxels`` voxels (estimated; default: the 2M scene).

Overlap cost: voxel visits beyond one per voxel / voxels (the extra network work the tile
overlaps cost). Ratios are against the first (smallest) size of the same mode.

``--vs-spconv`` instead compares the prediction engines (fused / unfused / bf16 pcseg and
the same weights on spconv) on the same tiles in one process, with the GEMM-bound limit:
:mod:`pcseg.benchmarks.predict_engines`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.benchmarks import predict_engines
from pcseg.benchmarks.harness import Column, print_table, ratio, rss_mib, run_worker

#: ASPRS codes of the synthetic classes
ASPRS = {"ground": 2, "low_vegetation": 3, "high_vegetation": 5, "building": 6}
UTM_OFFSET = (2_445_000.0, 2_445_000.0, 100.0)
#: points generated and written at a time by :func:`write_synthetic_las`
WRITE_CHUNK = 1_000_000
MODES = ("stream", "in_memory", "untiled")


def synthetic_outdoor(
    n: int,
    seed: int = 0,
    density: float = 4.0,
    side: float | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """``n`` points of an outdoor tile (``density`` points per m^2 of ground area, or a
    square of ``side`` metres): ``xyz`` (n, 3) float64 local metres, ``classification``
    (n,) uint8 ASPRS codes, ``intensity`` (n,) uint16 (class-dependent). ``rng``: draw
    from this generator (default: seeded by ``seed``)."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    side = float(side) if side is not None else float(np.sqrt(n / density))
    xy = rng.random((n, 2)) * side
    z = 0.02 * xy[:, 0] + 0.5 * np.sin(xy[:, 1] / 40.0)
    cls = np.full(n, ASPRS["ground"], dtype=np.uint8)
    cell = float(np.clip(side / 4.0, 8.0, 40.0))  # one structure per cell
    cx, cy = np.floor_divide(xy, cell).T.astype(np.int64)
    k = (cx + 2 * cy + seed) % 4  # every kind in every 2 x 2 cells
    local = np.mod(xy, cell) - cell / 2
    bld = (k == 1) & (np.abs(local[:, 0]) < 0.3 * cell) & (np.abs(local[:, 1]) < 0.22 * cell)
    z[bld] += 8.0 + 0.3 * (local[bld, 0] > 0)
    cls[bld] = ASPRS["building"]
    r = np.hypot(local[:, 0], local[:, 1])
    rt = 0.18 * cell
    tree = (k == 2) & (r < rt)
    z[tree] += 6.0 + np.sqrt(np.maximum(rt**2 - r[tree] ** 2, 0)) * rng.random(tree.sum())
    cls[tree] = ASPRS["high_vegetation"]
    low = (k == 3) & (r < 0.3 * cell)
    z[low] += 0.3 + 0.4 * rng.random(low.sum())
    cls[low] = ASPRS["low_vegetation"]
    lut = np.zeros(7, dtype=np.int64)
    lut[[2, 3, 5, 6]] = [1200, 2600, 1800, 3400]
    intensity = np.clip(lut[cls] + rng.normal(0, 150, n), 0, 65535).astype(np.uint16)
    z += rng.normal(0, 0.03, n)
    return {"xyz": np.column_stack([xy, z]), "classification": cls, "intensity": intensity}


def write_synthetic_las(
    path: str | Path,
    n: int,
    seed: int = 0,
    offset: Sequence[float] = UTM_OFFSET,
    label_fraction: float = 1.0,
) -> Path:
    """A LAS 1.2 point format 1 file of :func:`synthetic_outdoor` at ``offset`` (scale 1 cm),
    written :data:`WRITE_CHUNK` points at a time (one square scene, points in random order);
    with ``label_fraction`` < 1 only that random share of points keeps its code, the rest
    is 1 (unclassified)."""
    import laspy  # type: ignore[import-untyped]

    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.asarray(offset, dtype=np.float64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = float(np.sqrt(n / 4.0))
    rng = np.random.default_rng(seed)
    keep_rng = np.random.default_rng([seed, 2])
    with laspy.open(str(path), mode="w", header=header) as w:
        for start in range(0, n, WRITE_CHUNK):
            m = min(WRITE_CHUNK, n - start)
            d = synthetic_outdoor(m, seed, side=side, rng=rng)
            rec = laspy.ScaleAwarePointRecord.zeros(m, header=header)
            xyz = d["xyz"] + np.asarray(offset)
            rec.x, rec.y, rec.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
            cls = d["classification"].copy()
            if label_fraction < 1.0:
                cls[keep_rng.random(m) >= label_fraction] = 1
            rec.classification = cls
            rec.intensity = d["intensity"]
            rec.return_number = np.ones(m, dtype=np.uint8)
            rec.number_of_returns = np.ones(m, dtype=np.uint8)
            rec.gps_time = (start + np.arange(m, dtype=np.float64)) * 1e-5
            w.write_points(rec)
    return path


def tiny_predictor(
    voxel_size: float, planes: int = 16, fuse: bool = True, precision: str = "fp32"
) -> Any:
    """A randomly initialised MinkUNet14A predictor on the CPU (timing and tests only):
    ``planes`` channels at every level, or the stock widths (32 ... 256) when ``planes`` is
    0; ``fuse``: batch norms folded as :func:`pcseg.inference.predictor.load_predictor` does."""
    import torch

    from pcseg.inference.predictor import Predictor
    from pcseg.models import MODELS
    from pcseg.models.minkunet import fused_for_inference
    from pcseg.readers.custom import ClassesSpec

    torch.manual_seed(0)
    names = list(ASPRS)
    net = (
        type(
            "MinkUNet14ABench",
            (MODELS["MinkUNet14A"],),
            {"PLANES": (planes,) * 8, "INIT_DIM": planes},
        )
        if planes > 0
        else MODELS["MinkUNet14A"]
    )
    model = net(1, len(names)).eval()
    if fuse:
        model = fused_for_inference(model)
    spec = ClassesSpec(
        names=names,
        voxel_size=voxel_size,
        features=["intensity"],
        label_field="classification",
        map={v: k for k, v in ASPRS.items()},
    )
    return Predictor(
        model=model,
        spec=spec,
        class_names=names,
        voxel_size=voxel_size,
        feature_keys=("remission",),
        in_channels=1,
        device=torch.device("cpu"),
        precision=precision,
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the ``predict`` subcommand (``--vs-spconv``: :mod:`.predict_engines`)."""
    predict_engines.add_arguments(p)
    p.add_argument(
        "--sizes", default="2000000,5000000,10000000", help="comma-separated scene sizes in points"
    )
    p.add_argument("--voxel-budget", type=int, default=100_000)
    p.add_argument("--voxel-size", type=float, default=0.5)
    p.add_argument("--overlap", type=float, default=None, help="metres (default 16 voxels)")
    p.add_argument(
        "--chunk-points",
        type=int,
        default=1_000_000,
        help="points per chunk (and per tile) of the streaming path",
    )
    p.add_argument(
        "--planes", type=int, default=16, help="width of the MinkUNet14A (0: its stock widths)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument(
        "--untiled-max-voxels",
        type=int,
        default=3_000_000,
        help="run untiled only where the scene has at most this many voxels",
    )
    p.add_argument(
        "--no-in-memory",
        dest="in_memory",
        action="store_false",
        help="skip the in-memory tiled runs",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per worker")
    p.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: a temp)")
    p.add_argument("--json", type=Path, default=None, help="write results to this JSON file")
    p.add_argument(
        "--format",
        choices=["las", "ply"],
        default="las",
        help="file format of the scenes (ply: binary, converted from the LAS)",
    )


def las_to_binary_ply(src: str | Path, out: str | Path, chunk_points: int = WRITE_CHUNK) -> Path:
    """The points of a LAS as a binary little-endian PLY (float64 x, y, z, uint16 intensity,
    uint8 classification), converted chunk by chunk (memory O(chunk))."""
    from pcseg.io.stream import PLY_TYPE_NAMES, iter_chunks, stream_count

    descr = [("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("intensity", "<u2")]
    dtype = np.dtype(descr + [("classification", "u1")])
    props = [f"property {PLY_TYPE_NAMES[dtype[n].str[1:]]} {n}" for n in dtype.names or ()]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {stream_count(src)}"]
    out = Path(out)
    with open(out, "wb") as fh:
        fh.write(("\n".join([*header, *props, "end_header"]) + "\n").encode("ascii"))
        for chunk in iter_chunks(src, chunk_points):
            rec = np.empty(len(chunk.xyz), dtype=dtype)
            rec["x"], rec["y"], rec["z"] = chunk.xyz.T
            rec["intensity"] = np.asarray(chunk.record.intensity)
            rec["classification"] = np.asarray(chunk.record.classification)
            fh.write(rec.tobytes())
    return out


def make_scene(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: write the synthetic scene of ``spec['points']`` points to ``spec['path']``
    (LAS, or binary PLY converted from it when the path ends in ``.ply``)."""
    path = Path(spec["path"])
    if path.suffix == ".ply":
        las = write_synthetic_las(path.with_suffix(".las"), int(spec["points"]), seed=0)
        las_to_binary_ply(las, path)
        las.unlink()
    else:
        write_synthetic_las(path, int(spec["points"]), seed=0)
    return {"path": spec["path"]}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: predict ``spec['path']`` in ``spec['mode']`` (see the module docstring);
    the process's peak RSS is the figure (one run per process)."""
    import torch

    from pcseg.inference.files import predict_file

    torch.set_num_threads(int(spec["threads"]))
    pred = tiny_predictor(float(spec["voxel_size"]), int(spec["planes"]))
    mode = spec["mode"]
    before, _ = rss_mib()
    t0 = time.perf_counter()
    with torch.no_grad():
        r = predict_file(
            pred,
            Path(spec["path"]),
            Path(spec["out"]),
            voxel_budget=None if mode == "untiled" else int(spec["budget"]),
            overlap=spec["overlap"],
            stream="always" if mode == "stream" else "never",
            chunk_points=int(spec["chunk_points"]),
        )
    sec = time.perf_counter() - t0
    _, peak = rss_mib()
    Path(r["output"]).unlink(missing_ok=True)
    return {
        "mode": mode,
        "points": int(r["points"]),
        "seconds": sec,
        "points_per_second": r["points"] / sec,
        "tiles": int(r["tiles"]),
        "voxels": int(r["voxels"]),
        "overlap_cost": float(r["overlap_cost"]),
        "max_tile_voxels": r.get("max_tile_voxels"),
        "streamed": bool(r["streamed"]),
        "peak_rss_mib": peak,
        "rss_before_mib": before,
    }


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError as e:
        raise SystemExit(f"predict: --sizes must be comma-separated integers, got {text!r}") from e
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"predict: --sizes must be >= 1, got {text!r}")
    return sizes


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every size in every mode, each in its own worker; table with ratios to the first size."""
    sizes = _sizes(args.sizes)
    if args.voxel_budget < 1 or args.chunk_points < 1:
        raise SystemExit("predict: --voxel-budget >= 1 and --chunk-points >= 1 are required")
    if args.vs_spconv:
        return predict_engines.run(args, sizes, synthetic_outdoor, tiny_predictor)
    modes = ["stream"] + (["in_memory"] if args.in_memory else [])
    res: dict[str, Any] = {
        "sizes": sizes,
        "voxel_budget": args.voxel_budget,
        "voxel_size": args.voxel_size,
        "overlap_m": args.overlap,
        "chunk_points": args.chunk_points,
        "threads": args.threads,
        "format": args.format,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="pcseg_predict_bench_", dir=args.tmp) as tmpdir:
        tmp = Path(tmpdir)
        for n in sizes:
            scene = tmp / f"scene_{n}.{args.format}"
            made = run_worker(
                "pcseg.benchmarks.predict:make_scene",
                {"points": n, "path": str(scene)},
                tmp,
                args.timeout,
                tag=f"make_{n}",
            )
            if "error" in made:
                res["runs"].append({"mode": "make_scene", "points": n, **made})
                continue
            # measured: ~0.67 voxels a point at 4 points / m^2 and 0.5 m (1 point a column)
            est_vox = 0.7 * n * min(1.0, 1.0 / (4.0 * args.voxel_size**2))
            todo = modes + (["untiled"] if est_vox <= args.untiled_max_voxels else [])
            for mode in todo:
                spec = {
                    "path": str(scene),
                    "out": str(tmp / f"out_{mode}"),
                    "mode": mode,
                    "budget": args.voxel_budget,
                    "voxel_size": args.voxel_size,
                    "overlap": args.overlap,
                    "chunk_points": args.chunk_points,
                    "threads": args.threads,
                    "planes": args.planes,
                }
                r = run_worker(
                    "pcseg.benchmarks.predict:measure", spec, tmp, args.timeout, tag=f"{mode}_{n}"
                )
                r.setdefault("mode", mode)
                r.setdefault("points", n)
                res["runs"].append(r)
                if "error" in r:
                    print(f"[predict bench] {n:,} {mode}: {r['error']}")
            scene.unlink(missing_ok=True)
    first: dict[str, dict[str, Any]] = {}
    for r in res["runs"]:
        if "error" in r:
            continue
        f = first.setdefault(r["mode"], r)
        r["memory_vs_first"] = ratio(r["peak_rss_mib"], f["peak_rss_mib"])
        r["speed_vs_first"] = ratio(r["points_per_second"], f["points_per_second"])
    cols = (
        Column("mode", 9),
        Column("points", 11, ",d"),
        Column("points/s", 10, ",.0f"),
        Column("tiles", 6, "d"),
        Column("voxels", 10, ",d"),
        Column("overlap", 8, ".1%"),
        Column("peak MiB", 9, ",.0f"),
        Column("mem/first", 9, ".2f"),
        Column("pps/first", 9, ".2f"),
    )
    rows = [
        [
            r["mode"],
            r["points"],
            r.get("points_per_second"),
            r.get("tiles"),
            r.get("voxels"),
            r.get("overlap_cost"),
            r.get("peak_rss_mib"),
            r.get("memory_vs_first"),
            r.get("speed_vs_first"),
        ]
        for r in sorted(
            res["runs"],
            key=lambda r: (MODES.index(r["mode"]) if r["mode"] in MODES else 9, r["points"]),
        )
        if "error" not in r
    ]
    print(
        f"predict benchmark: voxel budget {args.voxel_budget:,} at {args.voxel_size} m, "
        f"chunk {args.chunk_points:,} points, {args.threads} thread(s); ratios against "
        f"{sizes[0]:,} points of the same mode"
    )
    print_table(cols, rows)
    return res
