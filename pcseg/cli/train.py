"""``pcseg train [CONFIG] [--set key=value ...] [--resume [CKPT]]``: train a method.

With no CONFIG the demo config runs (configs/demo/erda.yaml), its relative paths anchored at
the checkout. When ``data.root`` holds no processed data it is prepared first (rank 0; from
``data.raw``, after generating synthetic raw data there when ``data.synthetic`` is set).
Distributed: ``torchrun --nproc_per_node 2 -m pcseg train CONFIG`` (gloo on CPU, nccl on CUDA).

Writes RUN/config.yaml, RUN/tb/ (TensorBoard), RUN/checkpoints/{last,best}.pt and
RUN/summary.json (RUN = ``run_dir``); prints the end-of-run summary.
"""

from __future__ import annotations

import argparse

from pcseg.workflows.runs import load_run_config, train_with_data


def add_config_arguments(p: argparse.ArgumentParser, config_help: str) -> None:
    """CONFIG and ``--set`` (shared by train and test)."""
    p.add_argument("config", nargs="?", default=None, help=config_help)
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. train.lr=0.01 method.name=erda (values parsed as YAML)",
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="train a model with a method from a YAML config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(p, "YAML config (default: the demo, configs/demo/erda.yaml)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CKPT",
        help="continue from RUN/checkpoints/last.pt (or the given checkpoint)",
    )
    p.add_argument(
        "--init",
        default=None,
        metavar="CKPT",
        help="fine-tune: start from the network weights of another run's checkpoint "
        "(every tensor whose name and shape match; the classifier only when the "
        "class list is the same; method state, optimiser and iteration are new)",
    )
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Train; returns 0 (a config error, naming file and key, ends as one line and exit
    status 2, from ``pcseg.cli.main``)."""
    if args.init is not None and args.resume:
        args.parser.error("--init starts a new run; --resume continues one: give one of them")
    cfg = load_run_config(args.config, args.set)
    train_with_data(cfg, resume=args.resume, init=args.init)
    return 0
