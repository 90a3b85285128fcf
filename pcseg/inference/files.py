"""The top of ``pcseg predict``: the files of the inputs, one predictor, each file sent down
the in-memory path (:mod:`pcseg.inference.memory`) or the out-of-core one
(:mod:`pcseg.inference.streamed`), a summary written at the end.

Distributed: under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set) rank r predicts files
r, r + W, ...; each rank writes its own files and ``predict_summary.rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pcseg.inference.las_codes import EVERY_POINT, CodePolicy
from pcseg.inference.memory import predict_file_in_memory
from pcseg.inference.predictor import PredictError, Predictor, load_predictor
from pcseg.inference.streamed import DEFAULT_CHUNK_POINTS, predict_file_streamed, stream_supported
from pcseg.inference.tiling import DEFAULT_VOXEL_BUDGET
from pcseg.io.atomic import atomic_write_json, remove_stale_temporaries
from pcseg.io.point_file import list_point_files
from pcseg.io.points import OUTPUT_FORMATS, output_names
from pcseg.io.stream import stream_count

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


def report_removed(removed: Sequence[Path], out_dir: Path) -> None:
    """Say on stderr which leftovers of an interrupted run were removed from ``out_dir``."""
    if removed:
        names = ", ".join(p.name for p in removed[:5]) + (" ..." if len(removed) > 5 else "")
        print(
            f"note: removed {len(removed)} leftover temporary file(s) / folder(s) of an "
            f"interrupted run from {out_dir}: {names}",
            file=sys.stderr,
        )


#: the figures of one run that :func:`merge_summaries` keeps in ``runs``
RUN_KEYS = ("checkpoint", "classes", "voxel_size", "codes", "points", "seconds")


def merge_summaries(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` of this run plus what the summary already at ``path`` (an earlier
    predict into the same ``--out``) says of files this run did not predict again (their
    output still there; failures too): ``files`` / ``failures`` cover every run, each entry
    with its run's ``checkpoint``, ``points`` sums every file, and ``runs`` lists each run's
    figures (:data:`RUN_KEYS`, file and failure counts), the earliest first. An unreadable
    earlier summary is replaced, with a note on stderr."""
    this = {"files": len(summary["files"]), "failures": len(summary["failures"])}
    this.update({k: summary[k] for k in RUN_KEYS})
    for entry in summary["files"] + summary["failures"]:
        entry.setdefault("checkpoint", summary["checkpoint"])
    before: dict[str, Any] = {}
    if path.is_file():
        try:
            before = json.loads(path.read_text())
            runs = list(before.get("runs") or [{k: before.get(k) for k in RUN_KEYS}])
        except (OSError, ValueError, AttributeError) as e:
            print(f"note: {path} of an earlier run is unreadable ({e}); replaced", file=sys.stderr)
            before, runs = {}, []
    else:
        runs = []
    redone = {e["file"] for e in summary["files"] + summary["failures"]}
    kept = [
        {"checkpoint": before.get("checkpoint"), **e}
        for e in before.get("files", [])
        if e.get("file") not in redone and Path(str(e.get("output"))).is_file()
    ]
    lost = [
        {"checkpoint": before.get("checkpoint"), **e}
        for e in before.get("failures", [])
        if e.get("file") not in redone
    ]
    merged = dict(summary)
    merged["files"] = kept + summary["files"]
    merged["failures"] = lost + summary["failures"]
    merged["points"] = sum(int(e.get("points", 0)) for e in merged["files"])
    merged["runs"] = [*runs, this]
    return merged


def rank_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment (0, 1 without it)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


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
) -> dict[str, Any]:
    """``pcseg predict``: label every file of ``inputs`` into ``out``; a file that fails is
    reported (file + error) and the others go on. ``policy``: which points' LAS codes are
    replaced (``--keep-codes``, ``--only-unclassified``). Each file's line names its
    units; its notes (another CRS / unit than the training files, features far outside the
    training range) are printed as warnings. Returns this run's summary; it is written to
    ``OUT/predict_summary.json`` (``.rank<r>.json`` under torchrun) together with what an
    earlier run into ``OUT`` labelled (:func:`merge_summaries`)."""
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
    predictor = load_predictor(checkpoint, classes, device)
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
        "checkpoint": str(checkpoint),
        "classes": predictor.class_names,
        "voxel_size": predictor.voxel_size,
        "voxel_budget": voxel_budget,
        "overlap_m": overlap,
        "stream": stream,
        "chunk_points": chunk_points,
        "codes": policy.describe(),
        "rank": rank,
        "world_size": world,
        "files": done,
        "failures": failed,
        "points": points,
        "seconds": round(seconds, 3),
        "points_per_second": points / seconds if seconds > 0 else 0.0,
    }
    name = "predict_summary.json" if world == 1 else f"predict_summary.rank{rank}.json"
    atomic_write_json(out_dir / name, merge_summaries(out_dir / name, summary))
    print(
        f"[predict] {len(done)} file(s) labelled, {len(failed)} failed; summary in {out_dir / name}"
    )
    return summary
