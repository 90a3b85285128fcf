"""``pcseg test [CONFIG] [--checkpoint CKPT] [--split S] [--set ...] [--out DIR]``: evaluate a
checkpoint on every original point of a split.

CKPT defaults to RUN/checkpoints/best.pt (RUN = the config's ``run_dir``); without CONFIG the
config stored in the checkpoint is used. Prints the per-class IoU table, mIoU, OA and mAcc,
and writes (OUT = RUN/test unless ``--out``): OUT/metrics.json, OUT/predictions/<scene>.npz
(pred, pseudo, confidence, entropy over the original points) and, for ScanNet /
SemanticKITTI, benchmark submission files under OUT/submission/.
"""

from __future__ import annotations

import argparse

from pcseg.cli.train import add_config_arguments
from pcseg.config import load_config
from pcseg.engine.checkpoint import config_from_checkpoint
from pcseg.workflows.runs import test_checkpoint


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``test`` subcommand."""
    p = sub.add_parser(
        "test",
        help="full-resolution evaluation of a checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(p, "YAML config (default: the config stored in the checkpoint)")
    p.add_argument(
        "--checkpoint", default=None, help="checkpoint (default RUN/checkpoints/best.pt)"
    )
    p.add_argument("--split", default=None, help="split to evaluate (default data.test_split)")
    p.add_argument("--out", default=None, help="output folder (default RUN/test)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Evaluate; returns 0 (a config error ends as one line and exit status 2, from
    ``pcseg.cli.main``)."""
    if args.config is None and args.checkpoint is None:
        args.parser.error("give a CONFIG, a --checkpoint, or both")
    if args.config is not None:
        cfg = load_config(args.config, args.set)
    else:
        cfg = config_from_checkpoint(args.checkpoint, args.set)
    test_checkpoint(
        cfg, args.checkpoint, split=args.split, out_dir=args.out, progress=not args.no_progress
    )
    return 0
