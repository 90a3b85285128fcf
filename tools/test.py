#!/usr/bin/env python
"""Evaluate a checkpoint on every original point of a split.

Usage:
    python tools/test.py CONFIG [--checkpoint CKPT] [--split val] [--set test.tta_rotations=4 ...] [--out DIR]
    python tools/test.py --checkpoint runs/demo/erda/checkpoints/best.pt   # config stored in the checkpoint

CKPT defaults to RUN/checkpoints/best.pt (RUN = the config's ``run_dir``). Prints the
per-class IoU table, mIoU, OA and mAcc, and writes (OUT = RUN/test unless ``--out``):
OUT/metrics.json, OUT/predictions/<scene>.npz (pred, pseudo, confidence, entropy over
the original points) and, for ScanNet / SemanticKITTI, benchmark submission files under
OUT/submission/ (see pcseg/engine/evaluate.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pcseg.config import ConfigError, config_from_dict, load_config, parse_override  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see ``--help``)."""
    p = argparse.ArgumentParser(description="Full-resolution evaluation of a pcseg checkpoint.")
    p.add_argument("config", nargs="?", default=None,
                   help="YAML config (default: the config stored in the checkpoint)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default RUN/checkpoints/best.pt)")
    p.add_argument("--split", default=None, help="split to evaluate (default data.test_split)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--out", default=None, help="output folder (default RUN/test)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.config is None and args.checkpoint is None:
        p.error("give a CONFIG, a --checkpoint, or both")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the evaluation; returns the metrics dict (also written to OUT/metrics.json)."""
    args = parse_args(argv)
    from pcseg.engine.checkpoint import load_checkpoint
    from pcseg.engine.evaluate import evaluate

    try:
        if args.config is not None:
            cfg = load_config(args.config, args.set)
        else:
            state = load_checkpoint(args.checkpoint)
            if "config" not in state:
                raise SystemExit(f"{args.checkpoint} holds no config: pass CONFIG")
            merged = state["config"]
            for item in args.set:
                merged = _merge(merged, parse_override(item))
            cfg = config_from_dict(merged, f"config of {args.checkpoint}")
    except ConfigError as e:
        raise SystemExit(f"config error: {e}") from None
    ckpt = args.checkpoint or str(Path(cfg.run_dir) / "checkpoints" / "best.pt")
    return evaluate(cfg, ckpt, split=args.split, out_dir=args.out, progress=not args.no_progress)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


if __name__ == "__main__":
    main()
