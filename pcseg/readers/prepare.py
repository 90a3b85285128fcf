"""Raw dataset folder -> processed folder (docs/ARCHITECTURE.md section 2) + weak-label index files.

Every scene of the requested splits (default: all splits the reader defines) is read with
``pcseg/readers/<dataset>.py``, written to ``OUT/scenes/`` and its weak labels drawn for
every label spec into ``OUT/labels/<spec>/``. Weak labels are drawn on the voxelized cloud
at ``voxel_size`` (the dataset default unless given; 0 = raw points), seeded by
(seed, scene name, spec) so they do not depend on worker count or order.

Resumable: a scene whose files all exist and were made with this run's fingerprint is
skipped; a scene whose data exists but lacks a spec only gets the missing labels.

Never mixed: the folder's ``meta.json`` keeps the fingerprint of what made it
(:func:`run_fingerprint`: class names and, for one's own scans, the CLASSES.yaml's map,
ignore, features, units; voxel size, seed, reader and its options, the processed format,
the label specs). A rerun whose fingerprint differs is refused with a
:class:`PrepareError` naming what changed ("map: 2->ground became 2->building"). A folder
made before fingerprints were kept is refused when it holds one's own scans (an earlier
rerun with a changed CLASSES.yaml mixed them without a trace) and extended, with a note,
when it is a benchmark's whose dataset, class names, voxel size and seed are this run's
(what the earlier pcseg checked; its classes are the reader's own). ``force`` (``pcseg
prepare --force``) empties the folder first (:func:`pcseg.data.processed.wipe_processed`:
scenes, labels, superpoint caches, meta.json; label folders written by ``pcseg annotate``
are kept) and rebuilds it.

Every file is written atomically. A scene that fails (truncated or empty scan, a
``.label`` shorter than its scan, NaN/inf points under ``nonfinite='refuse'``, ...) is
reported (scene id + error) and skipped: it is NOT listed in ``meta.json`` (written once,
after the scenes, with only the scenes whose files are complete), and the summary's
``dropped`` names it with its splits and error. A later run that reads it successfully
adds it back. ``pcseg prepare`` exits 1 when some scenes failed and 2 (a
:class:`PrepareError`) when every one did. A split left without scenes is left out of
``meta.json`` (named in ``dropped_splits``). The run ends with a summary, printed and
written to ``OUT/summary.json``.

Splits below a sequence / area: ``split_scenes`` ({split: [scene names or globs]},
``pcseg prepare --split-scenes train=00_000000 --split-scenes 'test=00_00000[12]'``)
defines the splits from the scenes the reader lists (for ``splits``, default every split
it defines); only those scenes are processed and only those splits are recorded. A name
or glob that matches no listed scene is an error naming it.

Readers: :func:`prepare_dataset` reads through a reader (:class:`pcseg.readers.common.Reader`:
a module of :data:`pcseg.readers.READERS` or an object such as
:class:`pcseg.readers.custom.CustomReader`) and passes it its own validated ``Options``
(``PrepareOptions.reader_options``); :func:`reader_options` builds them from plain values.

Entry point: :func:`prepare_dataset` (``pcseg prepare``; ``pcseg train`` prepares a missing
folder through :func:`pcseg.workflows.prepare.prepare_if_missing`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import multiprocessing as mp
import sys
import time
import traceback
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.data import processed
from pcseg.data.classes import class_names as dataset_class_names
from pcseg.data.weak_labels import (
    candidate_points,
    load_limited_annotation,
    parse_spec,
    sample_weak_labels,
)
from pcseg.io.atomic import atomic_write_json, remove_stale_temporaries
from pcseg.readers import READERS
from pcseg.readers.common import Reader, ReaderOptions, SplitError, validate_options
from pcseg.utils.progress import progress_bar

DEFAULT_VOXEL_SIZE: dict[str, float] = {"s3dis": 0.05, "scannet": 0.02, "semantickitti": 0.05}
FORCE_HINT = (
    "rerun with --force to reprocess it (removes its scenes, labels and superpoints; labels "
    "made with pcseg annotate are kept) or use another --out"
)


class PrepareError(ValueError):
    """A prepare run that cannot start or whose every scene failed (the message says why)."""


@dataclass
class PrepareOptions:
    """What :func:`prepare_dataset` does (the fields of ``pcseg prepare``).

    ``voxel_size`` in metres (None = dataset default, 0 = sample weak labels on raw points);
    ``labels``: weak-label specs (grammar in pcseg/data/weak_labels.py); ``splits``: None =
    every split the reader defines; ``limited_annotation``: official index files, each
    becoming spec ``import:<stem>``; ``split_scenes``: {split: scene names or globs}
    (module docstring). ``reader``: what reads the raw folder (None: ``READERS[dataset]``);
    ``reader_options``: an instance of that reader's ``Options`` (None: its defaults), e.g.
    ``s3dis.Options(on_unknown_class="skip")``, ``semantickitti.Options(config=...)``,
    ``scannet.Options(split_dir=...)``; every reader has ``nonfinite`` (NaN/inf points
    ``refuse`` or ``drop``, :func:`pcseg.readers.common.check_points`).
    """

    dataset: str
    raw: Path
    out: Path
    splits: list[str] | None = None
    voxel_size: float | None = None
    labels: list[str] = field(default_factory=list)
    seed: int = 0
    workers: int = 1
    #: reprocess from scratch: empty the folder first (module docstring)
    force: bool = False
    trust_pickle: bool = False
    limited_annotation: list[Path] = field(default_factory=list)
    #: a reader used instead of ``READERS[dataset]``, e.g. pcseg.readers.custom.CustomReader;
    #: picklable for workers
    reader: Reader | None = None
    #: the reader's own validated options (None: ``reader.Options()``)
    reader_options: ReaderOptions | None = None
    #: class names used instead of ``pcseg.data.classes.class_names(dataset)``
    class_names: list[str] | None = None
    #: further keys written to meta.json (e.g. the custom class spec)
    meta_extra: dict[str, Any] = field(default_factory=dict)
    #: further keys of the fingerprint (the custom class spec's ``classes`` and
    #: ``normalisation``: :func:`pcseg.readers.custom.spec_fingerprint`)
    fingerprint_extra: dict[str, Any] = field(default_factory=dict)
    #: how a refused rerun is told to go on (``pcseg train`` says it its own way)
    force_hint: str = FORCE_HINT
    split_scenes: dict[str, list[str]] = field(default_factory=dict)


def reader_of(opts: PrepareOptions) -> Reader:
    """The reader of ``opts``: ``opts.reader``, else ``READERS[opts.dataset]``;
    :class:`PrepareError` for an unknown dataset."""
    if opts.reader is not None:
        return opts.reader
    if opts.dataset not in READERS:
        raise PrepareError(f"unknown dataset {opts.dataset!r}; expected one of {list(READERS)}")
    return READERS[opts.dataset]


def reader_options(reader: Reader, values: Mapping[str, Any], who: str) -> ReaderOptions:
    """``reader.Options`` validated from ``values``; :class:`PrepareError` naming ``who``
    (e.g. the dataset), each bad option and what was expected."""
    try:
        return validate_options(reader.Options, who, values)
    except ValueError as e:
        raise PrepareError(str(e)) from None


def checked_reader_options(reader: Reader, opts: PrepareOptions) -> ReaderOptions:
    """``opts.reader_options`` (or the reader's defaults); :class:`PrepareError` when they
    are not the reader's own ``Options``."""
    if opts.reader_options is None:
        return reader.Options()
    if not isinstance(opts.reader_options, reader.Options):
        raise PrepareError(
            f"reader options of {opts.dataset} must be {reader.Options.__module__}."
            f"{reader.Options.__qualname__}, got {type(opts.reader_options).__module__}."
            f"{type(opts.reader_options).__qualname__}"
        )
    return opts.reader_options


def select_split_scenes(
    split_scenes: dict[str, list[str]], listed: list[str], raw: Path
) -> dict[str, list[str]]:
    """{split: scene ids} from {split: scene names or globs} matched against ``listed``
    (the scenes the reader found, in its order). Raises ``ValueError`` naming a split
    without patterns, or a name / glob that matches no listed scene."""
    out: dict[str, list[str]] = {}
    for split, patterns in split_scenes.items():
        if not patterns:
            raise ValueError(f"--split-scenes {split}=: no scene names or globs given")
        ids: list[str] = []
        for pat in patterns:
            hits = [s for s in listed if fnmatch.fnmatchcase(s, pat)]
            if not hits:
                near = [s for s in listed if pat.lower() in s.lower()][:3] or listed[:3]
                raise ValueError(
                    f"--split-scenes {split}={pat}: no scene of {raw} matches {pat!r} "
                    f"({len(listed)} scenes listed, e.g. {near}); expected a scene name or "
                    f"a glob (*, ?, [..])"
                )
            ids += [s for s in hits if s not in ids]
        out[split] = ids
    return out


def parse_split_scenes(items: list[str]) -> dict[str, list[str]]:
    """``["train=a,b", "test=c*"]`` -> {"train": ["a", "b"], "test": ["c*"]}; a split given
    twice collects both. ``ValueError`` naming the item when it is not ``SPLIT=PATTERNS``."""
    out: dict[str, list[str]] = {}
    for item in items:
        split, sep, rest = item.partition("=")
        split = split.strip()
        pats = [p.strip() for p in rest.split(",") if p.strip()]
        if not sep or not split or not pats:
            raise ValueError(
                f"--split-scenes {item!r}: expected SPLIT=NAME_OR_GLOB[,...] "
                f"(e.g. train=00_000000 or 'test=00_00000[12]')"
            )
        out.setdefault(split, []).extend(p for p in pats if p not in out.get(split, []))
    return out


def list_split_scenes(
    reader: Reader,
    raw: Path,
    splits: list[str] | None,
    options: ReaderOptions | None = None,
) -> dict[str, list[str]]:
    """{split: scene ids}. With ``splits=None`` every split the reader defines; a default split
    the raw folder lacks (listing raises or is empty) is left out with a note on stderr. A
    :class:`~pcseg.readers.common.SplitError` (the split exists but has no usable entry)
    is always raised; the reader's warnings (e.g. a bad line of a split list) are printed."""
    explicit = splits is not None
    out: dict[str, list[str]] = {}
    notes: list[str] = []
    warns: list[str] = []
    for split in splits if splits is not None else [str(s) for s in reader.SPLITS]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ids = [str(i) for i in reader.list_scenes(raw, split, options)]
            except (ValueError, FileNotFoundError, OSError) as e:
                if explicit or isinstance(e, SplitError):
                    raise ValueError(f"cannot list split {split!r} of {raw}: {e}") from e
                notes.append(f"split {split!r} skipped: {e}")
                continue
        warns.extend(str(w.message) for w in caught)
        if ids or explicit:
            out[split] = ids
    for w in dict.fromkeys(warns):
        print(f"warning: {w}", file=sys.stderr)
    for note in dict.fromkeys(notes):
        print(f"note: {note}", file=sys.stderr)
    return out


def process_scene(job: dict[str, Any]) -> dict[str, Any]:
    """Read (or reload), write and label one scene. Never raises: returns
    ``{"scene", "status": "done"|"skipped"|"failed", "error", "warnings", "points", "seconds"}``."""
    t0 = time.perf_counter()
    sid = job["scene"]
    out = Path(job["out"])
    specs: list[str] = job["specs"]
    res: dict[str, Any] = {
        "scene": sid,
        "status": "done",
        "error": None,
        "warnings": [],
        "points": 0,
    }
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            made = processed.scene_fingerprint(out, sid)
            have_scene = processed.scene_npz_path(out, sid).is_file() and (
                made == job["fingerprint"] or (made is None and job["extends"])
            )
            if have_scene:
                todo = [s for s in specs if not processed.labels_path(out, s, sid).is_file()]
                if not todo:
                    res["status"] = "skipped"
                    return res
                scene = processed.read_scene(out, sid)
            else:
                reader = job["reader"] or READERS[job["dataset"]]
                scene = reader.read_scene(Path(job["raw"]), sid, job["reader_options"])
                if scene.name != sid:
                    raise ValueError(f"reader returned scene named {scene.name!r} for id {sid!r}")
                processed.write_scene(out, scene, job["class_names"], job["fingerprint"])
                todo = list(specs)
            res["points"] = scene.num_points
            cand = None  # candidate pool shared by the sampled specs of this scene
            for spec in todo:
                if spec in job["imported"]:
                    idx = job["imported"][spec]
                    idx = np.zeros(0, dtype=np.int64) if idx is None else idx
                    if idx.size and idx[-1] >= scene.num_points:
                        raise ValueError(
                            f"{spec}: index {int(idx[-1])} out of range for "
                            f"{scene.num_points} points"
                        )
                else:
                    vs = job["voxel_size"] or None
                    if cand is None:
                        cand = candidate_points(scene, job["seed"], vs)
                    idx = sample_weak_labels(scene, spec, job["seed"], vs, candidates=cand)
                processed.write_labels(out, spec, sid, idx)
        res["warnings"] = [str(w.message) for w in caught]
    except Exception as e:  # noqa: BLE001 -- one bad scene must not stop the run
        res.update(
            status="failed",
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(limit=3),
        )
    res["seconds"] = time.perf_counter() - t0
    return res


def build_summary(
    out: Path,
    meta: dict[str, Any],
    scene_ids: list[str],
    failures: list[dict],
    warn_list: list[str],
    stats: dict[str, Any],
) -> dict[str, Any]:
    """Summary over every successfully processed scene of this run's splits."""
    names = list(meta["class_names"])
    hist = np.zeros(len(names), dtype=np.int64)
    failed = {f["scene"] for f in failures}
    points = 0
    spec_counts = {s: 0 for s in meta["label_specs_run"]}
    n_ok = 0
    for sid in scene_ids:
        if sid in failed:
            continue
        info = processed.read_scene_info(out, sid)
        n_ok += 1
        points += int(info["num_points"])
        hist += np.asarray(info["class_counts"], dtype=np.int64)
        for s in spec_counts:
            arr = np.load(processed.labels_path(out, s, sid), mmap_mode="r")
            spec_counts[s] += int(arr.shape[0])
    labelled = int(hist.sum())
    return {
        "dataset": meta["dataset"],
        "out": str(out),
        "voxel_size": meta["voxel_size"],
        "seed": meta["seed"],
        "splits": {k: len(v) for k, v in meta["splits_run"].items()},
        "scenes": n_ok,
        "scenes_total": len(scene_ids),
        "points": points,
        "labelled_points": labelled,
        "class_histogram": {n: int(c) for n, c in zip(names, hist)},
        "label_specs": {
            s: {
                "labelled": c,
                "pct_of_points": 100.0 * c / points if points else 0.0,
                "pct_of_labelled_points": 100.0 * c / labelled if labelled else 0.0,
            }
            for s, c in spec_counts.items()
        },
        "failures": failures,
        "warnings": warn_list,
        **stats,
    }


def run_fingerprint(
    opts: PrepareOptions,
    reader: Reader,
    ropts: ReaderOptions,
    voxel_size: float,
    class_names: list[str],
    specs: list[str],
) -> dict[str, Any]:
    """The fingerprint of this run (:mod:`pcseg.data.processed`): processed format,
    dataset, reader (module or class) and its options, class names, voxel size, seed,
    ``opts.fingerprint_extra`` and the label specs ({spec: its name, or for an imported
    one the SHA-256 of its file})."""
    defs = {s: s for s in specs}
    for f in opts.limited_annotation:
        digest = hashlib.sha256(Path(f).read_bytes()).hexdigest()[:16]
        defs[parse_spec(f"import:{Path(f).stem}").name] = f"file sha256 {digest}"
    if isinstance(reader, types.ModuleType):
        reader_name = reader.__name__
    else:
        reader_name = f"{type(reader).__module__}.{type(reader).__qualname__}"
    return {
        "format": processed.PROCESSED_FORMAT,
        "dataset": opts.dataset,
        "reader": reader_name,
        "reader_options": ropts.model_dump(mode="json"),
        "class_names": list(class_names),
        "voxel_size": float(voxel_size),
        "seed": int(opts.seed),
        **opts.fingerprint_extra,
        "label_specs": defs,
    }


def scene_digest(fingerprint: dict[str, Any], failing: Mapping[str, Any]) -> str:
    """:func:`pcseg.data.processed.scene_digest` of ``fingerprint`` without the reader
    options of ``failing`` (they decide whether a scene fails, not what it holds)."""
    ropts = {k: v for k, v in fingerprint["reader_options"].items() if k not in failing}
    return processed.scene_digest({**fingerprint, "reader_options": ropts})


def reusable_meta(opts: PrepareOptions) -> dict[str, Any] | None:
    """The ``meta.json`` of ``opts.out`` that a run of ``opts`` extends (its fingerprint is
    this run's): None when there is none, with ``opts.force`` or when an interrupted
    ``--force`` is to be finished; :class:`PrepareError` (:func:`existing_meta`) when the
    folder was made otherwise."""
    out = Path(opts.out)
    if opts.force or (out / processed.WIPE_MARKER).is_file() or not out.is_dir():
        return None
    reader = reader_of(opts)
    specs, _ = _label_specs(opts)
    fingerprint = run_fingerprint(
        opts,
        reader,
        checked_reader_options(reader, opts),
        _voxel_size(opts),
        _class_names(opts),
        specs,
    )
    return existing_meta(out, fingerprint, opts.force_hint, reader.Options.FAILING_VALUES)


def _voxel_size(opts: PrepareOptions) -> float:
    """The run's voxel size: ``opts.voxel_size``, else the dataset's default."""
    if opts.voxel_size is None:
        return DEFAULT_VOXEL_SIZE[opts.dataset]
    return float(opts.voxel_size)


def _class_names(opts: PrepareOptions) -> list[str]:
    return list(opts.class_names or dataset_class_names(opts.dataset))


def existing_meta(
    out: Path,
    fingerprint: dict[str, Any],
    hint: str = FORCE_HINT,
    failing: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The ``meta.json`` of ``out`` when there is one and it was made with ``fingerprint``
    (None when there is none). :class:`PrepareError` naming what changed
    (:func:`pcseg.data.processed.fingerprint_changes`) when it was made otherwise or before
    fingerprints were kept, ending with ``hint``. ``failing``: reader options whose value
    fails a scene instead of changing it (``ReaderOptions.FAILING_VALUES``): a folder made
    with that value takes another (its scenes are the same under both)."""
    path = out / "meta.json"
    if not path.is_file():
        return None
    try:
        old = processed.read_meta(out)
    except ValueError as e:
        raise PrepareError(f"{e}; {hint}") from None
    if not isinstance(old.get("fingerprint"), dict):
        return _unfingerprinted(out, old, fingerprint, hint)
    made = dict(old["fingerprint"])
    opts_then = dict(made.get("reader_options") or {})
    opts_now = fingerprint.get("reader_options") or {}
    for key, value in (failing or {}).items():
        if opts_then.get(key) == value and key in opts_now:
            opts_then[key] = opts_now[key]
    made["reader_options"] = opts_then
    changes = processed.fingerprint_changes(made, fingerprint)
    if changes:
        raise PrepareError(f"{out} was prepared otherwise: {'; '.join(changes)}; {hint}")
    return old


#: what a folder made before fingerprints holds of one, and an earlier pcseg checked
LEGACY_CHECKED = ("dataset", "class_names", "voxel_size", "seed")


def _unfingerprinted(
    out: Path, old: dict[str, Any], fingerprint: dict[str, Any], hint: str
) -> dict[str, Any]:
    """``old``, the meta of a folder made before fingerprints, when a rerun may extend it:
    a benchmark folder whose :data:`LEGACY_CHECKED` agree with this run (its classes are
    the reader's own), taken with a note as made with ``fingerprint``. One's own scans
    (meta.json has ``classes``) are refused: an earlier pcseg rerun with a changed
    CLASSES.yaml kept the old scenes and wrote the new class spec, so what meta.json says
    proves nothing. :class:`PrepareError` ending with ``hint`` otherwise."""
    if "classes" in old or old.get("dataset") == "custom":
        raise PrepareError(
            f"{out} was prepared before pcseg kept what made a processed folder, and a rerun "
            f"with a changed class file then mixed old and new scenes without a trace; {hint}"
        )
    then = {k: old.get(k) for k in LEGACY_CHECKED}
    changes = processed.fingerprint_changes(then, {k: fingerprint[k] for k in LEGACY_CHECKED})
    if changes:
        raise PrepareError(f"{out} was prepared otherwise: {'; '.join(changes)}; {hint}")
    print(
        f"note: {out} was prepared before pcseg kept a fingerprint; its dataset, class names, "
        "voxel size and seed are this run's, so its scenes are kept (its reader options "
        "cannot be checked: --force reprocesses it)",
        file=sys.stderr,
    )
    return {**old, "fingerprint": {}}


def merge_meta(
    old: dict[str, Any] | None,
    opts: PrepareOptions,
    fingerprint: dict[str, Any],
    splits: dict[str, list[str]],
    specs: list[str],
) -> dict[str, Any]:
    """The ``meta.json`` after this run: this run's splits, specs and fingerprint merged
    into ``old`` (the folder's meta made with the same fingerprint, :func:`existing_meta`;
    None: a new folder)."""
    meta = {
        "dataset": opts.dataset,
        "class_names": list(fingerprint["class_names"]),
        "voxel_size": fingerprint["voxel_size"],
        "splits": dict(splits),
        "label_specs": list(specs),
        "seed": opts.seed,
        "fingerprint": fingerprint,
    }
    if old is not None:
        merged_splits = dict(old["splits"])
        merged_splits.update(splits)
        meta["splits"] = merged_splits
        meta["label_specs"] = list(dict.fromkeys(list(old["label_specs"]) + list(specs)))
        then = old.get("fingerprint") or {}
        spec_defs = {**then.get("label_specs", {}), **fingerprint["label_specs"]}
        meta["fingerprint"] = {**fingerprint, "label_specs": spec_defs}
    return meta


def drop_incomplete(
    out: Path,
    meta: dict[str, Any],
    failed: dict[str, str],
    run_specs: list[str] | None = None,
    run_scenes: set[str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """``meta`` without the scenes that failed in this run or whose files are incomplete
    (their ``.npz`` / ``.json`` missing, or, for ``run_scenes``, a label file of
    ``run_specs``), and without splits left empty. Returns (meta, dropped [{"scene",
    "splits", "error"}], names of the splits left out)."""
    run_scenes = set() if run_scenes is None else run_scenes
    splits: dict[str, list[str]] = {}
    dropped: dict[str, dict[str, Any]] = {}
    for split, ids in meta["splits"].items():
        keep = []
        for sid in ids:
            if sid in failed:
                err = failed[sid]
            elif not processed.is_scene_done(
                out, sid, (run_specs or []) if sid in run_scenes else ()
            ):
                err = "processed files incomplete (scene or label file missing)"
            else:
                keep.append(sid)
                continue
            entry = dropped.setdefault(sid, {"scene": sid, "splits": [], "error": err})
            entry["splits"].append(split)
        if keep:
            splits[split] = keep
    empty = [s for s in meta["splits"] if s not in splits]
    return {**meta, "splits": splits}, sorted(dropped.values(), key=lambda d: d["scene"]), empty


def check_out_folder(out: Path) -> None:
    """:class:`PrepareError` when ``--out`` is an existing file (not a folder)."""
    if out.exists() and not out.is_dir():
        raise PrepareError(f"--out {out} is an existing file, not a folder")


def prepare_dataset(opts: PrepareOptions) -> dict[str, Any]:
    """Convert ``opts.raw`` into the processed folder ``opts.out``; returns the summary (also
    printed and written to ``OUT/summary.json``). Raises :class:`PrepareError` when nothing
    can be prepared (no scenes, unknown imported spec, a folder made with another
    fingerprint and no ``opts.force``) or every scene failed."""
    t_start, started = time.perf_counter(), time.time()
    reader = reader_of(opts)
    ropts = checked_reader_options(reader, opts)
    out = Path(opts.out)
    raw = Path(opts.raw)
    voxel_size = _voxel_size(opts)
    class_names = _class_names(opts)
    specs, imported = _label_specs(opts)
    try:
        splits = list_split_scenes(reader, raw, opts.splits, ropts)
        if opts.split_scenes:
            listed = list(dict.fromkeys(i for ids in splits.values() for i in ids))
            splits = select_split_scenes(opts.split_scenes, listed, raw)
    except ValueError as e:
        raise PrepareError(str(e)) from e
    scene_ids = list(dict.fromkeys(i for ids in splits.values() for i in ids))
    if not scene_ids:
        raise PrepareError(f"no scenes found in {raw} for splits {opts.splits or 'all'}")
    for name, mapping in imported.items():
        unknown = sorted(set(mapping) - set(scene_ids))
        if unknown:
            print(
                f"note: {name}: {len(unknown)} scene(s) of the file are not processed here "
                f"(first: {unknown[0]})",
                file=sys.stderr,
            )

    check_out_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    if processed.finish_wipe(out):
        print(f"note: finished the interrupted --force of an earlier run in {out}", file=sys.stderr)
    fingerprint = run_fingerprint(opts, reader, ropts, voxel_size, class_names, specs)
    failing = reader.Options.FAILING_VALUES
    old = None if opts.force else existing_meta(out, fingerprint, opts.force_hint, failing)
    if opts.force:
        kept = processed.wipe_processed(out)
        if kept:
            print(
                f"note: --force kept the labels made with pcseg annotate in {out}/labels: "
                f"{', '.join(kept)} (their classes are indices into the class names)",
                file=sys.stderr,
            )
    removed = remove_stale_temporaries(out, started, recursive=True)
    if removed:
        names = ", ".join(str(p.relative_to(out)) for p in removed[:5])
        print(
            f"note: removed {len(removed)} leftover temporary file(s) of an interrupted run "
            f"from {out}: {names}{' ...' if len(removed) > 5 else ''}",
            file=sys.stderr,
        )
    meta = merge_meta(old, opts, fingerprint, splits, specs)  # written after the scenes
    meta.update(opts.meta_extra)
    digest = scene_digest(fingerprint, failing)
    jobs = [
        {
            "scene": sid,
            "dataset": opts.dataset,
            "raw": str(raw),
            "out": str(out),
            "specs": specs,
            "seed": opts.seed,
            "voxel_size": voxel_size,
            "fingerprint": digest,
            # a scene without a digest is one of a folder made before them, taken as this
            # run's (:func:`existing_meta`)
            "extends": old is not None,
            "class_names": class_names,
            "reader": opts.reader,
            "reader_options": ropts,
            "imported": {n: m.get(sid) for n, m in imported.items()},
        }
        for sid in scene_ids
    ]
    results = _run_jobs(jobs, opts.workers, f"prepare {opts.dataset}")
    failed = {r["scene"]: r["error"] for r in results if r["status"] == "failed"}
    meta, dropped, dropped_splits = drop_incomplete(out, meta, failed, specs, set(scene_ids))
    processed.write_meta(out, meta)
    summary = _summarise(
        out, meta, specs, splits, scene_ids, results, opts.workers, time.perf_counter() - t_start
    )
    summary["dropped"] = dropped
    summary["dropped_splits"] = dropped_splits
    atomic_write_json(out / "summary.json", summary)
    print_summary(summary)
    if summary["failed"] == len(scene_ids):
        raise PrepareError(f"every scene of {raw} failed ({len(scene_ids)}); see the list above")
    return summary


def _label_specs(opts: PrepareOptions) -> tuple[list[str], dict[str, dict[str, np.ndarray]]]:
    """(normalised spec names incl. imported ones, {import spec: {scene: indices}})."""
    specs = [parse_spec(s).name for s in opts.labels]
    imported: dict[str, dict[str, np.ndarray]] = {}
    for f in opts.limited_annotation:
        name = parse_spec(f"import:{Path(f).stem}").name
        imported[name] = load_limited_annotation(Path(f), trusted=opts.trust_pickle)
        if name not in specs:
            specs.append(name)
    missing = [s for s in specs if parse_spec(s).kind == "import" and s not in imported]
    if missing:
        raise PrepareError(
            f"label spec(s) {missing} are imported: pass the file with --limited-annotation"
        )
    return specs, imported


def _run_jobs(jobs: list[dict[str, Any]], workers: int, desc: str) -> list[dict[str, Any]]:
    """Run :func:`process_scene` over ``jobs`` (in-process or in a pool), reporting each failure."""
    results: list[dict[str, Any]] = []
    bar = progress_bar(total=len(jobs), desc=desc, unit="scene", dynamic_ncols=True)

    def handle(r: dict[str, Any]) -> None:
        results.append(r)
        if r["status"] == "failed":
            bar.write(f"FAILED {r['scene']}: {r['error']}")
        for w in r["warnings"]:
            bar.write(f"warning ({r['scene']}): {w}")
        bar.update(1)

    if workers == 1:
        for job in jobs:
            handle(process_scene(job))
    else:
        with mp.Pool(processes=workers) as pool:
            for r in pool.imap_unordered(process_scene, jobs, chunksize=1):
                handle(r)
    bar.close()
    return results


def _summarise(
    out: Path,
    meta: dict[str, Any],
    specs: list[str],
    splits: dict[str, list[str]],
    scene_ids: list[str],
    results: list[dict[str, Any]],
    workers: int,
    seconds: float,
) -> dict[str, Any]:
    failures = sorted(
        ({"scene": r["scene"], "error": r["error"]} for r in results if r["status"] == "failed"),
        key=lambda f: f["scene"],
    )
    warn_list = [f"{r['scene']}: {w}" for r in results for w in r["warnings"]]
    done = [r for r in results if r["status"] == "done"]
    new_points = sum(r["points"] for r in done)
    stats = {
        "processed": len(done),
        "skipped": sum(r["status"] == "skipped" for r in results),
        "failed": len(failures),
        "seconds": round(seconds, 3),
        "points_processed": new_points,
        "points_per_second": new_points / seconds if seconds > 0 else 0.0,
        "workers": workers,
    }
    return build_summary(
        out,
        {**meta, "label_specs_run": specs, "splits_run": splits},
        scene_ids,
        failures,
        warn_list,
        stats,
    )


def print_summary(s: dict[str, Any]) -> None:
    """Print a prepare summary (see :func:`build_summary`)."""
    print(
        f"\n{s['dataset']}: {s['scenes']}/{s['scenes_total']} scenes, {s['points']:,} points "
        f"({s['labelled_points']:,} labelled); processed {s['processed']}, skipped {s['skipped']}, "
        f"failed {s['failed']} in {s['seconds']:.1f}s ({s['points_per_second']:,.0f} points/s)"
    )
    for name, c in s["class_histogram"].items():
        print(f"  {name:>16s} {c:>12,d}")
    for spec, d in s["label_specs"].items():
        print(
            f"  labels {spec:>10s}: {d['labelled']:>10,d} points = "
            f"{d['pct_of_points']:.4f}% of points, "
            f"{d['pct_of_labelled_points']:.4f}% of labelled points"
        )
    if s["failures"]:
        print(f"FAILED scenes ({len(s['failures'])}):")
        for f in s["failures"]:
            print(f"  {f['scene']}: {f['error']}")
    if s.get("dropped"):
        print(
            f"DROPPED from meta.json ({len(s['dropped'])} scenes; fix the file and run again "
            f"to add them back):"
        )
        for d in s["dropped"]:
            print(f"  {d['scene']} (splits {', '.join(d['splits'])}): {d['error']}")
    if s.get("dropped_splits"):
        print(f"splits left without scenes, not in meta.json: {', '.join(s['dropped_splits'])}")
