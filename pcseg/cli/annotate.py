"""``pcseg annotate SCENE --classes CLASSES.yaml``: label a scene by clicking, in a browser.

SCENE is a raw point-cloud file that ``pcseg prepare custom`` reads (prepared once with the
CLASSES.yaml into the working folder ``--work``, default ``annotations/<stem>/`` under the
current directory, so never inside a folder you predict or prepare), a processed scene
``PROCESSED/scenes/<id>.npz`` or a processed folder ``PROCESSED`` with ``--scene ID``.
CLASSES.yaml: ``names: [..]`` (class index = position, the same classes as the processed
folder's meta.json) and optional ``colors: {name: [r, g, b]}``; with ``label_field`` / ``map``
(as for ``pcseg prepare custom``) a raw file's own classes (a LAS classification, a PLY label
field) become the starting labels, to correct rather than redo (``--start empty``: none).

  pcseg annotate tiles/t1.laz --classes custom/classes_ground_nonground   (annotations/t1/)
  pcseg annotate OUT/scenes/room.npz --classes classes.yaml            (http://localhost:8080)
  pcseg annotate OUT --scene room --classes classes.yaml --run RUN      (+ prediction colours,
                                                                         suggested spots)
  pcseg annotate OUT --scene room --classes classes.yaml --labels import:alice --port 8081

The server runs where the data is; from your machine: ``ssh -L 8080:localhost:8080 SERVER``
and open http://localhost:8080. Every change is saved atomically to
``PROCESSED/labels/<spec>/<scene>.npy`` ((M, 2) int64 rows [point index, class]; spec
``import:annotate`` -> folder ``import_annotate``) and reopened next time (before
``--start``). Train on it with ``pcseg train CONFIG --set data.root=PROCESSED
data.label_spec=import:annotate``. The brush starts at 3 median point spacings of the scene
(``--brush-radius`` to choose). Exit status: 0 ok, 2 bad input (one line naming the file) or
viser missing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pcseg.config_files import resolve_config_path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``annotate`` subcommand."""
    p = sub.add_parser(
        "annotate",
        help="label a scene by clicking, in a browser (viser)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "scene",
        type=Path,
        help="a raw point-cloud file (LAS/LAZ, PLY, PCD, NPY/NPZ, TXT/CSV, .bin; prepared once "
        "into --work), PROCESSED/scenes/<id>.npz, or PROCESSED with --scene",
    )
    p.add_argument(
        "--work",
        type=Path,
        metavar="DIR",
        help="working folder of a raw SCENE (default: annotations/<stem> in the current "
        "directory); it is a processed folder: train with --set data.root=DIR",
    )
    p.add_argument(
        "--start",
        choices=("given", "empty"),
        default="given",
        help="without a label file yet: start from the file's own classes mapped through "
        "CLASSES.yaml's map (given, the default) or from none (empty)",
    )
    p.add_argument(
        "--scene", dest="scene_id", metavar="ID", help="scene id when SCENE is a processed folder"
    )
    p.add_argument(
        "--classes",
        type=resolve_config_path,
        required=True,
        metavar="CLASSES.yaml",
        help="names: [..] and optional colors: {name: [r, g, b]}",
    )
    p.add_argument(
        "--labels",
        default="import:annotate",
        metavar="SPEC",
        help="label spec to write and resume, labels/<spec>/<scene>.npy (default: import:annotate)",
    )
    p.add_argument(
        "--run",
        dest="run_dir",
        type=Path,
        metavar="RUN",
        help="run folder whose test/predictions/<scene>.npz to show",
    )
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1: reach it by an SSH tunnel)",
    )
    p.add_argument(
        "--pick-px", type=float, default=8.0, help="click tolerance in pixels around the cursor"
    )
    p.add_argument("--point-size", type=float, default=None, help="point size in metres")
    p.add_argument(
        "--brush-radius",
        type=float,
        default=None,
        metavar="M",
        help="brush radius in metres (default: 3 median point spacings of the scene)",
    )
    p.add_argument("--exit-after", type=float, default=None, help=argparse.SUPPRESS)  # tests
    p.add_argument("--debug-json", type=Path, default=None, help=argparse.SUPPRESS)  # tests
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Open the session and serve it; returns 0. Bad input (AnnotationError) and a missing
    viser (ViserMissing) end as one line and exit status 2 from ``pcseg.cli.main``."""
    from pcseg.annotate.session import open_session
    from pcseg.annotate.web import WebAnnotator
    from pcseg.inference.files import report_removed
    from pcseg.io.atomic import remove_stale_temporaries

    started = time.time()
    session = open_session(
        args.scene,
        args.classes,
        scene_id=args.scene_id,
        spec=args.labels,
        run=args.run_dir,
        work=args.work,
        start=args.start,
    )
    folder = session.label_path.parent  # a label save killed mid-write left its temporary
    report_removed(remove_stale_temporaries(folder, started), folder)
    app = WebAnnotator(
        session,
        host=args.host,
        port=args.port,
        pick_px=args.pick_px,
        point_size=args.point_size,
        debug_json=args.debug_json,
        brush_radius=args.brush_radius,
    )
    print(session.start_message())
    app.serve_forever(exit_after=args.exit_after)
    return 0
