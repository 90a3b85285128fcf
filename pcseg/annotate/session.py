"""One annotation session: a processed scene, the class list, the label file, optional run.

:func:`open_session` resolves SCENE (a raw point file, ``PROCESSED/scenes/<id>.npz`` or
``PROCESSED`` plus a scene id), checks the class list against the processed folder's
``meta.json``, checks the label folder is writable, attaches a run's predictions when given,
and chooses the labels it starts from:

* the label file ``labels/<spec>/<scene>.npy`` when it exists (where the user left off);
* else, with ``start="given"`` (the default), the file's own classes: the processed folder's
  ``given`` labels (``pcseg prepare custom``'s: a LAS classification or PLY label field mapped
  through the CLASSES.yaml ``map``, ``ignore`` values left unlabelled), written at once as
  the label file so that they are edited (and train) like clicked ones;
* else none (``start="empty"``, or a scene without ``given`` labels).

A raw file is prepared once into a working folder OUTSIDE its own folder (default
``annotations/<stem>/`` under the current directory, :func:`default_work_folder`), so that
``pcseg predict DIR`` and ``pcseg prepare custom --raw DIR`` never meet it; and where one does
sit inside a scanned folder, :func:`pcseg.io.point_file.list_point_files` skips processed
folders. No GUI here.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcseg.annotate.state import AnnotationError, AnnotationState, ClassList, load_classes
from pcseg.data import processed
from pcseg.data.superpoints import SuperpointOptions, scene_superpoints
from pcseg.data.weak_labels import parse_spec
from pcseg.viz.data import ViewData, attach_predictions, load_processed_scene

DEFAULT_SPEC = "import:annotate"
#: what a session starts from when there is no label file yet (module docstring)
START_CHOICES = ("given", "empty")


@dataclass
class Session:
    """What the front end works on.

    Attributes:
        processed, scene: the processed folder and the scene id.
        spec: the label spec whose file is written (``data.label_spec`` for training).
        label_path: ``processed/labels/<spec_dirname>/<scene>.npy``.
        view: the scene (and predictions when a run is given) as the viewer loads it.
        classes: the class list; state: the annotation state (autosaving to label_path).
        resumed: number of labelled points read back from an existing label file.
    """

    processed: Path
    scene: str
    spec: str
    label_path: Path
    view: ViewData
    classes: ClassList
    state: AnnotationState
    resumed: int = 0
    #: number of points labelled from the file's own classes at the start (the ``given``
    #: labels, see the module docstring)
    from_file: int = 0
    #: the scene's superpoints (computed on first use, see :meth:`superpoint_of`)
    superpoints: np.ndarray | None = field(default=None, repr=False)

    @property
    def has_predictions(self) -> bool:
        return self.view.pred is not None

    def start_message(self) -> str:
        """One line on the labels the session starts from and where they are saved."""
        if self.resumed:
            return f"resumed {self.resumed:,d} labelled points from {self.label_path}"
        if self.from_file:
            return (
                f"started from the file's own classes: {self.from_file:,d} labelled points "
                f"(--start empty for none); saved to {self.label_path}"
            )
        return f"labels go to {self.label_path}"

    def superpoint_of(self, idx: int, options: SuperpointOptions | None = None) -> np.ndarray:
        """Sorted indices of the points in the superpoint of point ``idx``: what a label on
        ``idx`` spreads to when training with ``data.superpoints`` (the same cached
        over-segmentation, :func:`pcseg.data.superpoints.scene_superpoints`). ``options``:
        default the library defaults at the processed folder's voxel size."""
        if self.superpoints is None:
            if options is None:
                voxel = float(processed.read_meta(self.processed)["voxel_size"])
                options = SuperpointOptions(voxel_size=voxel)
            self.superpoints = scene_superpoints(self.processed, self.scene, options)
        i = int(self.state._check_idx([idx])[0])
        return np.flatnonzero(self.superpoints == self.superpoints[i]).astype(np.int64)


def is_raw_file(scene: str | os.PathLike) -> bool:
    """True for a point-cloud file `pcseg prepare custom` reads (LAS/LAZ, PLY, PCD, NPY/NPZ,
    TXT/CSV, .bin), as opposed to a processed scene ``PROCESSED/scenes/<id>.npz``."""
    from pcseg.io.point_file import SUFFIXES

    p = Path(scene)
    return (
        p.is_file() and p.parent.name != "scenes" and "".join(p.suffixes[-1:]).lower() in SUFFIXES
    )


def default_work_folder(path: str | os.PathLike) -> Path:
    """Where a raw file is prepared for labelling unless ``--work`` says otherwise:
    ``annotations/<stem>`` under the current directory (outside the raw file's folder, as
    long as that is not the current directory itself)."""
    return Path("annotations") / Path(path).stem


def prepare_raw_file(
    path: Path, classes: str | os.PathLike | None, work: str | os.PathLike | None = None
) -> tuple[Path, str]:
    """(processed folder, scene id) of a raw file: it is prepared once (``pcseg prepare
    custom`` with the CLASSES.yaml, labels ``given`` from the file's classes when the
    CLASSES.yaml has a ``label_field``) into the working folder ``work`` (default
    :func:`default_work_folder`) and reused after that, so the labels
    (``WORK/labels/<spec>/<stem>.npy``) train with ``pcseg train ... --set data.root=WORK
    data.label_spec=import:annotate``. A working folder made for another file is an
    AnnotationError naming both."""
    from pcseg.readers.custom import ClassesError, prepare_custom
    from pcseg.readers.prepare import PrepareError

    if classes is None:
        raise AnnotationError(f"{path}: a raw file needs --classes CLASSES.yaml to be prepared")
    out = Path(work) if work is not None else default_work_folder(path)
    sid = path.stem
    raw = out / "raw"
    link = raw / path.name
    held = sorted(p.name for p in raw.iterdir()) if raw.is_dir() else []
    ours = held == [path.name] and link.is_symlink() and link.resolve() == path.resolve()
    if not ours and (held or (out / "scenes").is_dir()):
        made_for = str(link.resolve()) if link.is_symlink() else ", ".join(held) or "other scans"
        raise AnnotationError(
            f"{out} is the working folder of another file ({made_for}), not {path}; "
            f"give --work FOLDER for this one"
        )
    if not (out / "scenes" / f"{sid}.npz").is_file():
        raw.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(path.resolve())
        try:
            prepare_custom(raw, Path(classes), out)
        except (ClassesError, PrepareError, ValueError, FileNotFoundError) as e:
            raise AnnotationError(f"{path}: cannot prepare it for labelling: {e}") from None
    return out, sid


def resolve_scene(scene: str | os.PathLike, scene_id: str | None = None) -> tuple[Path, str]:
    """(processed folder, scene id) from ``PROCESSED/scenes/<id>.npz`` or ``PROCESSED`` + id."""
    p = Path(scene)
    if p.is_file() or p.suffix == ".npz":
        if p.suffix != ".npz" or p.parent.name != "scenes":
            raise AnnotationError(
                f"{p}: expected a processed scene PROCESSED/scenes/<id>.npz or "
                f"a processed folder with --scene ID"
            )
        if not p.is_file():
            raise AnnotationError(f"processed scene {p} does not exist")
        if scene_id is not None and scene_id != p.stem:
            raise AnnotationError(f"--scene {scene_id} contradicts the scene file {p}")
        return p.parent.parent, p.stem
    if not p.is_dir():
        raise AnnotationError(
            f"{p} does not exist (expected a processed scene "
            f"PROCESSED/scenes/<id>.npz or a processed folder)"
        )
    ids = sorted(q.stem for q in (p / "scenes").glob("*.npz"))
    if not ids:
        raise AnnotationError(f"{p}: no processed scenes (scenes/*.npz); run pcseg prepare")
    if scene_id is None:
        if len(ids) > 1:
            raise AnnotationError(
                f"{p} holds {len(ids)} scenes; choose one with --scene (e.g. {', '.join(ids[:5])})"
            )
        scene_id = ids[0]
    if scene_id not in ids:
        raise AnnotationError(
            f"scene {scene_id!r} not in {p / 'scenes'} (has "
            f"{', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''})"
        )
    return p, scene_id


def check_writable(folder: Path) -> None:
    """AnnotationError naming ``folder`` when label files cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise AnnotationError(
            f"cannot write label files into {folder}: {e.strerror or e} "
            f"(expected a writable folder; copy the processed folder or "
            f"fix its permissions)"
        ) from None


def open_session(
    scene: str | os.PathLike,
    classes: str | os.PathLike | ClassList,
    scene_id: str | None = None,
    spec: str = DEFAULT_SPEC,
    run: str | os.PathLike | None = None,
    work: str | os.PathLike | None = None,
    start: str = "given",
) -> Session:
    """Open SCENE for labelling (module docstring); errors are :class:`AnnotationError`.

    ``work``: the working folder of a raw file (default :func:`default_work_folder`);
    ``start``: ``"given"`` (start from the file's own classes where there is no label file
    yet) or ``"empty"``."""
    if start not in START_CHOICES:
        raise AnnotationError(f"--start {start!r}: expected one of {', '.join(START_CHOICES)}")
    if is_raw_file(scene):
        root, sid = prepare_raw_file(
            Path(scene), classes if not isinstance(classes, ClassList) else None, work
        )
    else:
        root, sid = resolve_scene(scene, scene_id)
    cl = classes if isinstance(classes, ClassList) else load_classes(classes)
    try:
        spec = parse_spec(spec).name
    except ValueError as e:
        raise AnnotationError(f"--labels {spec!r}: {e}") from None
    if spec == "full":
        raise AnnotationError(
            f"--labels full is the complete ground truth; choose another spec, e.g. {DEFAULT_SPEC}"
        )
    try:
        view = load_processed_scene(root, sid)
    except (FileNotFoundError, ValueError) as e:
        raise AnnotationError(str(e)) from None
    meta_names = list(view.class_names)
    if meta_names != cl.names:
        raise AnnotationError(
            f"class file {cl.source or '(given)'} lists {cl.names} but the processed scene "
            f"{root / 'scenes' / (sid + '.json')} has classes {meta_names}: a class index must "
            f"mean the same class in both (training reads the processed folder's classes)"
        )
    if run is not None:
        pred = Path(run) / "test" / "predictions" / f"{sid}.npz"
        try:
            attach_predictions(view, pred)
        except (FileNotFoundError, ValueError) as e:
            raise AnnotationError(f"--run {run}: {e} (run pcseg test on it first)") from None
    path = processed.labels_path(root, spec, sid)
    check_writable(path.parent)
    state = AnnotationState(
        view.coords, cl, view.feats if view.feat_kind == "rgb" else None, path=path
    )
    resumed = from_file = 0
    given = processed.labels_path(root, "given", sid)
    if path.is_file():
        resumed = state.load(path, semantic=view.semantic)
    elif start == "given" and given.is_file():
        from_file = state.load(given, semantic=view.semantic)
        if from_file:
            state.save()
    _register_spec(root, spec)
    return Session(root, sid, spec, path, view, cl, state, resumed, from_file)


def _register_spec(root: Path, spec: str) -> None:
    """Add ``spec`` to meta.json's label_specs (so viewers list it); best effort."""
    try:
        meta = processed.read_meta(root)
    except ValueError:
        return
    if spec not in meta["label_specs"]:
        meta["label_specs"] = [*meta["label_specs"], spec]
        try:
            processed.write_meta(root, meta)
        except OSError:
            pass


def labelled_mask(session: Session) -> np.ndarray:
    """(N,) bool: points the user has labelled."""
    return session.state.labels >= 0
