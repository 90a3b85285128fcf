"""``pcseg predict --checkpoint CKPT INPUT... --out DIR [--format same|ply|las|npy]``: label
your own files with a trained checkpoint (no labels needed).

INPUT: files or folders (every supported file under a folder: PLY, LAS/LAZ, PCD, NPY/NPZ,
TXT/CSV, KITTI .bin). Every original point gets ``pred_class`` and ``confidence``; the output
is the input's format with all its fields kept (LAS: classification set through the
reverse of CLASSES.yaml's ``map``, plus extra dimensions). Large files are predicted in
overlapping tiles of at most --voxel-budget voxels (pcseg/inference/tiling.py says how tiles
are stitched). LAS/LAZ, NPY and binary PLY files larger than --chunk-points are predicted out
of core (--stream auto; pcseg/inference/streamed.py): read, tiled and written chunk by chunk, so
the peak memory is set by --chunk-points and --voxel-budget, not by the file; ASCII PLY, PCD,
NPZ, TXT and .bin files (and --format conversions) are read whole. Coordinates are taken in
the file's own unit (LAS WKT / GeoTIFF keys, else CLASSES.yaml units:) and converted to
metres; each file's line names the unit. --keep-codes / --only-unclassified keep the LAS
codes of points that are not to be classified. A --classes file must have the training
one's names, label field, map and features (the checkpoint keeps a copy and the data's
fingerprint), and LAS/LAZ, NPY or binary PLY inputs whose header lacks a trained feature
field stop the run before any file is predicted. A file that fails is reported and
the others go on; the exit status is 1 when any file failed. OUT/predict_summary.json holds
an entry per input file (class shares, run time, checkpoint); a later run into the same --out
is merged into it (the newest entry per input file wins; every run is listed under "runs").
Under torchrun the files are shared out across the ranks.

With an image checkpoint INPUT is image files or folders and each image gets a class-index
PNG and a colour overlay (pcseg/inference/images.py); the point-cloud options do not apply.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pcseg.config_files import resolve_config_path
from pcseg.engine.checkpoint import is_image_checkpoint
from pcseg.inference.files import STREAM_MODES, predict_files
from pcseg.inference.images import predict_image_files
from pcseg.inference.las_codes import UNCLASSIFIED_CODES, CodePolicy
from pcseg.inference.streamed import DEFAULT_CHUNK_POINTS
from pcseg.inference.tiling import DEFAULT_OVERLAP_VOXELS, DEFAULT_VOXEL_BUDGET
from pcseg.io.points import OUTPUT_FORMATS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``predict`` subcommand."""
    p = sub.add_parser(
        "predict",
        help="label your own point-cloud or image files with a checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders to label")
    p.add_argument("--checkpoint", required=True, type=Path, help="a pcseg checkpoint (.pt)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--format",
        default="same",
        choices=["same", *OUTPUT_FORMATS],
        help="output format (default: the input's own)",
    )
    p.add_argument(
        "--classes",
        type=resolve_config_path,
        default=None,
        metavar="CLASSES.yaml",
        help="class spec (default: the copy kept by pcseg prepare custom in the "
        "run's processed folder)",
    )
    p.add_argument(
        "--voxel-budget",
        type=int,
        default=DEFAULT_VOXEL_BUDGET,
        help=f"most voxels per tile (bounds memory; default {DEFAULT_VOXEL_BUDGET:,})"
        "; 0 = never tile",
    )
    p.add_argument(
        "--overlap",
        type=float,
        default=None,
        help=f"metres of context around each tile (default {DEFAULT_OVERLAP_VOXELS} voxels)",
    )
    p.add_argument(
        "--stream",
        default="auto",
        choices=STREAM_MODES,
        help="out-of-core path for LAS/LAZ/NPY/binary PLY: auto (files of more than "
        "--chunk-points points), always, never (read the file whole)",
    )
    p.add_argument(
        "--chunk-points",
        type=int,
        default=DEFAULT_CHUNK_POINTS,
        help=f"points read / written at a time, and per on-disk tile, by the "
        f"out-of-core path (default {DEFAULT_CHUNK_POINTS:,})",
    )
    p.add_argument(
        "--keep-codes",
        action="store_true",
        help="LAS: points whose classification is not in the class file's map keep it "
        "(water 9, overlap 12, ...); 0 / 1 are classified",
    )
    p.add_argument(
        "--only-unclassified",
        nargs="*",
        type=int,
        default=None,
        metavar="CODE",
        help="LAS: classify only points whose classification is one of these codes "
        f"(default when given without codes: {' '.join(map(str, UNCLASSIFIED_CODES))}); "
        "the others keep theirs",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="GEMM precision: bf16 on CPUs with native bfloat16 (AVX512-BF16 / AMX), "
        "labels equal on >= 99.9%% of points (docs/RESULTS.md)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Predict; exit status 0, or 1 when a file failed while the others went on. Nothing
    could start (bad checkpoint, classes or inputs) raises: one line and exit status 2 from
    ``pcseg.cli.main``."""
    if is_image_checkpoint(args.checkpoint):
        images = predict_image_files(
            args.checkpoint, args.inputs, args.out, args.device, not args.no_progress
        )
        return 1 if images["failures"] else 0
    if args.voxel_budget < 0:
        args.parser.error(f"--voxel-budget must be >= 0, got {args.voxel_budget}")
    if args.overlap is not None and args.overlap < 0:
        args.parser.error(f"--overlap must be >= 0, got {args.overlap}")
    if args.chunk_points < 1:
        args.parser.error(f"--chunk-points must be >= 1, got {args.chunk_points}")
    only = args.only_unclassified
    if only is not None and not only:
        only = list(UNCLASSIFIED_CODES)
    if only is not None and any(not 0 <= c <= 255 for c in only):
        args.parser.error(f"--only-unclassified codes must be in 0..255, got {only}")
    summary = predict_files(
        args.checkpoint,
        args.inputs,
        args.out,
        fmt=args.format,
        classes=args.classes,
        voxel_budget=args.voxel_budget or None,
        overlap=args.overlap,
        device=args.device,
        progress=not args.no_progress,
        stream=args.stream,
        chunk_points=args.chunk_points,
        policy=CodePolicy.of(args.keep_codes, only),
        precision=args.precision,
    )
    return 1 if summary["failures"] else 0
