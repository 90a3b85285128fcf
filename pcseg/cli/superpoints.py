"""``pcseg superpoints PROCESSED``: over-segment a processed folder's scenes once (the cache that
training with ``data.superpoints`` reads) and, where the scenes have ground truth, report how
far and how well a weak-label spec spreads to its superpoints (coverage and precision)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcseg.data import processed
from pcseg.data.superpoints import SuperpointOptions, ensure_superpoints, propagation_report
from pcseg.io.atomic import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``superpoints`` subcommand."""
    p = sub.add_parser(
        "superpoints",
        help="over-segment a processed folder; report how weak labels spread",
        description=__doc__,
    )
    p.add_argument("processed", type=Path, help="processed folder (pcseg prepare's --out)")
    p.add_argument("--split", default="all", help="split, scene name or glob (default all)")
    p.add_argument(
        "--labels", default=None, help="weak-label spec to report on, e.g. 1%% (default: none)"
    )
    p.add_argument("--voxel-size", type=float, default=None, help="graph voxel (default: data's)")
    p.add_argument("--k", type=float, default=SuperpointOptions().k, help="Felzenszwalb's k")
    p.add_argument("--knn", type=int, default=SuperpointOptions().knn, help="graph neighbours")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Compute (or reuse) the superpoints and print the report; exit status 0."""
    meta = processed.read_meta(args.processed)
    voxel = float(args.voxel_size if args.voxel_size is not None else meta["voxel_size"])
    opts = SuperpointOptions(voxel_size=voxel, k=args.k, knn=args.knn)
    scenes = processed.split_scenes(args.processed, args.split)
    folder = ensure_superpoints(args.processed, scenes, opts, progress=not args.no_progress)
    print(f"superpoints of {len(scenes)} scenes in {folder} ({opts.model_dump()})")
    if args.labels is None:
        return 0
    rep = propagation_report(args.processed, scenes, args.labels, opts, not args.no_progress)
    print(
        f"labels {args.labels}: {rep['weak']:,.0f} weak points ({100 * rep['weak_coverage']:.3f} "
        f"% of the scored points) spread to {100 * rep['coverage']:.1f} % at "
        f"{100 * rep['precision']:.1f} % precision; {rep['superpoints']:,.0f} superpoints of "
        f"{rep['mean_size']:.0f} points on average, {100 * rep['conflicting']:.1f} % of the "
        f"labelled ones hold labels that disagree (left unlabelled)"
    )
    if args.json is not None:
        atomic_write_json(
            args.json,
            {
                "processed": str(args.processed),
                "split": args.split,
                "labels": args.labels,
                "options": opts.model_dump(),
                **rep,
            },
        )
    return 0
