"""The top of ``pcseg predict``: the files of the inputs, one predictor, each file sent down
the in-memory path (:mod:`pcseg.inference.memory`) or the out-of-core one
(:mod:`pcseg.inference.streamed`), a summary written at the end, merged with those of
earlier runs into the same folder (:func:`merge_summaries`).

Distributed: under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set) rank r predicts files
r, r + W, ...; each rank writes its own files and ``predict_summary.rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.inference.las_codes import EVERY_POINT, CodePolicy
from pcseg.inference.memory import predict_file_in_memory
from pcseg.inference.predictor import PredictError, Predictor, load_predictor
from pcseg.inference.streamed import DEFAULT_CHUNK_POINTS, predict_file_streamed, stream_supported
from pcseg.inference.tiling import DEFAULT_VOXEL_BUDGET
from pcseg.io.atomic import atomic_write_json, remove_stale_temporaries
from pcseg.io.point_file import PointFile, PointFileError, file_format, list_point_files
from pcseg.io.points import OUTPUT_FORMATS, output_names
from pcseg.io.stream import STREAM_FORMATS, iter_chunks, ply_stream_layout, stream_count
from pcseg.readers.custom import check_feature_fields

STREAM_MODES = ("auto", "always", "never")


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files of ``inputs`` (a folder: every supported file under it, sorted, hidden files
    and folders and temporaries skipped: :func:`pcseg.io.point_file.list_point_files`)."""
    return [f for f, _ in plan_outputs(inputs)]


def plan_outputs(inputs: Sequence[str | Path], fmt: str = "same") -> list[tuple[Path, Path]]:
    """(file, output subfolder relative to ``--out``) of every file of ``inputs``: a file
    of a folder keeps its subfolder under that folder (``tiles/a/t.las`` of the input
    ``tiles`` -> ``a``), a file given by name goes to ``--out`` itself. Files listed twice
    are predicted once. :class:`PredictError` naming both inputs where two would write one
    output file (:func:`pcseg.io.points.output_names` under ``fmt``): ``a/t.las`` and
    ``b/t.las`` given by name, or ``t.las`` and ``t.ply`` under ``--format las``; files of
    one stem in other folders or formats are otherwise predicted side by side."""
    plan: dict[Path, Path] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in list_point_files(p):
                plan.setdefault(f, f.parent.relative_to(p))
        else:
            plan.setdefault(p, Path())
    writers: dict[Path, Path] = {}
    for f, sub in plan.items():
        try:
            names = output_names(f, fmt)
        except ValueError:
            continue  # not a point file: its own line says so when it is predicted
        for name in names:
            first = writers.setdefault(sub / name, f)
            if first != f:
                raise PredictError(
                    f"{first} and {f} would both be written as {sub / name} in --out; "
                    "pass their folder (its subfolders are kept under --out), rename one "
                    "or predict them into different --out folders"
                )
    return list(plan.items())


def use_stream(
    path: Path, fmt: str, voxel_budget: int | None, stream: str, chunk_points: int
) -> bool:
    """Whether :func:`predict_file` takes the out-of-core path: ``stream`` 'always' (LAS/
    LAZ/NPY written in their own format, with a voxel budget), 'never', or 'auto' (those
    files when they hold more than ``chunk_points`` points)."""
    if stream not in STREAM_MODES:
        raise PredictError(f"stream must be one of {STREAM_MODES}, got {stream!r}")
    if stream == "never" or voxel_budget is None or not stream_supported(path, fmt):
        return False
    if stream == "always":
        return True
    try:
        return stream_count(path) > chunk_points
    except ValueError:
        return False  # the in-memory reader reports the bad file


def predict_file(
    predictor: Predictor,
    path: Path,
    out_dir: Path,
    fmt: str = "same",
    voxel_budget: int | None = DEFAULT_VOXEL_BUDGET,
    overlap: float | None = None,
    progress: bool = False,
    stream: str = "auto",
    chunk_points: int = DEFAULT_CHUNK_POINTS,
    policy: CodePolicy = EVERY_POINT,
) -> dict[str, Any]:
    """Predict one file and write its labelled copy; returns its summary entry. ``stream``:
    see :func:`use_stream`; ``policy``: which points' LAS codes are replaced."""
    path = Path(path)
    if use_stream(path, fmt, voxel_budget, stream, chunk_points):
        assert voxel_budget is not None
        r = predict_file_streamed(
            predictor,
            path,
            out_dir,
            voxel_budget,
            overlap,
            chunk_points,
            progress=progress,
            policy=policy,
        )
        r.pop("boxes", None)
        return r
    return predict_file_in_memory(
        predictor, path, out_dir, fmt, voxel_budget, overlap, progress, policy
    )


def first_point(path: Path) -> PointFile | None:
    """The first point of a LAS/LAZ, structured NPY or binary PLY file with every field
    the file's header declares, read without the rest (None for other formats, or a file
    that cannot be read so: it fails in its own turn)."""
    try:
        fmt = file_format(path)
        if fmt not in STREAM_FORMATS or (fmt == "ply" and ply_stream_layout(path) is None):
            return None
        chunk = next(iter(iter_chunks(path, 1)), None)
    except (PointFileError, OSError, ValueError):
        return None
    if chunk is None:
        return None
    fields = {n: np.asarray(chunk.record[n])[:1] for n in chunk.names}
    return PointFile(path, file_format(path), chunk.xyz[:1], fields)


def check_feature_inputs(predictor: Predictor, files: Sequence[Path]) -> None:
    """:class:`PredictError` (one line) before any file is predicted when a file's fields
    (:func:`first_point`) lack one that the checkpoint's features read, naming the file,
    the fields it has and how many other files lack one too. Files whose fields are known
    only once read whole (TXT, PCD, ASCII PLY, ...) are checked when read (that file
    fails, the others go on)."""
    spec = predictor.spec
    if not spec.features:
        return
    bad: list[str] = []
    for f in files:
        one = first_point(f)
        if one is None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # range notes on one point mean nothing
                check_feature_fields(one, spec)
        except PointFileError as e:
            bad.append(str(e))
    if bad:
        more = f" (and {len(bad) - 1} more file(s))" if len(bad) > 1 else ""
        raise PredictError(
            f"checkpoint {predictor.checkpoint} was trained on features {spec.features}: "
            f"{bad[0]}{more}"
        )


def report_removed(removed: Sequence[Path], out_dir: Path) -> None:
    """Say on stderr which leftovers of an interrupted run were removed from ``out_dir``."""
    if removed:
        names = ", ".join(p.name for p in removed[:5]) + (" ..." if len(removed) > 5 else "")
        print(
            f"note: removed {len(removed)} leftover temporary file(s) / folder(s) of an "
            f"interrupted run from {out_dir}: {names}",
            file=sys.stderr,
        )


def rank_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment (0, 1 without it)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


#: what every file entry of a folder's summary carries from the run that wrote it
ENTRY_RUN_KEYS = ("run_time", "checkpoint", "classes", "colors")


def run_time(t: float) -> str:
    """``t`` (``time.time()``) as an ISO 8601 UTC time to the second (``...T21:30:00Z``)."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _input_key(entry: dict[str, Any]) -> str:
    return str(entry.get("input_path") or Path(entry["file"]).resolve())


def _previous(
    previous: dict[str, Any] | None, written: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs, files, failures) of a folder's summary; a summary of one run without
    ``runs`` (written before runs were merged) is that run, dated ``written``.
    TypeError / KeyError for a summary of another shape."""
    if previous is None:
        return [], [], []
    if not isinstance(previous, dict):
        raise TypeError("not a JSON object")
    files, failures = list(previous["files"]), list(previous["failures"])
    if not all(isinstance(e, dict) and "file" in e for e in files + failures):
        raise TypeError("an entry of 'files' / 'failures' is no object with a 'file'")
    if "runs" in previous:
        return list(previous["runs"]), files, failures
    record = {k: v for k, v in previous.items() if k not in ("files", "failures")}
    record = {"run_time": written, **record, "labelled": len(files), "failed": len(failures)}
    tag = {k: record.get(k) for k in ENTRY_RUN_KEYS}
    return [record], [{**e, **tag} for e in files], [{**e, **tag} for e in failures]


def merge_summaries(
    previous: dict[str, Any] | None, run: dict[str, Any], written: str = ""
) -> dict[str, Any]:
    """The summary of an ``--out`` folder after ``run`` (one run's summary, as
    :func:`predict_files` returns it) on top of ``previous`` (the folder's summary before,
    None for its first run; one of the old one-run form is dated ``written``).

    Returns ``runs`` (each run's settings and totals, oldest first, with ``labelled`` /
    ``failed`` counts instead of its file lists), ``files`` (per input file the newest
    successful entry, sorted by input, each with its run's ``run_time``, ``checkpoint``,
    ``classes``, ``colors`` and the resolved ``input_path``; an older entry whose output a
    newer run rewrote is dropped) and ``failures`` (the inputs whose newest attempt failed;
    an older success of such an input stays in ``files``: its output is still there).
    """
    old_runs, old_files, old_failures = _previous(previous, written)
    tag = {k: run.get(k) for k in ENTRY_RUN_KEYS}
    new_files = [{**e, **tag, "input_path": _input_key(e)} for e in run["files"]]
    new_failures = [{**e, **tag, "input_path": _input_key(e)} for e in run["failures"]]
    done = {e["input_path"] for e in new_files}
    tried = done | {e["input_path"] for e in new_failures}
    rewritten = {Path(e["output"]).name for e in new_files}
    kept = [
        e
        for e in old_files
        if _input_key(e) not in done and Path(str(e.get("output", ""))).name not in rewritten
    ]
    record = {k: v for k, v in run.items() if k not in ("files", "failures")}
    record.update(labelled=len(run["files"]), failed=len(run["failures"]))
    return {
        "runs": [*old_runs, record],
        "files": sorted(kept + new_files, key=_input_key),
        "failures": [e for e in old_failures if _input_key(e) not in tried] + new_failures,
    }


def write_summary(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Merge ``run`` into the summary at ``path`` (:func:`merge_summaries`) and write it
    atomically; returns what was written. A summary that cannot be read is kept aside as
    ``<name>.unreadable.json`` (said on stderr) and a new one started."""
    merged: dict[str, Any] | None = None
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
            merged = merge_summaries(previous, run, run_time(path.stat().st_mtime))
        except (OSError, ValueError, KeyError, TypeError) as e:
            aside = path.with_name(f"{path.stem}.unreadable.json")
            os.replace(path, aside)
            print(
                f"warning: {path} could not be read ({type(e).__name__}: {e}); kept as "
                f"{aside.name}, a new summary started",
                file=sys.stderr,
            )
    if merged is None:
        merged = merge_summaries(None, run)
    atomic_write_json(path, merged)
    return merged


def predict_files(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    fmt: str = "same",
    classes: str | Path | None = None,
    voxel_budget: int | None = DEFAULT_VOXEL_BUDGET,
    overlap: float | None = None,
    device: str = "auto",
    progress: bool = True,
    stream: str = "auto",
    chunk_points: int = DEFAULT_CHUNK_POINTS,
    policy: CodePolicy = EVERY_POINT,
    precision: str = "fp32",
) -> dict[str, Any]:
    """``pcseg predict``: label every file of ``inputs`` into ``out`` (a file that fails is
    reported, the others go on); ``policy``: which LAS codes are replaced; ``precision``:
    fp32 or bf16 (:mod:`pcseg.inference.predictor`). Each file's line names its units, its
    notes (CRS / units / features unlike the training files') are warnings. Returns this run's
    summary, merged into ``OUT/predict_summary.json`` (``.rank<r>.json`` under torchrun) with
    earlier runs' (:func:`merge_summaries`: newest entry per input file)."""
    started = time.time()
    if fmt != "same" and fmt not in OUTPUT_FORMATS:
        raise PredictError(f"--format must be 'same' or one of {OUTPUT_FORMATS}, got {fmt!r}")
    if stream not in STREAM_MODES:
        raise PredictError(f"--stream must be one of {STREAM_MODES}, got {stream!r}")
    if chunk_points < 1:
        raise PredictError(f"--chunk-points must be >= 1, got {chunk_points}")
    plan = plan_outputs(inputs, fmt)
    if not plan:
        raise PredictError(f"no input files in {list(map(str, inputs))}")
    rank, world = rank_world()
    mine = plan[rank::world]
    predictor = load_predictor(checkpoint, classes, device, precision)
    check_feature_inputs(predictor, [f for f, _ in plan])
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise PredictError(f"--out {out_dir} is an existing file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    for sub in sorted({out_dir / sub for _, sub in mine}):
        report_removed(remove_stale_temporaries(sub, started), sub)
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, (f, sub) in enumerate(mine):
        if progress:
            print(f"[predict] ({i + 1}/{len(mine)}) {f}", file=sys.stderr)
        try:
            args = (fmt, voxel_budget, overlap, progress, stream, chunk_points, policy)
            r = predict_file(predictor, f, out_dir / sub, *args)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
            failed.append(
                {
                    "file": str(f),
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=3),
                }
            )
            print(f"FAILED {f}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        done.append(r)
        shares = ", ".join(f"{n} {100 * s:.1f}%" for n, s in r["class_shares"].items() if s > 0)
        how = "streamed, " if r.get("streamed") else ""
        print(
            f"{f} -> {r['output']}: {r['points']:,} points, {how}{r['tiles']} tile(s); "
            f"{shares}; units {r.get('units', 'metre')}"
        )
        for note in r.get("notes", []):
            print(f"warning: {f}: {note}", file=sys.stderr)
    points = sum(r["points"] for r in done)
    seconds = time.perf_counter() - t0
    summary = {
        "run_time": run_time(started),
        "checkpoint": str(checkpoint),
        "classes": predictor.class_names,
        "colors": dict(predictor.spec.colors) if predictor.spec.colors else None,
        "voxel_size": predictor.voxel_size,
        "voxel_budget": voxel_budget,
        "overlap_m": overlap,
        "stream": stream,
        "chunk_points": chunk_points,
        "codes": policy.describe(),
        "precision": precision,
        "rank": rank,
        "world_size": world,
        "files": done,
        "failures": failed,
        "points": points,
        "seconds": round(seconds, 3),
        "points_per_second": points / seconds if seconds > 0 else 0.0,
    }
    name = "predict_summary.json" if world == 1 else f"predict_summary.rank{rank}.json"
    write_summary(out_dir / name, summary)
    print(
        f"[predict] {len(done)} file(s) labelled, {len(failed)} failed; summary in {out_dir / name}"
    )
    return summary
