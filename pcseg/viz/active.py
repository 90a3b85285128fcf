"""The active-labelling curve: test mIoU against the labelling round, one line per simulated
user (strategy), the seed spread (min-max) as a band; see pcseg.workflows.active."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.viz.curves import save_figure


def round_points(
    results: dict[str, Any], strategy: str
) -> list[tuple[int, float, float, float, int]]:
    """``[(round, mean, min, max, seeds), ...]`` (test mIoU in %) of ``strategy``, by round."""
    by_round: dict[int, list[float]] = {}
    for r in results["runs"]:
        if r["strategy"] == strategy and r["miou"] is not None and math.isfinite(r["miou"]):
            by_round.setdefault(int(r["round"]), []).append(100 * r["miou"])
    return [(k, float(np.mean(v)), min(v), max(v), len(v)) for k, v in sorted(by_round.items())]


def plot_active_curve(
    results: dict[str, Any], out: Path, title: str = "simulated active labelling"
) -> Path:
    """Draw test mIoU per round of every strategy in ``results`` to the PNG ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = {"suggested": 0, "random": 1}
    strategies = sorted(
        dict.fromkeys(r["strategy"] for r in results["runs"]), key=lambda s: (order.get(s, 2), s)
    )
    settings = results.get("settings", {})
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    for s in strategies:
        pts = round_points(results, s)
        if not pts:
            continue
        x, mean, lo, hi, n = (np.array(c) for c in zip(*pts))
        seeds = (
            f"{int(n[0])} seeds"
            if len(set(n.tolist())) == 1
            else "seeds per round: " + ", ".join(str(int(v)) for v in n)
        )
        (line,) = ax.plot(x, mean, marker="o", label=f"{s} ({seeds})")
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    k = settings.get("clicks_per_round")
    ax.set_xlabel(f"round ({k} clicks per training scene per round)" if k else "round")
    ax.set_ylabel("test mIoU (%)")
    rounds = sorted({int(r["round"]) for r in results["runs"]})
    labels = {int(r["round"]): int(r["labels"]) for r in results["runs"] if "labels" in r}
    ax.set_xticks(rounds, [f"{k}\n{labels[k]} labels" if k in labels else str(k) for k in rounds])
    ax.set_title(f"{title} (band: min-max over seeds)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out)
