"""Benchmarks: ``python -m pcseg.benchmarks <name> [options]`` (``pcseg benchmark <name>``).

* ``sparse`` (:mod:`pcseg.benchmarks.sparse`): pcseg vs spconv vs MinkowskiEngine sparse
  convolution / MinkUNet34C forward + backward;
* ``voxelize`` (:mod:`pcseg.benchmarks.voxelize`): grid sampling vs the numpy baseline
  (plus one prepare run);
* ``prepare`` (:mod:`pcseg.benchmarks.prepare`): prepare throughput on synthetic rooms;
* ``predict`` (:mod:`pcseg.benchmarks.predict`): tiled / streamed ``pcseg predict`` of
  synthetic outdoor LAS tiles: points/s, tiles, overlap cost, peak RSS per size;
  ``predict --vs-spconv`` (:mod:`pcseg.benchmarks.predict_engines`): the prediction engines
  (fused / unfused pcseg, spconv) on the same tiles, with the GEMM-bound limit.

Each module has ``add_arguments(parser)`` and ``run(args) -> dict``; they measure with the
one shared :mod:`pcseg.benchmarks.harness`, print ratios against a reference run of the same
command plus peak memory, and :func:`main` writes the result dict to ``--json``.
``python -m pcseg.benchmarks.gpu_check`` is the CUDA-machine check (not a subcommand).
The sparse benchmark's pieces: :mod:`~pcseg.benchmarks.scenes` (inputs),
:mod:`~pcseg.benchmarks.sparse_measure` (one measurement, in a worker),
:mod:`~pcseg.benchmarks.profiling`, :mod:`~pcseg.benchmarks.sparse_runs` (the run list),
:mod:`~pcseg.benchmarks.sparse_tables` (ratios, tables).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from pcseg.benchmarks import predict, prepare, sparse, voxelize
from pcseg.benchmarks.harness import write_json

#: subcommand name -> benchmark module (``add_arguments(parser)``, ``run(args) -> dict``)
BENCHMARKS: dict[str, ModuleType] = {
    "sparse": sparse,
    "voxelize": voxelize,
    "prepare": prepare,
    "predict": predict,
}

__all__ = ["BENCHMARKS", "build_parser", "main"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser with one subcommand per :data:`BENCHMARKS` entry."""
    p = argparse.ArgumentParser(prog=prog, description="pcseg benchmarks")
    sub = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, mod in BENCHMARKS.items():
        doc = (mod.__doc__ or name).strip().splitlines()[0]
        s = sub.add_parser(
            name,
            help=doc,
            description=mod.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(s)
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv``, run the chosen benchmark, write ``--json`` when given; exit code 0
    (argparse exits 2 on bad arguments, a benchmark raises SystemExit on bad values)."""
    args = build_parser(prog).parse_args(None if argv is None else list(argv))
    res = BENCHMARKS[args.benchmark].run(args)
    if getattr(args, "json", None) is not None:
        write_json(args.json, res)
    return 0
