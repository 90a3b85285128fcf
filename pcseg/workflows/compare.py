"""Compare training methods over several seeds with one command.

Command line: ``pcseg compare --config-dir configs/demo --methods supervised,erda --seeds 0,1,2``.

For every method M and seed S: trains ``CONFIG_DIR/M.yaml`` with ``train.seed=S`` into
``RUN_ROOT/M/seed_S`` (data is prepared on first use), then evaluates its
best checkpoint on every original point of the test split . Methods share
the data, the weak labels (drawn once at prepare) and the iteration budget
of their configs. A finished run (summary.json finished + test/metrics.json) is reused
unless ``--rerun``, so an interrupted comparison continues where it stopped; a finished run
whose saved config.yaml differs from the one asked for (beyond threads, progress, device and
loader workers) stops the command before anything trains, naming the run and the settings.

Prints (and writes to ``--out``) a Markdown table per method: test mIoU / OA / mAcc mean
+- sample standard deviation over the seeds, the per-seed mIoUs, the best voxel-level
validation mIoU, and, for methods that report ``diag/pseudo_acc`` (accuracy of the
pseudo-labels against the hidden ground truth on unlabelled voxels), its mean over the
first and the last 10% of the logged windows — whether pseudo-label quality rises.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.io.atomic import atomic_write_json, atomic_write_text
from pcseg.workflows.runs import check_reusable, train_and_test


def _edge_means(
    trace: list[dict[str, Any]], key: str, frac: float = 0.1
) -> tuple[float, float] | None:
    vals = [t[key] for t in trace if key in t and t[key] is not None and math.isfinite(t[key])]
    if len(vals) < 2:
        return None
    k = max(1, int(round(len(vals) * frac)))
    return float(np.mean(vals[:k])), float(np.mean(vals[-k:]))


def run_one(
    config: Path,
    seed: int,
    run_dir: Path,
    overrides: list[str],
    rerun: bool,
    checkpoint: str = "best.pt",
) -> dict[str, Any]:
    """Train + test one (config, seed) (testing ``checkpoint``); returns the numbers of the run."""
    res = train_and_test(
        config, seed, run_dir, overrides, rerun=rerun, checkpoint=checkpoint, progress=False
    )
    summary, metrics = res["train"], res["test"]
    return {
        "seed": seed,
        "run_dir": str(run_dir),
        "miou": metrics["miou"],
        "oa": metrics["oa"],
        "macc": metrics["macc"],
        "per_class_iou": metrics["per_class_iou"],
        "best_val_miou": summary.get("best_miou"),
        "pseudo_acc_first_last": _edge_means(summary.get("trace", []), "diag/pseudo_acc"),
        "pred_acc_unlabelled_first_last": _edge_means(
            summary.get("trace", []), "diag/pred_acc_unlabelled"
        ),
        # per-class accuracy / mIoU of argmax p and argmax q on the unlabelled voxels, each
        # from one confusion matrix per logging window (Method.window_diagnostics)
        **{
            f"{name}_first_last": _edge_means(summary.get("trace", []), f"diag/{name}")
            for name in (
                "pseudo_macc",
                "pseudo_miou",
                "pred_unlabelled_macc",
                "pred_unlabelled_miou",
            )
        },
        "train_time_s": summary.get("train_time_s"),
        "checkpoint": checkpoint,
        "val_history": [
            {"iteration": v.get("iteration"), "miou": v.get("miou")}
            for v in summary.get("val_history", [])
        ],
    }


def _ms(vals: list[float]) -> str:
    v = [100 * x for x in vals if x is not None and math.isfinite(x)]
    if not v:
        return "n/a"
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{np.mean(v):.2f} ± {sd:.2f}"


def format_table(results: dict[str, list[dict[str, Any]]], title: str) -> str:
    """Markdown table of the results (percentages, mean ± sample std over seeds)."""
    lines = [
        f"### {title}",
        "",
        "| method | test mIoU | OA | mAcc | mIoU per seed | best val mIoU (voxels) "
        "| pseudo-label acc first → last 10% |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, runs in results.items():
        per_seed = ", ".join(f"{100 * r['miou']:.2f}" for r in runs)
        pa = [r["pseudo_acc_first_last"] for r in runs if r["pseudo_acc_first_last"] is not None]
        pa_txt = (
            "—"
            if not pa
            else (
                f"{100 * np.mean([a for a, _ in pa]):.1f} → {100 * np.mean([b for _, b in pa]):.1f}"
                f" (rose in {sum(b > a for a, b in pa)}/{len(pa)} seeds)"
            )
        )
        lines.append(
            f"| {m} | {_ms([r['miou'] for r in runs])} | {_ms([r['oa'] for r in runs])} | "
            f"{_ms([r['macc'] for r in runs])} | {per_seed} | "
            f"{_ms([r['best_val_miou'] for r in runs])} | {pa_txt} |"
        )
    return "\n".join(lines) + "\n"


def compare_methods(
    config_dir: Path,
    methods: list[str],
    seeds: list[int],
    run_root: Path,
    overrides: list[str] | None = None,
    rerun: bool = False,
    out: Path | None = None,
    json_out: Path | None = None,
    checkpoint: str = "best.pt",
) -> dict[str, list[dict[str, Any]]]:
    """Train and test ``config_dir/<method>.yaml`` for every method and seed into
    ``run_root/<method>/seed_<s>``; prints the table (and writes it to ``out``, every number
    to ``json_out``). Returns {method: [per-seed result dicts]}."""
    overrides = list(overrides or [])
    for m in methods:
        if not (config_dir / f"{m}.yaml").is_file():
            raise FileNotFoundError(f"{config_dir / (m + '.yaml')} does not exist")
    if not rerun:  # before anything trains: a changed config must not reuse an old run
        check_reusable(
            [
                (config_dir / f"{m}.yaml", seed, run_root / m / f"seed_{seed}", overrides)
                for seed in seeds
                for m in methods
            ]
        )
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for seed in seeds:
        for m in methods:
            print(f"[compare] {m} seed {seed}")
            results[m].append(
                run_one(
                    config_dir / f"{m}.yaml",
                    seed,
                    run_root / m / f"seed_{seed}",
                    overrides,
                    rerun,
                    checkpoint=checkpoint,
                )
            )
    title = (
        f"{config_dir} — methods {', '.join(methods)}; seeds {', '.join(map(str, seeds))}; "
        f"{checkpoint} tested" + (f"; overrides {' '.join(overrides)}" if overrides else "")
    )
    table = format_table(results, title)
    print(table)
    if out is not None:
        atomic_write_text(out, table)
    if json_out is not None:
        atomic_write_json(json_out, results)
    return results
