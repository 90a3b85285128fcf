"""Synthetic airborne-style tiles and the ``predict`` benchmark (points/s, peak memory).

:func:`synthetic_outdoor` makes an outdoor scene (sloped ground, box buildings, round trees,
low vegetation) with ASPRS codes and intensities; :func:`write_synthetic_las` writes it as a
LAS with UTM-like offsets (about 2,445,000 m). :func:`benchmark_predict` times tiled (and,
where it fits, untiled) prediction of such scenes with a small MinkUNet and reports
points/s, the overlap cost and the peak resident memory of a child process per run.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: ASPRS codes of the synthetic classes
ASPRS = {"ground": 2, "low_vegetation": 3, "high_vegetation": 5, "building": 6}
UTM_OFFSET = (2_445_000.0, 2_445_000.0, 100.0)


def synthetic_outdoor(n: int, seed: int = 0, density: float = 4.0) -> dict[str, np.ndarray]:
    """``n`` points of an outdoor tile (``density`` points per m^2 of ground area): ``xyz``
    (n, 3) float64 local metres, ``classification`` (n,) uint8 ASPRS codes, ``intensity``
    (n,) uint16 (class-dependent)."""
    rng = np.random.default_rng(seed)
    side = float(np.sqrt(n / density))
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
    z[tree] += 6.0 + np.sqrt(np.maximum(rt ** 2 - r[tree] ** 2, 0)) * rng.random(tree.sum())
    cls[tree] = ASPRS["high_vegetation"]
    low = (k == 3) & (r < 0.3 * cell)
    z[low] += 0.3 + 0.4 * rng.random(low.sum())
    cls[low] = ASPRS["low_vegetation"]
    base = {2: 1200, 3: 2600, 5: 1800, 6: 3400}
    inten = np.array([base[int(c)] for c in (2, 3, 5, 6)])
    lut = np.zeros(7, dtype=np.int64)
    lut[[2, 3, 5, 6]] = inten
    intensity = np.clip(lut[cls] + rng.normal(0, 150, n), 0, 65535).astype(np.uint16)
    z += rng.normal(0, 0.03, n)
    return {"xyz": np.column_stack([xy, z]), "classification": cls, "intensity": intensity}


def write_synthetic_las(path: str | Path, n: int, seed: int = 0,
                        offset: Sequence[float] = UTM_OFFSET,
                        label_fraction: float = 1.0) -> Path:
    """A LAS 1.2 point format 1 file of :func:`synthetic_outdoor` at ``offset`` (scale 1 cm);
    with ``label_fraction`` < 1 only that random share of points keeps its code, the rest
    is 1 (unclassified)."""
    import laspy  # type: ignore[import-untyped]

    d = synthetic_outdoor(n, seed)
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.asarray(offset, dtype=np.float64)
    las = laspy.LasData(header)
    xyz = d["xyz"] + np.asarray(offset)
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    cls = d["classification"].copy()
    if label_fraction < 1.0:
        keep = np.random.default_rng([seed, 2]).random(n) < label_fraction
        cls[~keep] = 1
    las.classification = cls
    las.intensity = d["intensity"]
    las.return_number = np.ones(n, dtype=np.uint8)
    las.number_of_returns = np.ones(n, dtype=np.uint8)
    las.gps_time = np.arange(n, dtype=np.float64) * 1e-5
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    las.write(str(path))
    return path


def _tiny_predictor(voxel_size: float, planes: int = 16) -> Any:
    """A randomly initialised MinkUNet14A predictor (timing only)."""
    import torch

    from pcseg.datasets.custom import ClassesSpec
    from pcseg.models import MODELS
    from pcseg.predict import Predictor

    torch.manual_seed(0)
    names = list(ASPRS)
    net = type("MinkUNet14ABench", (MODELS["MinkUNet14A"],),
               {"PLANES": (planes,) * 8, "INIT_DIM": planes})
    model = net(1, len(names)).eval()
    spec = ClassesSpec(names=names, voxel_size=voxel_size, features=["intensity"],
                       label_field="classification",
                       map={v: k for k, v in ASPRS.items()})
    return Predictor(model=model, spec=spec, class_names=names, voxel_size=voxel_size,
                     feature_keys=("remission",), in_channels=1, device=torch.device("cpu"))


def _run_one(job: dict[str, Any], q: Any) -> None:
    import torch

    from pcseg.datasets.custom import point_features
    from pcseg.datasets.formats import PointFile

    torch.set_num_threads(job["threads"])
    d = synthetic_outdoor(job["points"], seed=0)
    pf = PointFile(Path("synthetic.las"), "las", d["xyz"], {"intensity": d["intensity"]})
    pred = _tiny_predictor(job["voxel_size"])
    feats = point_features(pf, pred.spec)
    coords = (d["xyz"] - d["xyz"].mean(axis=0)).astype(np.float32)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.no_grad():
        res = pred.predict_points(coords, feats, job["budget"], job["overlap"])
    sec = time.perf_counter() - t0
    q.put({"points": job["points"], "tiled": job["budget"] is not None, "seconds": sec,
           "points_per_second": job["points"] / sec, "tiles": res["tiles"],
           "voxels": res["voxels"], "overlap_cost": res["overlap_cost"],
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_before_predict_mib": rss0 / 1024})


def benchmark_predict(sizes: Sequence[int] = (2_000_000, 5_000_000, 10_000_000),
                      voxel_budget: int = 100_000, voxel_size: float = 0.5,
                      overlap: float | None = None, untiled_max_voxels: int = 400_000,
                      threads: int = 2, out: str | Path | None = None) -> dict[str, Any]:
    """Tiled prediction (and untiled where the scene has at most ``untiled_max_voxels``
    voxels) of synthetic outdoor scenes of ``sizes`` points; each run in a fresh process
    so its peak RSS (ru_maxrss, includes the scene's own arrays) is its own. Prints one line
    per run; returns (and writes to ``out`` as JSON) ``{"runs": [...], ...}``."""
    ctx = mp.get_context("spawn")
    runs = []
    for n in sizes:
        budgets: list[int | None] = [voxel_budget]
        est_vox = n / (4.0 * voxel_size ** -2) * 1.3  # ~ ground cells + structures
        if est_vox <= untiled_max_voxels:
            budgets.append(None)
        for b in budgets:
            q = ctx.Queue()
            p = ctx.Process(target=_run_one, args=({"points": n, "budget": b, "overlap": overlap,
                                                    "voxel_size": voxel_size,
                                                    "threads": threads}, q))
            p.start()
            r = q.get()
            p.join()
            runs.append(r)
            print(f"[predict bench] {n:>11,d} points {'tiled' if r['tiled'] else 'untiled':>8s}: "
                  f"{r['points_per_second']:>10,.0f} points/s, {r['tiles']:>4d} tiles, "
                  f"{r['voxels']:>9,d} voxels, overlap cost {100 * r['overlap_cost']:.1f}%, "
                  f"peak RSS {r['peak_rss_mib']:,.0f} MiB", file=sys.stderr)
    result = {"voxel_budget": voxel_budget, "voxel_size": voxel_size, "overlap_m": overlap,
              "threads": threads, "runs": runs}
    if out is not None:
        Path(out).write_text(json.dumps(result, indent=2))
    return result
