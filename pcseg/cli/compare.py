"""``pcseg compare --config-dir DIR --methods a,b --seeds 0,1,2``: train and test several methods
over several seeds (finished runs are reused) and print test mIoU mean +- std per method.

With ``--budgets 1pt,0.1%,1%,full`` it is the label-budget study: every method at every budget
(``data.label_spec``), ``last.pt`` tested, results accumulated in ``--json`` (required), the
table in ``--out`` and the curve (mIoU against labelled fraction) in ``--plot``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcseg.config_files import resolve_config_dir
from pcseg.workflows.budget import run_budget_study
from pcseg.workflows.compare import compare_methods
from pcseg.workflows.runs import CONFIG_DIR, StaleRunError, default_root


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``compare`` subcommand."""
    p = sub.add_parser(
        "compare", help="train + test several methods over several seeds", description=__doc__
    )
    p.add_argument(
        "--config-dir",
        type=resolve_config_dir,
        default=CONFIG_DIR / "demo",
        help="folder holding <method>.yaml for every method",
    )
    p.add_argument(
        "--methods", type=_csv, default=["supervised", "erda"], help="comma-separated config names"
    )
    p.add_argument("--seeds", type=_csv, default=["0", "1", "2"], help="comma-separated seeds")
    p.add_argument(
        "--run-root",
        type=Path,
        default=None,
        help="runs go to RUN_ROOT/<method>/seed_<s> (default runs/compare/<config-dir name>)",
    )
    p.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run"
    )
    p.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    p.add_argument("--json", type=Path, default=None, help="write all per-run numbers here")
    p.add_argument("--rerun", action="store_true", help="retrain even when a finished run exists")
    p.add_argument(
        "--checkpoint",
        choices=["best.pt", "last.pt"],
        default="best.pt",
        help="checkpoint each run is tested with (default best.pt; --budgets always "
        "tests last.pt); last.pt when validation scenes are test or training "
        "scenes, so no extra labels choose it",
    )
    p.add_argument(
        "--budgets",
        type=_csv,
        default=None,
        help="label-budget study over these weak-label specs, e.g. 1pt,0.1%%,1%%,full",
    )
    p.add_argument("--plot", type=Path, default=None, help="--budgets: draw the curve to this PNG")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Run the comparison; exit status 0, or 1 when a finished run would be reused for a
    different config (a missing method config is a user error: exit 2, from pcseg.cli.main)."""
    run_root = args.run_root or (
        default_root() / "runs" / "compare" / args.config_dir.resolve().name
    )
    seeds = [int(s) for s in args.seeds]
    try:
        if args.budgets:
            if args.json is None:
                args.parser.error("--budgets needs --json FILE (the study accumulates there)")
            run_budget_study(
                args.config_dir,
                args.methods,
                args.budgets,
                seeds,
                run_root,
                args.set,
                args.rerun,
                json_out=args.json,
                table_out=args.out,
                plot_out=args.plot,
            )
            return 0
        compare_methods(
            args.config_dir,
            args.methods,
            seeds,
            run_root,
            args.set,
            args.rerun,
            out=args.out,
            json_out=args.json,
            checkpoint=args.checkpoint,
        )
    except StaleRunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
