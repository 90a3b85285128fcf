"""``pcseg view PATH``: look at scans: interactive viewer, headless PNG panels, PLY export,
training curves.

PATH is a processed folder (``pcseg prepare`` output), one processed scene
(OUT/scenes/<id>.npz), a run folder (config.yaml -> data.root; predictions in
test/predictions/), a ``pcseg test --out`` folder (metrics.json, predictions/), a file written
by ``pcseg predict`` (LAS/LAZ, PLY, ...: classes from the predict_summary.json beside it,
confidence) or a ``pcseg predict --out`` folder (every file in it is a scene).

  pcseg view PATH [--scene NAME] [--labels 1%]                       interactive viewer
  pcseg view PATH --render out.png --modes gt,weak,pred,error --view top
  pcseg view PATH --render out_dir/ --all-scenes --modes gt,pred   one PNG per scene
  pcseg view labelled/scan.las --render scan.png                    a predicted file
  pcseg view PATH --export-ply out.ply --mode pred
  pcseg view RUN  --curves curves.png
  pcseg view PATH --list | --legend

Images (a processed image folder or an image run): --render OUT.png [--scene ID] writes the
panels image | gt | weak | pseudo | pred | error of one image (--all-scenes: one PNG per
image into the folder OUT), --list the images; --modes picks tiles, --width their width.

Viewer keys: 1 rgb, 2 gt, 3 weak, 4 pred, 5 pseudo, 6 confidence, 7 entropy, 8 error,
9 pseudo_error, N/P next/previous scene, V camera iso/top/front/side, C hide/show ceiling,
S screenshot, H/L legend + help, Q quit. Without a display the viewer exits with status 2:
use --render (works headless through EGL) or run it under xvfb-run. A render puts at most
three modes in a row (more wrap onto further rows).
Exit status: 0 ok, 2 bad input (one line naming the file), usage or no display.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.viz.colors import MODES, available_modes, mode_colors
from pcseg.viz.data import open_source
from pcseg.viz.errors import DisplayUnavailable, ViewError
from pcseg.viz.render import VIEWS


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _background(text: str) -> tuple[float, float, float]:
    named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
    if text in named:
        return named[text]
    parts = _csv(text)
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("background: 'white', 'black' or 'r,g,b' in [0, 1]")
    return tuple(float(p) for p in parts)  # type: ignore[return-value]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``view`` subcommand."""
    p = sub.add_parser(
        "view",
        help="viewer, headless PNG panels, PLY export, training curves",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path",
        type=Path,
        help="processed folder or scene .npz, run folder, pcseg test --out folder, "
        "predicted file or pcseg predict --out folder",
    )
    p.add_argument("--scene", help="scene id (default: the first)")
    p.add_argument("--labels", help="weak-label spec to show, e.g. 1%% (default: the run's)")
    p.add_argument("--kitti-yaml", help="semantic-kitti.yaml for the SemanticKITTI palette")
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--render", type=Path, metavar="OUT.png", help="render a PNG panel headlessly"
    )
    what.add_argument("--export-ply", type=Path, metavar="OUT.ply", help="export a coloured PLY")
    what.add_argument(
        "--curves", type=Path, metavar="OUT.png", help="plot training curves of a run"
    )
    what.add_argument("--list", action="store_true", help="list scenes and their available modes")
    what.add_argument("--legend", action="store_true", help="print the class legend and exit")
    p.add_argument(
        "--modes",
        type=_csv,
        default=None,
        help=f"modes for --render, comma separated ({','.join(MODES)}); "
        "default: every available label mode",
    )
    p.add_argument(
        "--mode",
        default=None,
        choices=MODES,
        help="mode for --export-ply / the viewer's first mode",
    )
    p.add_argument("--view", default="iso", choices=sorted(VIEWS))
    p.add_argument("--width", type=int, default=640, help="tile width (px) for --render")
    p.add_argument("--height", type=int, default=480, help="tile height (px) for --render")
    p.add_argument("--point-size", type=float, default=None, help="pixels per point")
    p.add_argument(
        "--hide-classes", type=_csv, default=[], help="ground-truth classes to hide, e.g. ceiling"
    )
    ceil = p.add_mutually_exclusive_group()
    ceil.add_argument(
        "--hide-ceiling",
        dest="hide_ceiling",
        action="store_true",
        default=None,
        help="hide the ceiling (default: automatic for top/iso renders of indoor scenes)",
    )
    ceil.add_argument("--keep-ceiling", dest="hide_ceiling", action="store_false")
    p.add_argument("--no-legend", action="store_true", help="--render without the legend strip")
    p.add_argument(
        "--background", type=_background, default=(1.0, 1.0, 1.0), help="white | black | r,g,b"
    )
    p.add_argument(
        "--all-scenes", action="store_true", help="--render: one PNG per scene into the folder OUT"
    )
    p.add_argument("--smooth", type=float, default=0.0, help="--curves: EMA smoothing in [0, 1)")
    p.add_argument(
        "--screenshot-dir", type=Path, default=Path("."), help="viewer: where S saves PNGs"
    )
    p.add_argument("--exit-after", type=float, default=None, help=argparse.SUPPRESS)  # test hook
    p.set_defaults(run=run)


def _default_modes(view: Any) -> list[str]:
    """The modes a render shows by default: the input, every label mode and the errors;
    the confidence too when there is no ground truth to show errors against."""
    avail = available_modes(view)
    preferred = ["rgb", "gt", "weak", "pseudo", "pred", "error"]
    if "error" not in avail:
        preferred.append("confidence")
    return [m for m in preferred if m in avail]


def _load(source: Any, scene: str | None) -> Any:
    """``source.load(scene)``, its notes printed on stderr as warnings."""
    view = source.load(scene)
    for note in view.notes:
        print(f"warning: {note}", file=sys.stderr)
    return view


def run(args: argparse.Namespace) -> int:
    """Run the view command; returns 0. Bad input raises :class:`~pcseg.viz.errors.ViewError`
    (or a path error), no display :class:`~pcseg.viz.errors.DisplayUnavailable`: one line
    and exit status 2 from ``pcseg.cli.main``."""
    if args.curves is not None:
        from pcseg.viz.curves import plot_curves

        groups = plot_curves(args.path, args.curves, smooth=args.smooth)
        print(f"wrote {args.curves} ({', '.join(f'{g}: {len(t)}' for g, t in groups.items())})")
        return 0
    image_source = _image_source(args.path, args.labels)
    if image_source is not None:
        return _images(image_source, args)
    source = open_source(args.path, args.labels, args.kitti_yaml)
    if args.list:
        return _list(source)
    if args.legend:
        from pcseg.viz.palettes import legend_text

        view = _load(source, args.scene)
        print(legend_text(view.class_names, view.palette, ansi=sys.stdout.isatty()))
        return 0
    if args.render is not None:
        return _render(source, args)
    if args.export_ply is not None:
        return _export_ply(source, args)
    return _interactive(source, args)


def _list(source: Any) -> int:
    print(source.describe())
    for name in source.scenes:
        view = _load(source, name)
        print(f"{name}\t{view.num_points:,d} points\tmodes: {','.join(available_modes(view))}")
    return 0


def _render(source: Any, args: argparse.Namespace) -> int:
    from pcseg.viz.render import render_modes

    if args.render.is_dir() and not args.all_scenes:
        raise ViewError(f"--render {args.render} is a folder; give a .png path or add --all-scenes")
    scenes = source.scenes if args.all_scenes else [args.scene]
    for scene in scenes:
        view = _load(source, scene)
        modes = args.modes or _default_modes(view)
        out = args.render / f"{view.name}.png" if args.all_scenes else args.render
        panel = render_modes(
            view,
            modes,
            out,
            view=args.view,
            width=args.width,
            height=args.height,
            point_size=args.point_size,
            hide_classes=args.hide_classes,
            hide_ceiling=args.hide_ceiling,
            legend=not args.no_legend,
            background=args.background,
        )
        print(f"wrote {out} ({panel.shape[1]}x{panel.shape[0]}, modes {','.join(modes)})")
    return 0


def _export_ply(source: Any, args: argparse.Namespace) -> int:
    from pcseg.viz.ply import export_ply
    from pcseg.viz.render import hidden_mask

    view = _load(source, args.scene)
    mode = args.mode or ("gt" if "gt" in available_modes(view) else "pred")
    colors = mode_colors(view, mode)
    # the label column holds the labels the mode shows (ground truth for rgb / heat maps)
    labels = {
        "pred": view.pred,
        "error": view.pred,
        "pseudo": view.pseudo,
        "pseudo_error": view.pseudo,
        "weak": None
        if view.labelled is None
        else np.where(
            view.labelled, view.semantic if view.weak_classes is None else view.weak_classes, -1
        ),
    }.get(mode, view.semantic)
    keep = ~hidden_mask(view, args.view, args.hide_classes, bool(args.hide_ceiling))
    export_ply(
        args.export_ply, view.coords[keep], colors[keep], None if labels is None else labels[keep]
    )
    print(f"wrote {args.export_ply} ({int(keep.sum()):,d} points, mode {mode})")
    return 0


def _interactive(source: Any, args: argparse.Namespace) -> int:
    from pcseg.viz.viewer import NO_DISPLAY_HINT, Viewer, display_problem

    problem = display_problem()
    if problem is not None:
        raise DisplayUnavailable(
            f"cannot open the interactive viewer: {problem}. {NO_DISPLAY_HINT}"
        )
    Viewer(
        source,
        scene=args.scene,
        mode=args.mode or "rgb",
        point_size=args.point_size or 3.0,
        hide_classes=args.hide_classes,
        hide_ceiling=bool(args.hide_ceiling),
        screenshot_dir=args.screenshot_dir,
        background=args.background,
        exit_after=args.exit_after,
    ).run()
    return 0


# ----------------------------------------------------------------------------- images


def _image_source(path: Path, spec: str | None) -> dict[str, Any] | None:
    """``{"root", "run", "spec"}`` when ``path`` is an image run folder (config.yaml of image
    data) or a processed image folder (meta.json of kind images); else None."""
    import json

    import yaml

    from pcseg.config import IMAGE_DATASETS, load_config

    if (path / "config.yaml").is_file():
        try:  # only the data kind first: a point-cloud run's config need not be complete
            raw = yaml.safe_load((path / "config.yaml").read_text()) or {}
            dataset = (raw.get("data") or {}).get("dataset")
        except (OSError, yaml.YAMLError, AttributeError):
            return None
        if dataset not in IMAGE_DATASETS:
            return None
        cfg = load_config(path / "config.yaml")
        return {"root": Path(cfg.data.root), "run": path, "spec": spec or cfg.data.label_spec}
    meta = path / "meta.json"
    if meta.is_file():
        try:
            kind = json.loads(meta.read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            return None
        if kind == "images":
            return {"root": path, "run": None, "spec": spec}
    return None


def _image_arrays(src: dict[str, Any], image_id: str, k: int) -> dict[str, Any]:
    """The arrays of one image for pcseg.viz.image_panels (labels -1 where none)."""
    from pcseg.images import processed

    def labels(mask: np.ndarray) -> np.ndarray:
        out = mask.astype(np.int64)
        out[(out == 255) | (out >= k)] = -1
        return out

    arrays: dict[str, Any] = {
        "image": processed.load_image(src["root"], image_id),
        "gt": labels(processed.load_mask(src["root"], image_id)),
        "weak": None,
        "pred": None,
        "pseudo": None,
    }
    if src["spec"]:
        try:
            arrays["weak"] = labels(processed.load_weak_mask(src["root"], src["spec"], image_id))
        except ValueError:  # no weak labels for this image (not a training image)
            pass
    pred = _prediction_file(src, image_id)
    if pred is not None:
        with np.load(pred) as z:
            arrays["pred"] = z["pred"].astype(np.int64)
            pseudo = z["pseudo"].astype(np.int64)
            arrays["pseudo"] = pseudo if (pseudo >= 0).any() else None
    return arrays


def _prediction_file(src: dict[str, Any], image_id: str) -> Path | None:
    if src["run"] is None:
        return None
    path = Path(src["run"]) / "test" / "predictions" / f"{image_id}.npz"
    return path if path.is_file() else None


def _images(src: dict[str, Any], args: argparse.Namespace) -> int:
    """``pcseg view`` on image data: --list or --render (panels of pcseg.viz.image_panels)."""
    from pcseg.images import processed
    from pcseg.viz.image_panels import IMAGE_MODES, render_image_panel

    meta = processed.read_meta(src["root"])
    ids = list(dict.fromkeys(i for split in meta.splits.values() for i in split))
    if args.list:
        for i in ids:
            print(f"{i}\tprediction: {'yes' if _prediction_file(src, i) else 'no'}")
        return 0
    if args.render is None:
        raise ViewError("image data: use --render OUT.png (or --list); there is no 3D viewer")
    if args.scene is not None and args.scene not in ids:
        raise ViewError(f"no image {args.scene!r} in {src['root']}")
    predicted = [i for i in ids if _prediction_file(src, i) is not None]
    scenes = (predicted or ids) if args.all_scenes else [args.scene or (predicted or ids)[0]]
    palette = np.asarray(meta.palette, dtype=np.uint8)
    for image_id in scenes:
        arrays = _image_arrays(src, image_id, len(meta.classes))
        modes = args.modes or [
            m
            for m in IMAGE_MODES
            if arrays.get(m) is not None or (m == "error" and arrays["pred"] is not None)
        ]
        out = args.render / f"{image_id}.png" if args.all_scenes else args.render
        panel = render_image_panel(
            arrays, modes, meta.classes, palette, out, tile=args.width // 2, title=image_id
        )
        print(f"wrote {out} ({panel.shape[1]}x{panel.shape[0]}, modes {','.join(modes)})")
    return 0
