"""``pcseg prepare DATASET --raw DIR --out DIR``: raw dataset -> processed folder + weak labels
(point clouds: the benchmarks and ``custom``; images: ``voc``, ``cityscapes``, ``images``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pcseg.config_files import resolve_config_path
from pcseg.data.weak_labels import parse_spec
from pcseg.images.labels import parse_image_spec
from pcseg.images.prepare import IMAGE_DATASETS, ImagePrepareOptions, prepare_images
from pcseg.readers import DATASETS
from pcseg.readers.common import NONFINITE_POLICIES
from pcseg.readers.prepare import (
    DEFAULT_VOXEL_SIZE,
    PrepareOptions,
    parse_split_scenes,
    prepare_dataset,
    reader_of,
    reader_options,
)

#: dataset-specific flags: (flag, argparse dest, dataset, reader option, default)
READER_FLAGS: tuple[tuple[str, str, str, str, object], ...] = (
    ("--kitti-yaml", "kitti_yaml", "semantickitti", "config", None),
    ("--scannet-split-dir", "scannet_split_dir", "scannet", "split_dir", None),
    ("--scannet-label-map", "scannet_label_map", "scannet", "label_map_file", None),
    ("--s3dis-unknown-class", "s3dis_unknown_class", "s3dis", "on_unknown_class", "error"),
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``prepare`` subcommand."""
    p = sub.add_parser(
        "prepare", help="raw dataset -> processed folder and weak-label files", description=__doc__
    )
    p.add_argument(
        "dataset",
        choices=[*DATASETS, "custom", *IMAGE_DATASETS],
        help="a benchmark, or 'custom': a folder of your own files (with --classes); "
        "images: voc (Pascal VOC 2012), cityscapes, images (an images/ + masks/ folder with a "
        "CLASSES.yaml)",
    )
    p.add_argument(
        "--classes",
        type=resolve_config_path,
        default=None,
        metavar="CLASSES.yaml",
        help="custom: class names, label field, map, features, voxel size "
        "(pcseg/readers/custom.py; examples in configs/custom/); images: names, map, ignore, "
        "colors, splits (pcseg/images/folder.py; default RAW/CLASSES.yaml)",
    )
    _add_input_arguments(p)
    _add_label_arguments(p)
    _add_reader_arguments(p)
    p.set_defaults(run=run, parser=p)


def _add_input_arguments(p: argparse.ArgumentParser) -> None:
    """Where from, where to, which scenes, how many processes."""
    p.add_argument("--raw", required=True, type=Path, help="raw dataset folder")
    p.add_argument("--out", required=True, type=Path, help="processed output folder")
    p.add_argument(
        "--split",
        nargs="+",
        default=None,
        help="splits to process (default: every split the reader defines)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes (default 1 = in-process)")
    p.add_argument("--overwrite", action="store_true", help="redo scenes that are already done")
    p.add_argument(
        "--split-scenes",
        action="append",
        default=[],
        metavar="SPLIT=NAMES",
        help="define split SPLIT by scene names or globs (comma separated), from "
        "the scenes of --split (default all); repeatable, e.g. "
        "--split-scenes train=00_000000 --split-scenes 'test=00_00000[12]'. "
        "Only these scenes are processed and only these splits recorded; a "
        "name or glob matching no scene is an error",
    )


def _add_label_arguments(p: argparse.ArgumentParser) -> None:
    """The voxel size of the draws, the weak-label specs, imported label files."""
    p.add_argument(
        "--voxel-size",
        type=float,
        default=None,
        help="metres; weak labels are sampled on the cloud voxelized at this size "
        "(one random point per voxel, counts are voxel counts as in ERDA); "
        "0 = sample on raw points. Default per dataset: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_VOXEL_SIZE.items()),
    )
    p.add_argument(
        "--labels",
        nargs="*",
        default=[],
        help="weak-label specs to draw, e.g. 1%% 0.1%% sqn1%% 1pt 20pps click full "
        "(grammar in pcseg/data/weak_labels.py; default none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the weak-label draws (default 0)")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a full pickle load of --limited-annotation .pth files that hold "
        "more than numpy arrays / tensors (only for files you trust)",
    )
    p.add_argument(
        "--limited-annotation",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="official limited-annotation index files ({scene: indices}, "
        ".pth/.json/.npz); each becomes label spec 'import:<file stem>'",
    )


def _add_reader_arguments(p: argparse.ArgumentParser) -> None:
    """Reader options: --nonfinite (every reader) and the dataset-specific READER_FLAGS."""
    p.add_argument(
        "--nonfinite",
        choices=list(NONFINITE_POLICIES),
        default="refuse",
        help="points with NaN/inf coordinates or features: refuse (default; the "
        "scene fails, naming the file, count and first indices) or drop "
        "(remove those points with a warning)",
    )
    p.add_argument(
        "--kitti-yaml",
        type=Path,
        default=None,
        metavar="FILE",
        help="semantickitti: the semantic-kitti.yaml label config (default: one in "
        "the raw folder, else the official learning map built in)",
    )
    p.add_argument(
        "--scannet-split-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="scannet: folder holding scannetv2_{train,val,test}.txt when they are "
        "not in RAW, RAW/meta or RAW/Tasks/Benchmark",
    )
    p.add_argument(
        "--scannet-label-map",
        type=Path,
        default=None,
        metavar="FILE",
        help="scannet: scannetv2-labels.combined.tsv when not in RAW or RAW/meta",
    )
    p.add_argument(
        "--voc-aug",
        choices=["auto", "on", "off"],
        default="auto",
        help="voc: train on SBD's augmented set (SegmentationClassAug + train_aug.txt, less "
        "the val images): auto (default) when present, on (required), off",
    )
    p.add_argument(
        "--s3dis-unknown-class",
        choices=["error", "ignore", "skip"],
        default="error",
        help="s3dis: an object file <class>_<i>.txt of an unknown class fails the "
        "room (error, default), keeps its points unlabelled (ignore) or is "
        "left out (skip)",
    )


def run(args: argparse.Namespace) -> int:
    """Check the arguments, prepare; exit status 0, or 1 when some scenes failed while the
    others were prepared (listed in the summary and on stderr). Nothing prepared (no scenes,
    a bad folder or CLASSES.yaml, every scene failed) raises: one line and exit status 2 from
    ``pcseg.cli.main``."""
    if args.dataset in IMAGE_DATASETS:
        return _run_images(args)
    if args.voc_aug != "auto":
        args.parser.error("--voc-aug applies to voc only")
    for s in args.labels:
        try:
            parse_spec(s)
        except ValueError as e:
            args.parser.error(f"--labels {s}: {e}")
    if args.workers < 1:
        args.parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.voxel_size is not None and args.voxel_size < 0:
        args.parser.error(f"--voxel-size must be >= 0, got {args.voxel_size}")
    if args.dataset == "custom":
        return _run_custom(args)
    if args.classes is not None:
        args.parser.error("--classes is for 'pcseg prepare custom' only")
    try:
        split_scenes = parse_split_scenes(args.split_scenes)
    except ValueError as e:
        args.parser.error(str(e))
    given: dict[str, object] = {"nonfinite": args.nonfinite}
    for flag, dest, ds, option, default in READER_FLAGS:
        val = getattr(args, dest)
        if val == default:
            continue
        if args.dataset != ds:
            args.parser.error(f"{flag} applies to {ds} only, not {args.dataset}")
        given[option] = val
    opts = PrepareOptions(
        dataset=args.dataset,
        raw=args.raw,
        out=args.out,
        splits=args.split,
        voxel_size=args.voxel_size,
        labels=list(args.labels),
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        trust_pickle=args.trust_pickle,
        limited_annotation=list(args.limited_annotation),
        split_scenes=split_scenes,
    )
    opts.reader_options = reader_options(reader_of(opts), given, args.dataset)
    return _status(prepare_dataset(opts))


def _status(summary: dict[str, Any]) -> int:
    """0, or 1 with the failed scenes on stderr when some failed (a script can tell)."""
    failures = summary.get("failures") or []
    if not failures:
        return 0
    print(
        f"pcseg prepare: {len(failures)} of {summary['scenes_total']} scenes failed: "
        + ", ".join(f["scene"] for f in failures),
        file=sys.stderr,
    )
    return 1


def _run_custom(args: argparse.Namespace) -> int:
    """``pcseg prepare custom``: files under --raw + CLASSES.yaml -> processed folder."""
    from pcseg.readers.custom import CustomOptions, prepare_custom

    if args.classes is None:
        args.parser.error("pcseg prepare custom needs --classes CLASSES.yaml")
    if args.voxel_size is not None or args.limited_annotation:
        args.parser.error(
            "custom: the voxel size comes from CLASSES.yaml (voxel_size); "
            "--voxel-size / --limited-annotation are for the benchmarks"
        )
    summary = prepare_custom(
        args.raw,
        args.classes,
        args.out,
        labels=list(args.labels) or None,
        splits=args.split,
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        reader_options=CustomOptions(nonfinite=args.nonfinite),
    )
    return _status(summary)


#: the point-cloud options (dest, default) that mean nothing for images
_POINT_ONLY: tuple[tuple[str, object], ...] = (
    ("voxel_size", None),
    ("workers", 1),
    ("split_scenes", []),
    ("limited_annotation", []),
    ("trust_pickle", False),
    ("nonfinite", "refuse"),
    *((dest, default) for _, dest, _, _, default in READER_FLAGS),
)


def _run_images(args: argparse.Namespace) -> int:
    """``pcseg prepare voc|cityscapes|images``: raw images -> processed image folder."""
    for s in args.labels:
        try:
            parse_image_spec(s)
        except ValueError as e:
            args.parser.error(f"--labels {s}: {e}")
    for dest, default in _POINT_ONLY:
        if getattr(args, dest) != default:
            args.parser.error(f"--{dest.replace('_', '-')} is for point clouds, not {args.dataset}")
    if args.classes is not None and args.dataset != "images":
        args.parser.error("--classes is for 'pcseg prepare custom' and 'pcseg prepare images'")
    if args.voc_aug != "auto" and args.dataset != "voc":
        args.parser.error("--voc-aug applies to voc only")
    opts = ImagePrepareOptions(
        dataset=args.dataset,
        raw=args.raw,
        out=args.out,
        classes=args.classes,
        voc_aug={"auto": None, "on": True, "off": False}[args.voc_aug],
        splits=args.split,
        labels=list(args.labels),
        seed=args.seed,
        overwrite=args.overwrite,
    )
    summary = prepare_images(opts)
    failures = summary["failures"]
    if failures:
        print(
            f"pcseg prepare: {len(failures)} of {summary['images_total']} images failed: "
            + ", ".join(f["image"] for f in failures),
            file=sys.stderr,
        )
        return 1
    print(
        f"prepared {args.dataset} into {args.out}: "
        + ", ".join(f"{k} {v}" for k, v in summary["images"].items())
        + " images"
    )
    return 0
