"""``pcseg active-study``: does labelling the suggested spots help? A simulated user labels,
each round, K spots per training scene with their true class, either the spots
``pcseg annotate`` suggests from the previous run (entropy, plus p/q disagreement for ERDA) or
random points; every round retrains from scratch (same seed and schedule) and tests last.pt.
Finished runs are reused, so the same command resumes an interrupted study
(pcseg.workflows.active)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcseg.config_files import resolve_config_path
from pcseg.workflows.active import STRATEGIES, run_active_study
from pcseg.workflows.runs import CONFIG_DIR, default_root


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``active-study`` subcommand."""
    p = sub.add_parser(
        "active-study",
        help="simulated active labelling: suggested vs random clicks, test mIoU per round",
        description=__doc__,
    )
    p.add_argument(
        "--config",
        type=resolve_config_path,
        default=CONFIG_DIR / "budget" / "erda.yaml",
        help="config trained every round (default configs/budget/erda.yaml)",
    )
    p.add_argument("--start-spec", default="1pt", help="round-0 labels (default 1pt)")
    p.add_argument("--rounds", type=int, default=3, help="labelling rounds after round 0")
    p.add_argument(
        "--clicks-per-round",
        type=int,
        default=5,
        metavar="K",
        help="clicks per training scene per round (default 5)",
    )
    p.add_argument("--seeds", type=_csv, default=["0", "1", "2"], help="comma-separated seeds")
    p.add_argument(
        "--strategies",
        type=_csv,
        default=list(STRATEGIES),
        help=f"comma-separated users (default {','.join(STRATEGIES)})",
    )
    p.add_argument(
        "--run-root",
        type=Path,
        default=None,
        help="runs go to RUN_ROOT/seed_S/... (default runs/active/<config name>)",
    )
    p.add_argument("--json", type=Path, default=None, help="accumulate the results here")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    p.add_argument("--plot", type=Path, default=None, help="draw mIoU per round to this PNG")
    p.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run"
    )
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Run the study; returns 0 (a bad config or setting ends as one line and exit status 2,
    from ``pcseg.cli.main``)."""
    run_root = args.run_root or (default_root() / "runs" / "active" / args.config.stem)
    try:
        seeds = [int(s) for s in args.seeds]
    except ValueError:
        args.parser.error(f"--seeds: integers expected, got {','.join(args.seeds)}")
    run_active_study(
        args.config,
        args.strategies,
        seeds,
        args.rounds,
        args.clicks_per_round,
        run_root,
        start_spec=args.start_spec,
        overrides=args.set,
        json_out=args.json,
        table_out=args.out,
        plot_out=args.plot,
    )
    return 0
