"""``pcseg SUBCOMMAND ...``: the parser and the dispatch to the subcommand modules."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pcseg.cli import (
    active,
    annotate,
    benchmark,
    compare,
    demo,
    predict,
    prepare,
    synthetic,
    test,
    train,
    view,
)

#: subcommand modules, in the order ``pcseg --help`` lists them; each has ``register(sub)``
COMMANDS = (
    prepare,
    synthetic,
    train,
    test,
    predict,
    view,
    annotate,
    active,
    compare,
    benchmark,
    demo,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``pcseg`` parser with every subcommand."""
    p = argparse.ArgumentParser(
        prog="pcseg",
        description="Label-efficient 3D point-cloud semantic segmentation (ERDA, U2PL, baselines).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pcseg`` with ``argv`` (default: the process arguments); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    rc = args.run(args)
    return int(rc or 0)
