"""``pcseg demo [--out demo_out] [--methods supervised,erda] [--seed 0]``: synthetic rooms ->
prepare -> train (full-label ceiling; each method at 1 % and 0.1 %) -> test -> render, with
the table of test mIoU printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcseg.workflows.demo import METHOD_TITLES, run_demo


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo", help="the end-to-end demo on synthetic S3DIS-format rooms", description=__doc__
    )
    p.add_argument(
        "--out", type=Path, default=Path("demo_out"), help="output folder (runs, PNGs, table)"
    )
    p.add_argument(
        "--methods",
        default="supervised,erda",
        help=f"comma-separated methods from configs/demo/ ({', '.join(METHOD_TITLES)})",
    )
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument(
        "--budgets",
        default="1%,0.1%",
        help="comma-separated label budgets (weak-label specs) every method runs at",
    )
    p.add_argument(
        "--no-ceiling",
        action="store_true",
        help="leave out the supervised-only run with every label",
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="extra config overrides applied to every method (e.g. train.iterations=200)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit status 0."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    budgets = tuple(b.strip() for b in args.budgets.split(",") if b.strip())
    run_demo(args.out, methods, args.seed, args.set, budgets=budgets, ceiling=not args.no_ceiling)
    return 0
