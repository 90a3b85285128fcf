"""``pcseg configs [PREFIX]``: list the configs shipped with pcseg, each with its first comment
line. A listed NAME is what ``pcseg train NAME`` (and ``pcseg test``, ``pcseg compare
--config-dir FOLDER``, ``--classes NAME``) takes when no file of that name exists in the
working directory, e.g. ``pcseg train custom/erda --set data.root=PROCESSED``."""

from __future__ import annotations

import argparse

from pcseg.config_files import list_configs, shipped_config_dir


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``configs`` subcommand."""
    p = sub.add_parser(
        "configs",
        help="list the shipped configs (names pcseg train / test take)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "prefix", nargs="?", default="", help="only names starting with this, e.g. custom/"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print ``NAME  first comment line`` per config; exit status 0, or 2 when none match."""
    rows = [(n, c) for n, c in list_configs() if n.startswith(args.prefix)]
    if not rows:
        where = shipped_config_dir()
        raise FileNotFoundError(
            f"no shipped config starts with {args.prefix!r} (configs folder: {where})"
            if where is not None
            else "this pcseg has no configs folder (installed without its configs)"
        )
    width = max(len(n) for n, _ in rows)
    print(f"configs in {shipped_config_dir()}:")
    for name, comment in rows:
        print(f"  {name:<{width}}  {comment}".rstrip())
    return 0
