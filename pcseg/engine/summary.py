"""The end-of-run summary of a training run: :func:`build_summary` and :func:`format_summary`.

The summary is written to ``RUN/summary.json`` and printed at the end of
:func:`pcseg.engine.trainer.train`.
"""

from __future__ import annotations

import math
import resource
from typing import Any

import torch

from pcseg.config import IMAGE_DATASETS, Config


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory in MiB: CUDA max allocated on a GPU run, else this process's max RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "cpu_max_rss"


def _or_none(v: Any) -> Any:
    return v if v >= 0 else None


def build_summary(
    cfg: Config,
    *,
    iterations: int,
    total: int,
    epoch: int,
    best: dict,
    history: dict,
    final_val: dict | None,
    last_window: dict,
    interrupted: bool,
    wall_s: float,
    train_s: float,
    it_per_s: float,
    device: torch.device,
    world: int,
    n_params: int,
    class_names: list[str],
) -> dict[str, Any]:
    """The summary dict of a run (keys in the order summary.json shows them).

    ``best``: ``{"miou", "iteration", "epoch"}`` (negative = none yet); ``history``: the
    trainer's ``{"loss", "trace", "val"}``; ``last_window``: the last logging window's means
    (``diag/*`` keys are diagnostics, the others loss terms and lr).
    """
    mem, mem_kind = peak_memory_mb(device)
    diag_final = {k: v for k, v in last_window.items() if k.startswith("diag/")}
    losses_final = {k: v for k, v in last_window.items() if not k.startswith("diag/")}
    keys = ("miou", "oa", "macc", "per_class_iou")
    return {
        "run_dir": str(cfg.run_dir),
        "dataset": cfg.data.dataset,
        "label_spec": cfg.data.label_spec,
        "model": cfg.model.name,
        "method": cfg.method.name,
        "finished": not interrupted,
        "iterations": iterations,
        "total_iterations": total,
        "epochs": epoch,
        "best_miou": best["miou"] if best["miou"] >= 0 else None,
        "best_iteration": _or_none(best["iteration"]),
        "best_epoch": _or_none(best["epoch"]),
        "final_val": None if final_val is None else {k: final_val[k] for k in keys},
        "final_train": losses_final,
        "final_diagnostics": diag_final,
        "trace": history["trace"],
        "val_history": [
            {k: v for k, v in r.items() if k != "per_class_iou"} for r in history["val"]
        ],
        "class_names": class_names,
        "wall_time_s": wall_s,
        "train_time_s": train_s,
        "iterations_per_s": it_per_s,
        "peak_memory_mb": mem,
        "peak_memory_kind": mem_kind,
        "device": str(device),
        "world_size": world,
        "num_parameters": n_params,
    }


def _pct(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{100 * v:.2f}"


def format_summary(s: dict[str, Any]) -> str:
    """Readable multi-line end-of-run summary."""
    status = "finished" if s["finished"] else "interrupted"
    units = "pixels" if s["dataset"] in IMAGE_DATASETS else "voxels"
    lines = [
        "=" * 60,
        (
            f"run        {s['run_dir']}  ({s['method']} / {s['model']} / {s['dataset']} "
            f"{s['label_spec']})"
        ),
        f"status     {status} at iteration {s['iterations']}/{s['total_iterations']}",
        (
            f"best mIoU  {_pct(s['best_miou'])} (iteration {s['best_iteration']}, epoch "
            f"{s['best_epoch']}; {units} of the val split)"
        ),
    ]
    if s["final_val"] is not None:
        fv = s["final_val"]
        lines.append(
            f"final val  mIoU {_pct(fv['miou'])}  OA {_pct(fv['oa'])}  mAcc {_pct(fv['macc'])}"
        )
    if s["final_train"]:
        lines.append(
            "final loss " + "  ".join(f"{k} {v:.4g}" for k, v in sorted(s["final_train"].items()))
        )
    if s["final_diagnostics"]:
        lines.append(
            "diagnostics "
            + "  ".join(f"{k[5:]} {v:.4g}" for k, v in sorted(s["final_diagnostics"].items()))
        )
    lines.append(
        f"time       {s['train_time_s']:.1f} s training, "
        f"{s['iterations_per_s']:.2f} it/s, peak memory {s['peak_memory_mb']:.0f} MiB "
        f"({s['peak_memory_kind']}), "
        f"{s['device']} x{s['world_size']}"
    )
    lines.append("=" * 60)
    return "\n".join(lines)


__all__ = ["build_summary", "format_summary", "peak_memory_mb"]
