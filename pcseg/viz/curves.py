"""Training curves from a run's TensorBoard events (``RUN/tb/``), drawn with matplotlib (Agg)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.io.atomic import atomic_save_with, atomic_write_bytes
from pcseg.viz.errors import ViewError

CURVE_GROUPS: tuple[tuple[str, str], ...] = (
    ("losses", "training losses"),
    ("validation", "validation"),
    ("pseudo", "pseudo-labels / diagnostics"),
    ("lr", "learning rate"),
)


def curve_group(tag: str) -> str | None:
    """Which subplot a scalar tag goes to: 'losses' (``train/loss*``, ``val/loss*``),
    'validation' (other ``val/*``, e.g. ``val/miou``), 'pseudo' (``train/pseudo_acc`` and tags
    with a ``diag/`` part), 'lr' (``*/lr``); None for anything else."""
    parts = tag.split("/")
    if tag.startswith("train/loss") or tag.startswith("val/loss"):
        return "losses"
    if "diag" in parts[:-1] or "pseudo" in parts[-1]:
        return "pseudo"
    if tag.startswith("val/"):
        return "validation"
    if parts[-1] in ("lr", "learning_rate") or parts[-1].startswith("lr"):
        return "lr"
    return None


def read_scalars(tb_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalar series under ``tb_dir`` (its event files and those of sub-folders):
    {tag: (steps int64 (T,), values float64 (T,))}, sorted by step; when a step repeats
    (e.g. a resumed run) the last written value wins."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb_dir = Path(tb_dir)
    if not tb_dir.is_dir():
        raise FileNotFoundError(f"TensorBoard folder {tb_dir} not found")
    dirs = sorted({p.parent for p in tb_dir.rglob("events.out.tfevents.*")})
    if not dirs:
        raise FileNotFoundError(
            f"no TensorBoard event files (events.out.tfevents.*) under {tb_dir}"
        )
    raw: dict[str, list[tuple[float, int, float]]] = {}
    for d in dirs:
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            raw.setdefault(tag, []).extend((e.wall_time, e.step, e.value) for e in acc.Scalars(tag))
    out = {}
    for tag, events in raw.items():
        events.sort(key=lambda e: e[0])  # wall time: later writes last
        by_step: dict[int, float] = {}
        for _, step, value in events:
            by_step[int(step)] = float(value)
        steps = np.array(sorted(by_step), dtype=np.int64)
        out[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return out


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """TensorBoard-style smoothing: s_t = alpha * s_{t-1} + (1 - alpha) * v_t, debiased."""
    values = np.asarray(values, dtype=np.float64)
    if alpha <= 0 or len(values) == 0:
        return values.copy()
    out = np.empty_like(values)
    s, w = 0.0, 0.0
    for i, v in enumerate(values):
        s = alpha * s + (1 - alpha) * v
        w = alpha * w + (1 - alpha)
        out[i] = s / w
    return out


def plot_curves(
    run_dir: str | os.PathLike, out_png: str | os.PathLike, smooth: float = 0.0, dpi: int = 110
) -> dict[str, list[str]]:
    """Grid of subplots of a run's training curves, written atomically to ``out_png``.

    Reads ``run_dir/tb`` (or ``run_dir`` itself when it holds the event files). One subplot per
    non-empty group of :func:`curve_group` (losses, validation mIoU etc., pseudo-label accuracy /
    ``diag/*``, learning rate), one line per tag; ``smooth`` in [0, 1) adds an EMA line.
    Returns {group: [tags plotted]}. Raises ValueError when no tag matches any group.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not 0.0 <= smooth < 1.0:
        raise ViewError(f"smooth must be in [0, 1), got {smooth}")
    run_dir = Path(run_dir)
    tb = run_dir / "tb"
    if not tb.is_dir():
        if not any(run_dir.glob("events.out.tfevents.*")):
            raise FileNotFoundError(f"{tb} not found: {run_dir} has no TensorBoard events")
        tb = run_dir
    scalars = read_scalars(tb)
    groups: dict[str, list[str]] = {}
    for tag in sorted(scalars):
        g = curve_group(tag)
        if g is not None:
            groups.setdefault(g, []).append(tag)
    order = [(g, title) for g, title in CURVE_GROUPS if g in groups]
    if not order:
        raise ViewError(
            f"{tb}: no plottable scalars (train/loss*, val/*, train/pseudo_acc, "
            f"diag/*, lr); found {sorted(scalars) or 'none'}"
        )
    ncols = 1 if len(order) == 1 else 2
    nrows = int(np.ceil(len(order) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.ravel()[len(order) :]:
        ax.set_visible(False)
    for ax, (g, title) in zip(axes.ravel(), order):
        for tag in groups[g]:
            steps, values = scalars[tag]
            if smooth > 0 and len(values) > 1:
                (line,) = ax.plot(steps, values, alpha=0.3, lw=1)
                ax.plot(steps, ema(values, smooth), color=line.get_color(), lw=1.6, label=tag)
            else:
                ax.plot(
                    steps, values, lw=1.4, marker="o" if len(values) < 30 else None, ms=3, label=tag
                )
        if g == "losses":
            vals = np.concatenate([scalars[t][1] for t in groups[g]])
            pos = vals[np.isfinite(vals)]
            if pos.size and pos.min() > 0 and pos.max() / pos.min() > 100:
                ax.set_yscale("log")
        if g == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{run_dir.resolve().name}", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(out_png, buf.getvalue())
    return {g: groups[g] for g, _ in order}


def save_figure(fig: Any, out: str | Path) -> Path:
    """Write a matplotlib figure to the PNG ``out`` atomically (temp file, then rename), after
    ``tight_layout``, and close it; returns ``out`` as a Path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_with(out, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out
