"""``pcseg synthetic {s3dis,semantickitti,scannet,images} --out DIR``: write a small raw dataset in
the benchmark's own on-disk format (exact labels known), e.g. to try ``pcseg prepare``;
``images``: an images/ + masks/ folder of shapes and textures (``pcseg prepare images``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcseg.images.synthetic import write_synthetic_images
from pcseg.readers.synthetic import (
    write_synthetic_s3dis,
    write_synthetic_scannet,
    write_synthetic_semantickitti,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``synthetic`` subcommand."""
    p = sub.add_parser(
        "synthetic",
        help="write a synthetic raw dataset (S3DIS/SemanticKITTI/ScanNet, or images)",
        description=__doc__,
    )
    p.add_argument("dataset", choices=["s3dis", "semantickitti", "scannet", "images"])
    p.add_argument("--out", type=Path, required=True, help="output folder (raw dataset root)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--areas", type=int, default=3, help="s3dis: number of areas")
    p.add_argument("--rooms-per-area", type=int, default=2, help="s3dis: rooms per area")
    p.add_argument("--spacing", type=float, default=0.04, help="s3dis: surface sampling step (m)")
    p.add_argument("--sequences", nargs="+", default=["00", "08"], help="semantickitti: sequences")
    p.add_argument("--scans", type=int, default=4, help="semantickitti: scans per sequence")
    p.add_argument(
        "--azimuth-steps", type=int, default=1024, help="semantickitti: columns per sweep"
    )
    p.add_argument(
        "--images",
        type=int,
        nargs=3,
        default=[48, 16, 16],
        metavar=("TRAIN", "VAL", "TEST"),
        help="images: images per split (default 48 16 16)",
    )
    p.add_argument("--size", type=int, default=96, help="images: side in pixels (default 96)")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Write the dataset; exit status 0."""
    if args.dataset == "s3dis":
        root = write_synthetic_s3dis(
            args.out, args.areas, args.rooms_per_area, args.seed, spacing=args.spacing
        )
    elif args.dataset == "semantickitti":
        root = write_synthetic_semantickitti(
            args.out, args.sequences, args.scans, args.seed, azimuth_steps=args.azimuth_steps
        )
    elif args.dataset == "images":
        if min(args.images) < 0 or args.images[0] == 0 or args.size < 16:
            args.parser.error("--images needs TRAIN >= 1, VAL, TEST >= 0; --size >= 16")
        train, val, test = args.images
        root = write_synthetic_images(args.out, train, val, test, size=args.size, seed=args.seed)
    else:
        root = write_synthetic_scannet(args.out, seed=args.seed)
    print(f"wrote synthetic {args.dataset} to {root}")
    return 0
