"""``pcseg [--debug] SUBCOMMAND ...``: the parser, the dispatch to the subcommand modules, and
the line a user's mistake ends with.

A user's mistake (a missing file or folder, a wrong label spec, a bad config key, a file that
is not a point cloud) ends as one line ``pcseg: error: <message>`` on stderr and exit status 2;
``pcseg --debug ...`` shows the traceback instead. An unexpected exception (a bug) keeps its
traceback and exits 1. Bad command-line options are argparse's (usage + error, exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pcseg.cli import (
    active,
    annotate,
    benchmark,
    compare,
    configs,
    demo,
    predict,
    prepare,
    superpoints,
    synthetic,
    test,
    train,
    view,
)

#: subcommand modules, in the order ``pcseg --help`` lists them; each has ``register(sub)``
COMMANDS = (
    prepare,
    synthetic,
    superpoints,
    train,
    test,
    predict,
    view,
    annotate,
    active,
    compare,
    benchmark,
    demo,
    configs,
)

#: missing or unusable paths: the user's mistake, whoever raised them
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    """The ``pcseg`` parser with every subcommand."""
    p = argparse.ArgumentParser(
        prog="pcseg",
        description="Label-efficient 3D point-cloud semantic segmentation (ERDA, U2PL, baselines).",
    )
    p.add_argument(
        "--debug", action="store_true", help="show the full traceback when a command fails"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return p


def is_user_error(e: BaseException) -> bool:
    """Whether ``e`` is a user's mistake rather than a bug: a path error, or an error type
    pcseg defines for bad input or a missing piece (a ValueError / ImportError / RuntimeError
    subclass from a ``pcseg`` module: ConfigError, PointFileError, PrepareError, ClassesError,
    SpecError, SplitError, PredictError, StaleRunError, AnnotationError, StudyError, ViewError,
    DisplayUnavailable, BackendUnavailableError, ViserMissing, ...), whose message names the
    file, key or value. Built-in exceptions raised inside pcseg or a library (ValueError,
    KeyError, ...) are not."""
    if isinstance(e, _PATH_ERRORS):
        return True
    return (
        isinstance(e, (ValueError, ImportError, RuntimeError))
        and type(e).__module__.split(".")[0] == "pcseg"
    )


def error_message(e: BaseException) -> str:
    """One line for ``e``: its message, or for an OS error without one ``<reason>: <path>``."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        text = f"{e.strerror}: {e.filename}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pcseg`` with ``argv`` (default: the process arguments); returns the exit status:
    the subcommand's, or 2 for a user's mistake (one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        rc = args.run(args)
    except Exception as e:  # KeyboardInterrupt is no Exception: it propagates as ever
        if args.debug or not is_user_error(e):
            raise
        print(f"pcseg: error: {error_message(e)}", file=sys.stderr)
        return 2
    return int(rc or 0)
