"""The label-budget curve: test mIoU against the labelled fraction (log axis), one line per
method with the seed spread as a band, and the full-label ceiling as a horizontal line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.viz.curves import save_figure


def curve_points(results: dict[str, Any], method: str) -> list[tuple[float, float, float, float]]:
    """``[(fraction, mean, min, max), ...]`` (mIoU in %) of ``method`` over the budgets it ran
    at (the ``full`` budget excluded: it is the ceiling), sorted by fraction."""
    pts = []
    for spec, entry in results["budgets"].items():
        runs = entry["methods"].get(method)
        if spec == "full" or not runs:
            continue
        v = [100 * r["miou"] for r in runs if math.isfinite(r["miou"])]
        if v:
            pts.append((float(entry["fraction"]), float(np.mean(v)), min(v), max(v)))
    return sorted(pts)


def plot_budget_curve(
    results: dict[str, Any],
    out: Path,
    ceiling_method: str = "supervised",
    title: str = "test mIoU against labelled fraction",
) -> Path:
    """Draw the curve of every method in ``results`` (see pcseg.workflows.budget) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(m for e in results["budgets"].values() for m in e["methods"]))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for m in methods:
        pts = curve_points(results, m)
        if not pts:
            continue
        x, mean, lo, hi = (np.array(c) for c in zip(*pts))
        (line,) = ax.plot(x, mean, marker="o", label=f"{m} ({len(pts)} budgets)")
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    full_entry = results["budgets"].get("full", {})
    full = full_entry.get("methods", {}).get(ceiling_method)
    if full:
        v = [100 * r["miou"] for r in full]
        scores = {e.get("score", "all") for e in results["budgets"].values()}
        scored = "; scored on all points" if len(scores) > 1 else ""
        ax.axhline(
            float(np.mean(v)),
            color="k",
            linestyle="--",
            label=f"full labels ({ceiling_method}, {len(v)} seeds{scored})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("labelled fraction of training points")
    ax.set_ylabel("test mIoU (%)")
    ax.set_title(title + " (band: min-max over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out)


def plot_validation_curves(
    results: dict[str, Any],
    out: Path,
    method: str = "supervised",
    title: str = "validation mIoU during training",
) -> Path:
    """Validation mIoU against iteration of every run of ``method`` (one colour per budget,
    one line per seed): whether the schedule is long enough for ``method`` to stop improving."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    order = sorted(results["budgets"].items(), key=lambda kv: kv[1].get("fraction", 0.0))
    for i, (spec, entry) in enumerate(order):
        for j, run in enumerate(entry["methods"].get(method, [])):
            hist = [v for v in run.get("val_history", []) if v.get("miou") is not None]
            if not hist:
                continue
            ax.plot(
                [v["iteration"] for v in hist],
                [100 * v["miou"] for v in hist],
                color=f"C{i}",
                alpha=0.8,
                label=spec if j == 0 else None,
            )
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation mIoU (%)")
    ax.set_title(f"{title}: {method}, one line per seed")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", title="labels")
    return save_figure(fig, out)
