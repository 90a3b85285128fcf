"""``pcseg compare --config-dir DIR --methods a,b --seeds 0,1,2``: train and test several methods
over several seeds (finished runs are reused) and print test mIoU mean +- std per method."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcseg.workflows.compare import compare_methods
from pcseg.workflows.runs import CONFIG_DIR, REPO


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``compare`` subcommand."""
    p = sub.add_parser("compare", help="train + test several methods over several seeds",
                       description=__doc__)
    p.add_argument("--config-dir", type=Path, default=CONFIG_DIR / "demo",
                   help="folder holding <method>.yaml for every method")
    p.add_argument("--methods", type=_csv, default=["supervised", "erda"],
                   help="comma-separated config names")
    p.add_argument("--seeds", type=_csv, default=["0", "1", "2"], help="comma-separated seeds")
    p.add_argument("--run-root", type=Path, default=None,
                   help="runs go to RUN_ROOT/<method>/seed_<s> (default runs/compare/<config-dir name>)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    p.add_argument("--json", type=Path, default=None, help="write all per-run numbers here")
    p.add_argument("--rerun", action="store_true", help="retrain even when a finished run exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the comparison; exit status 0, or 1 when a method's config is missing."""
    run_root = args.run_root or (REPO / "runs" / "compare" / args.config_dir.resolve().name)
    try:
        compare_methods(args.config_dir, args.methods, [int(s) for s in args.seeds], run_root,
                        args.set, args.rerun, out=args.out, json_out=args.json)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
