"""``pcseg benchmark NAME ...``: the benchmarks of pcseg.benchmarks (``pcseg benchmark -h``
lists them); each prints ratios against a reference run of the same command and peak memory."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``benchmark`` subcommand (its arguments are the benchmark's own)."""
    p = sub.add_parser(
        "benchmark",
        help="performance benchmarks (sparse, voxelize, prepare, ...)",
        description=__doc__,
        add_help=False,
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, help="benchmark name and its arguments")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the named benchmark; returns its exit status."""
    from pcseg.benchmarks import main

    return int(main(args.argv, prog="pcseg benchmark"))
