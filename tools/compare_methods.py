#!/usr/bin/env python
"""Compare training methods over several seeds with one command.

Usage:
    python tools/compare_methods.py --config-dir configs/demo --methods supervised,erda --seeds 0,1,2 \
        [--out table.md] [--json results.json] [--set key=value ...] [--run-root runs/compare]

For every method M and seed S: trains ``CONFIG_DIR/M.yaml`` with ``train.seed=S`` into
``RUN_ROOT/M/seed_S`` (tools/train.py; data is prepared on first use), then evaluates its
best checkpoint on every original point of the test split (tools/test.py). Methods share
the data, the weak labels (drawn once by tools/prepare_data.py) and the iteration budget
of their configs. A finished run (summary.json finished + test/metrics.json) is reused
unless ``--rerun``, so an interrupted comparison continues where it stopped.

Prints (and writes to ``--out``) a Markdown table per method: test mIoU / OA / mAcc mean
+- sample standard deviation over the seeds, the per-seed mIoUs, the best voxel-level
validation mIoU, and, for methods that report ``diag/pseudo_acc`` (accuracy of the
pseudo-labels against the hidden ground truth on unlabelled voxels), its mean over the
first and the last 10% of the logged windows — whether pseudo-label quality rises.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pcseg.utils.io import atomic_write_json, atomic_write_text  # noqa: E402


def _tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"pcseg_tools_{name}", REPO / "tools" / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import tools/{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see ``--help``)."""
    p = argparse.ArgumentParser(description="Train + test several methods over several seeds; print mIoU mean +- std.")
    p.add_argument("--config-dir", type=Path, default=REPO / "configs" / "demo",
                   help="folder holding <method>.yaml for every method")
    p.add_argument("--methods", default="supervised,erda", help="comma-separated config names")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--run-root", type=Path, default=None,
                   help="runs go to RUN_ROOT/<method>/seed_<s> (default runs/compare/<config-dir name>)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    p.add_argument("--json", type=Path, default=None, help="write all per-run numbers here")
    p.add_argument("--rerun", action="store_true", help="retrain even when a finished run exists")
    return p.parse_args(argv)


def _finished(run: Path) -> bool:
    s = run / "summary.json"
    if not (s.is_file() and (run / "test" / "metrics.json").is_file()):
        return False
    try:
        return bool(json.loads(s.read_text()).get("finished"))
    except (OSError, json.JSONDecodeError):
        return False


def _edge_means(trace: list[dict[str, Any]], key: str, frac: float = 0.1) -> tuple[float, float] | None:
    vals = [t[key] for t in trace if key in t and t[key] is not None and math.isfinite(t[key])]
    if len(vals) < 2:
        return None
    k = max(1, int(round(len(vals) * frac)))
    return float(np.mean(vals[:k])), float(np.mean(vals[-k:]))


def run_one(config: Path, seed: int, run_dir: Path, overrides: list[str], rerun: bool) -> dict[str, Any]:
    """Train + test one (config, seed); returns the numbers of the run."""
    if rerun or not _finished(run_dir):
        sets = [*overrides, f"train.seed={seed}", f"run_dir={run_dir}"]
        _tool("train").main([str(config), "--set", *sets])
        _tool("test").main([str(config), "--set", *sets, "--checkpoint",
                            str(run_dir / "checkpoints" / "best.pt"), "--no-progress"])
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = json.loads((run_dir / "test" / "metrics.json").read_text())
    return {
        "seed": seed, "run_dir": str(run_dir),
        "miou": metrics["miou"], "oa": metrics["oa"], "macc": metrics["macc"],
        "per_class_iou": metrics["per_class_iou"],
        "best_val_miou": summary.get("best_miou"),
        "pseudo_acc_first_last": _edge_means(summary.get("trace", []), "diag/pseudo_acc"),
        "pred_acc_unlabelled_first_last": _edge_means(summary.get("trace", []), "diag/pred_acc_unlabelled"),
        "train_time_s": summary.get("train_time_s"),
    }


def _ms(vals: list[float]) -> str:
    v = [100 * x for x in vals if x is not None and math.isfinite(x)]
    if not v:
        return "n/a"
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{np.mean(v):.2f} ± {sd:.2f}"


def format_table(results: dict[str, list[dict[str, Any]]], title: str) -> str:
    """Markdown table of the results (percentages, mean ± sample std over seeds)."""
    lines = [f"### {title}", "",
             "| method | test mIoU | OA | mAcc | mIoU per seed | best val mIoU (voxels) | pseudo-label acc first → last 10% |",
             "|---|---|---|---|---|---|---|"]
    for m, runs in results.items():
        per_seed = ", ".join(f"{100 * r['miou']:.2f}" for r in runs)
        pa = [r["pseudo_acc_first_last"] for r in runs if r["pseudo_acc_first_last"] is not None]
        pa_txt = "—" if not pa else (f"{100 * np.mean([a for a, _ in pa]):.1f} → {100 * np.mean([b for _, b in pa]):.1f}"
                                     f" (rose in {sum(b > a for a, b in pa)}/{len(pa)} seeds)")
        lines.append(f"| {m} | {_ms([r['miou'] for r in runs])} | {_ms([r['oa'] for r in runs])} | "
                     f"{_ms([r['macc'] for r in runs])} | {per_seed} | {_ms([r['best_val_miou'] for r in runs])} | {pa_txt} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run the comparison; returns {method: [per-seed result dicts]}."""
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    run_root = args.run_root or (REPO / "runs" / "compare" / args.config_dir.resolve().name)
    for m in methods:
        if not (args.config_dir / f"{m}.yaml").is_file():
            raise SystemExit(f"{args.config_dir / (m + '.yaml')} does not exist")
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for seed in seeds:
        for m in methods:
            print(f"[compare] {m} seed {seed}")
            results[m].append(run_one(args.config_dir / f"{m}.yaml", seed, run_root / m / f"seed_{seed}",
                                      args.set, args.rerun))
    title = (f"{args.config_dir} — methods {', '.join(methods)}; seeds {', '.join(map(str, seeds))}"
             + (f"; overrides {' '.join(args.set)}" if args.set else ""))
    table = format_table(results, title)
    print(table)
    if args.out is not None:
        atomic_write_text(args.out, table)
    if args.json is not None:
        atomic_write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
