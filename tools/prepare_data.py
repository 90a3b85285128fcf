#!/usr/bin/env python
r"""Raw dataset -> processed folder (docs/ARCHITECTURE.md section 2) + weak-label index files.

Example:
    python tools/prepare_data.py --dataset s3dis --raw data/Stanford3dDataset_v1.2_Aligned_Version \
        --out data/s3dis --labels 1% 0.1% 1pt --workers 4

Every scene of the requested splits (default: all splits the reader defines) is read with
``data_prep/<dataset>.py``, written to ``OUT/scenes/`` and its weak labels drawn for every
``--labels`` spec into ``OUT/labels/<spec>/``. Weak labels are drawn on the voxelized cloud
at ``--voxel-size`` (the dataset default unless given; 0 = raw points), seeded by
(--seed, scene name, spec) so they do not depend on worker count or order.

Resumable: a scene whose files all exist is skipped (``--overwrite`` redoes it); a scene
whose data exists but lacks a spec only gets the missing labels. Every file is written
atomically. A scene that fails is reported (scene id + error) and skipped; the exit code
is non-zero only when every scene failed. The run ends with a summary, printed and
written to ``OUT/summary.json``.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
import traceback
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from tqdm import tqdm

import pcseg.datasets.s3dis
import pcseg.datasets.scannet
import pcseg.datasets.semantickitti
from pcseg.data import processed
from pcseg.data.classes import class_names as dataset_class_names
from pcseg.data.weak_labels import (
    candidate_points,
    load_limited_annotation,
    parse_spec,
    sample_weak_labels,
)
from pcseg.utils.io import atomic_write_json

READERS: dict[str, ModuleType] = {
    "s3dis": data_prep.s3dis,
    "scannet": data_prep.scannet,
    "semantickitti": data_prep.semantickitti,
}
DEFAULT_VOXEL_SIZE: dict[str, float] = {"s3dis": 0.05, "scannet": 0.02, "semantickitti": 0.05}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see ``--help``)."""
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, choices=sorted(READERS))
    p.add_argument("--raw", required=True, type=Path, help="raw dataset folder")
    p.add_argument("--out", required=True, type=Path, help="processed output folder")
    p.add_argument("--split", nargs="+", default=None,
                   help="splits to process (default: every split the reader defines)")
    p.add_argument("--voxel-size", type=float, default=None,
                   help="metres; weak labels are sampled on the cloud voxelized at this size "
                        "(one random point per voxel, counts are voxel counts as in ERDA); "
                        "0 = sample on raw points. Default per dataset: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_VOXEL_SIZE.items()))
    p.add_argument("--labels", nargs="*", default=[],
                   help="weak-label specs to draw, e.g. 1%% 0.1%% sqn1%% 1pt 20pps click full "
                        "(grammar in pcseg/data/weak_labels.py; default none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weak-label draws (default 0)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1 = in-process)")
    p.add_argument("--overwrite", action="store_true", help="redo scenes that are already done")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a full pickle load of --limited-annotation .pth files that hold more than "
                        "numpy arrays / tensors (only for files you trust)")
    p.add_argument("--limited-annotation", nargs="+", type=Path, default=[], metavar="FILE",
                   help="official limited-annotation index files ({scene: indices}, .pth/.json/.npz); "
                        "each becomes label spec 'import:<file stem>'")
    args = p.parse_args(argv)
    for s in args.labels:
        try:
            parse_spec(s)
        except ValueError as e:
            p.error(str(e))
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    if args.voxel_size is not None and args.voxel_size < 0:
        p.error(f"--voxel-size must be >= 0, got {args.voxel_size}")
    return args


def _default_splits(reader: ModuleType) -> list[str]:
    return [str(s) for s in getattr(reader, "SPLITS", {"all": None})]


def list_split_scenes(reader: ModuleType, raw: Path, splits: list[str] | None) -> dict[str, list[str]]:
    """{split: scene ids}. With ``splits=None`` every split the reader defines; a default split
    the raw folder lacks (listing raises or is empty) is left out with a note on stderr."""
    explicit = splits is not None
    out: dict[str, list[str]] = {}
    notes: list[str] = []
    for split in (splits if explicit else _default_splits(reader)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ids = [str(i) for i in reader.list_scenes(raw, split)]
            except (ValueError, FileNotFoundError, OSError) as e:
                if explicit:
                    raise ValueError(f"cannot list split {split!r} of {raw}: {e}") from e
                notes.append(f"split {split!r} skipped: {e}")
                continue
        notes.extend(str(w.message) for w in caught)
        if ids or explicit:
            out[split] = ids
    for note in dict.fromkeys(notes):
        print(f"note: {note}", file=sys.stderr)
    return out


def process_scene(job: dict[str, Any]) -> dict[str, Any]:
    """Read (or reload), write and label one scene. Never raises: returns
    ``{"scene", "status": "done"|"skipped"|"failed", "error", "warnings", "points", "seconds"}``."""
    t0 = time.perf_counter()
    sid = job["scene"]
    out = Path(job["out"])
    specs: list[str] = job["specs"]
    res: dict[str, Any] = {"scene": sid, "status": "done", "error": None, "warnings": [], "points": 0}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            have_scene = (not job["overwrite"]
                          and processed.scene_npz_path(out, sid).is_file()
                          and processed.scene_json_path(out, sid).is_file())
            if have_scene:
                todo = [s for s in specs if not processed.labels_path(out, s, sid).is_file()]
                if not todo:
                    res["status"] = "skipped"
                    return res
                scene = processed.read_scene(out, sid)
            else:
                reader = READERS[job["dataset"]]
                scene = reader.read_scene(Path(job["raw"]), sid)
                if scene.name != sid:
                    raise ValueError(f"reader returned scene named {scene.name!r} for id {sid!r}")
                processed.write_scene(out, scene, job["class_names"])
                todo = list(specs)
            res["points"] = scene.num_points
            cand = None  # candidate pool shared by the sampled specs of this scene
            for spec in todo:
                if spec in job["imported"]:
                    idx = job["imported"][spec]
                    idx = np.zeros(0, dtype=np.int64) if idx is None else idx
                    if idx.size and idx[-1] >= scene.num_points:
                        raise ValueError(f"{spec}: index {int(idx[-1])} out of range for "
                                         f"{scene.num_points} points")
                else:
                    vs = job["voxel_size"] or None
                    if cand is None:
                        cand = candidate_points(scene, job["seed"], vs)
                    idx = sample_weak_labels(scene, spec, job["seed"], vs, candidates=cand)
                processed.write_labels(out, spec, sid, idx)
        res["warnings"] = [str(w.message) for w in caught]
    except Exception as e:  # one bad scene must not stop the run
        res.update(status="failed", error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc(limit=3))
    res["seconds"] = time.perf_counter() - t0
    return res


def build_summary(out: Path, meta: dict[str, Any], scene_ids: list[str], failures: list[dict],
                  warn_list: list[str], stats: dict[str, Any]) -> dict[str, Any]:
    """Summary over every successfully processed scene of this run's splits."""
    names = list(meta["class_names"])
    hist = np.zeros(len(names), dtype=np.int64)
    failed = {f["scene"] for f in failures}
    points = 0
    spec_counts = {s: 0 for s in meta["label_specs_run"]}
    n_ok = 0
    for sid in scene_ids:
        if sid in failed:
            continue
        info = processed.read_scene_info(out, sid)
        n_ok += 1
        points += int(info["num_points"])
        hist += np.asarray(info["class_counts"], dtype=np.int64)
        for s in spec_counts:
            arr = np.load(processed.labels_path(out, s, sid), mmap_mode="r")
            spec_counts[s] += int(arr.shape[0])
    labelled = int(hist.sum())
    return {
        "dataset": meta["dataset"],
        "out": str(out),
        "voxel_size": meta["voxel_size"],
        "seed": meta["seed"],
        "splits": {k: len(v) for k, v in meta["splits_run"].items()},
        "scenes": n_ok,
        "scenes_total": len(scene_ids),
        "points": points,
        "labelled_points": labelled,
        "class_histogram": {n: int(c) for n, c in zip(names, hist)},
        "label_specs": {
            s: {
                "labelled": c,
                "pct_of_points": 100.0 * c / points if points else 0.0,
                "pct_of_labelled_points": 100.0 * c / labelled if labelled else 0.0,
            }
            for s, c in spec_counts.items()
        },
        "failures": failures,
        "warnings": warn_list,
        **stats,
    }


def _merge_meta(out: Path, args: argparse.Namespace, class_names: list[str], voxel_size: float,
                splits: dict[str, list[str]], specs: list[str]) -> dict[str, Any]:
    meta = {"dataset": args.dataset, "class_names": class_names, "voxel_size": voxel_size,
            "splits": dict(splits), "label_specs": list(specs), "seed": args.seed}
    if (out / "meta.json").is_file() and not args.overwrite:
        old = processed.read_meta(out)
        for key in ("dataset", "voxel_size", "seed", "class_names"):
            if old[key] != meta[key]:
                raise SystemExit(
                    f"error: {out / 'meta.json'} has {key}={old[key]!r}, this run uses {meta[key]!r}; "
                    "use another --out or --overwrite"
                )
        merged_splits = dict(old["splits"])
        merged_splits.update(splits)
        meta["splits"] = merged_splits
        meta["label_specs"] = list(dict.fromkeys(list(old["label_specs"]) + list(specs)))
    return meta


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; returns the exit code (0, or 1 when every scene failed / none found)."""
    args = parse_args(argv)
    t_start = time.perf_counter()
    reader = READERS[args.dataset]
    out: Path = args.out
    voxel_size = DEFAULT_VOXEL_SIZE[args.dataset] if args.voxel_size is None else float(args.voxel_size)
    class_names = list(dataset_class_names(args.dataset))
    specs = [parse_spec(s).name for s in args.labels]

    imported: dict[str, dict[str, np.ndarray]] = {}
    for f in args.limited_annotation:
        name = parse_spec(f"import:{f.stem}").name
        imported[name] = load_limited_annotation(f, trusted=args.trust_pickle)
        if name not in specs:
            specs.append(name)

    missing = [s for s in specs if parse_spec(s).kind == "import" and s not in imported]
    if missing:
        print(f"error: label spec(s) {missing} are imported: pass the file with --limited-annotation",
              file=sys.stderr)
        return 1

    try:
        splits = list_split_scenes(reader, args.raw, args.split)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    scene_ids = list(dict.fromkeys(i for ids in splits.values() for i in ids))
    if not scene_ids:
        print(f"error: no scenes found in {args.raw} for splits {args.split or 'all'}", file=sys.stderr)
        return 1
    for name, mapping in imported.items():
        unknown = sorted(set(mapping) - set(scene_ids))
        if unknown:
            print(f"note: {name}: {len(unknown)} scene(s) of the file are not processed here "
                  f"(first: {unknown[0]})", file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    meta = _merge_meta(out, args, class_names, voxel_size, splits, specs)
    processed.write_meta(out, meta)

    jobs = [
        {"scene": sid, "dataset": args.dataset, "raw": str(args.raw), "out": str(out), "specs": specs,
         "seed": args.seed, "voxel_size": voxel_size, "overwrite": args.overwrite,
         "class_names": class_names,
         "imported": {n: m.get(sid) for n, m in imported.items()}}
        for sid in scene_ids
    ]
    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc=f"prepare {args.dataset}", unit="scene", dynamic_ncols=True)

    def _handle(r: dict[str, Any]) -> None:
        results.append(r)
        if r["status"] == "failed":
            bar.write(f"FAILED {r['scene']}: {r['error']}")
        for w in r["warnings"]:
            bar.write(f"warning ({r['scene']}): {w}")
        bar.update(1)

    if args.workers == 1:
        for job in jobs:
            _handle(process_scene(job))
    else:
        with mp.Pool(processes=args.workers) as pool:
            for r in pool.imap_unordered(process_scene, jobs, chunksize=1):
                _handle(r)
    bar.close()

    failures = sorted(({"scene": r["scene"], "error": r["error"]} for r in results
                       if r["status"] == "failed"), key=lambda f: f["scene"])
    warn_list = [f"{r['scene']}: {w}" for r in results for w in r["warnings"]]
    done = [r for r in results if r["status"] == "done"]
    seconds = time.perf_counter() - t_start
    new_points = sum(r["points"] for r in done)
    stats = {
        "processed": len(done),
        "skipped": sum(r["status"] == "skipped" for r in results),
        "failed": len(failures),
        "seconds": round(seconds, 3),
        "points_processed": new_points,
        "points_per_second": new_points / seconds if seconds > 0 else 0.0,
        "workers": args.workers,
    }
    summary = build_summary(out, {**meta, "label_specs_run": specs, "splits_run": splits},
                            scene_ids, failures, warn_list, stats)
    atomic_write_json(out / "summary.json", summary)
    _print_summary(summary)
    return 1 if len(failures) == len(scene_ids) else 0


def _print_summary(s: dict[str, Any]) -> None:
    print(f"\n{s['dataset']}: {s['scenes']}/{s['scenes_total']} scenes, {s['points']:,} points "
          f"({s['labelled_points']:,} labelled); processed {s['processed']}, skipped {s['skipped']}, "
          f"failed {s['failed']} in {s['seconds']:.1f}s ({s['points_per_second']:,.0f} points/s)")
    for name, c in s["class_histogram"].items():
        print(f"  {name:>16s} {c:>12,d}")
    for spec, d in s["label_specs"].items():
        print(f"  labels {spec:>10s}: {d['labelled']:>10,d} points = {d['pct_of_points']:.4f}% of points, "
              f"{d['pct_of_labelled_points']:.4f}% of labelled points")
    if s["failures"]:
        print(f"FAILED scenes ({len(s['failures'])}):")
        for f in s["failures"]:
            print(f"  {f['scene']}: {f['error']}")


if __name__ == "__main__":
    sys.exit(main())
