"""pcseg.inference.files (``pcseg predict``): LAS round trip keeping every original dimension
and the integer X/Y/Z records (in memory and streamed, LAS and LAZ), the auto threshold, and
the path of a user's file: each module of pcseg.inference visited once, in one order
(imports and calls). The command end to end is in tests/integration/test_predict.py."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from pcseg.benchmarks.predict import synthetic_outdoor, write_synthetic_las
from pcseg.cli.main import main
from pcseg.inference.files import predict_file


@pytest.mark.parametrize(
    "stream,suffix", [("never", ".las"), ("always", ".las"), ("always", ".laz")]
)
def test_las_round_trip_keeps_every_dimension_and_integer_records(tiny, tmp_path, stream, suffix):
    import laspy

    src = write_synthetic_las(tmp_path / "utm.las", 5000, seed=3)
    if suffix == ".laz":
        las = laspy.read(str(src))
        las.write(str(tmp_path / "utm.laz"))
        src = tmp_path / "utm.laz"
    r = predict_file(
        tiny, src, tmp_path / "out", voxel_budget=1500, stream=stream, chunk_points=1200
    )
    assert r["tiles"] > 1 and r["streamed"] == (stream == "always")
    assert r["output"].endswith(suffix)
    a, b = laspy.read(str(src)), laspy.read(r["output"])
    np.testing.assert_array_equal(b.header.offsets, a.header.offsets)
    np.testing.assert_array_equal(b.header.scales, a.header.scales)
    assert b.header.point_format.id == a.header.point_format.id
    for name in a.point_format.dimension_names:
        if name == "classification":
            continue
        np.testing.assert_array_equal(np.asarray(b[name]), np.asarray(a[name]), err_msg=name)
    for k in ("X", "Y", "Z"):
        assert np.asarray(b[k]).dtype == np.int32
        np.testing.assert_array_equal(np.asarray(b[k]), np.asarray(a[k]))
    pred = np.asarray(b.pred_class)
    assert len(pred) == len(a.points) and np.asarray(b.confidence).dtype == np.float32
    codes = np.array([2, 3, 5, 6])  # reverse of the map: class index -> ASPRS code
    np.testing.assert_array_equal(np.asarray(b.classification), codes[pred])
    assert abs(sum(r["class_shares"].values()) - 1) < 1e-9
    assert b.header.point_count == a.header.point_count
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_npy_streamed_keeps_columns_and_auto_threshold(tiny, tmp_path):
    d = synthetic_outdoor(5000, 4)
    v = np.zeros(
        5000, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("intensity", "u2"), ("tag", "i4")]
    )
    v["x"], v["y"], v["z"] = d["xyz"].T + 300_000
    v["intensity"], v["tag"] = d["intensity"], np.arange(5000)
    np.save(tmp_path / "p.npy", v)
    # auto: streamed when the file holds more than one chunk
    r = predict_file(tiny, tmp_path / "p.npy", tmp_path / "o", voxel_budget=1500, chunk_points=1500)
    assert r["streamed"] and r["tiles"] > 1
    small = predict_file(
        tiny, tmp_path / "p.npy", tmp_path / "o2", voxel_budget=1500, chunk_points=10_000
    )
    assert not small["streamed"]
    a, b = np.load(r["output"]), np.load(small["output"])
    assert a.dtype == b.dtype and a.dtype.names[:5] == v.dtype.names
    for k in v.dtype.names:
        np.testing.assert_array_equal(a[k], v[k])
    assert a["pred_class"].dtype == np.uint8 and a["pred_class"].max() < 4


# ----------------------------------------------------------------------------- the path
PACKAGE = Path(__file__).resolve().parents[2] / "pcseg"


#: the layers of pcseg.inference, top first: a module imports (and calls) only modules of
#: layers below its own; pcseg.io (the file formats) is below them all
LAYERS = [
    ["files", "images"],  # images: the 2D path, beside the point-file path
    ["memory", "streamed"],
    ["tiling", "las_codes"],
    ["predictor"],
]


RANK = {f"pcseg.inference.{m}": i for i, layer in enumerate(LAYERS) for m in layer}


IO_RANK = len(LAYERS)


def _rank(module: str) -> int | None:
    if module in RANK:
        return RANK[module]
    if module == "pcseg.io" or module.startswith("pcseg.io."):
        return IO_RANK
    return None


def _imports(path: Path) -> set[str]:
    """Every pcseg module ``path`` imports, at the top or inside a function (``from
    pcseg.x import name`` counts as pcseg.x.name when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pcseg"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pcseg"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                rel = Path(*sub.split("."))
                is_module = (PACKAGE.parent / rel).with_suffix(".py").is_file()
                found.add(sub if is_module else node.module)
    return found


def test_inference_modules_import_only_layers_below():
    mods = sorted(p.stem for p in (PACKAGE / "inference").glob("*.py") if p.stem != "__init__")
    assert mods == sorted(m for layer in LAYERS for m in layer)  # every module has a layer
    edges = set()
    for m in mods:
        me = f"pcseg.inference.{m}"
        for dep in _imports(PACKAGE / "inference" / f"{m}.py"):
            assert dep != "pcseg.inference", f"{me} imports the package facade"
            assert not dep.startswith(("pcseg.cli", "pcseg.workflows")), f"{me} imports {dep}"
            r = _rank(dep)
            if r is not None:
                assert r > RANK[me], f"{me} imports {dep}, which is not below it"
                edges.add((me, dep))
    # the layers are all used: the path goes files -> a path -> tiling -> predictor -> io
    assert ("pcseg.inference.files", "pcseg.inference.memory") in edges
    assert ("pcseg.inference.files", "pcseg.inference.streamed") in edges
    assert ("pcseg.inference.memory", "pcseg.inference.tiling") in edges
    assert ("pcseg.inference.streamed", "pcseg.inference.tiling") in edges
    assert ("pcseg.inference.tiling", "pcseg.inference.predictor") in edges
    # and the file formats never reach back up into inference
    for p in (PACKAGE / "io").glob("*.py"):
        assert not [d for d in _imports(p) if d.startswith("pcseg.inference")], p.name


def _trace_calls(run):
    """Run ``run()`` and return the stacks of pcseg.inference modules (outermost first,
    consecutive frames of one module merged) seen at every call into the package."""
    stacks: set[tuple[str, ...]] = set()

    def module_of(frame) -> str | None:
        name = frame.f_globals.get("__name__", "")
        return name if name.startswith("pcseg.inference.") else None

    def prof(frame, event, arg):
        if event != "call" or module_of(frame) is None:
            return
        mods: list[str] = []
        f = frame
        while f is not None:
            m = module_of(f)
            if m is not None and (not mods or mods[-1] != m):
                mods.append(m)
            f = f.f_back
        stacks.add(tuple(reversed(mods)))

    old = sys.getprofile()
    sys.setprofile(prof)
    try:
        run()
    finally:
        sys.setprofile(old)
    return stacks


@pytest.mark.parametrize("stream", ["never", "always"])
def test_a_users_file_passes_each_module_once_in_order(tiny, tmp_path, monkeypatch, stream):
    import pcseg.inference.files as files_mod

    src = write_synthetic_las(tmp_path / "in" / "scan.las", 3000, seed=7)
    monkeypatch.setattr(files_mod, "load_predictor", lambda *a, **k: tiny)
    argv = ["predict", "--checkpoint", str(tmp_path / "unused.pt"), str(src)]
    argv += ["--out", str(tmp_path / "out"), "--no-progress", "--voxel-budget", "1500"]
    argv += ["--chunk-points", "1000", "--stream", stream]
    rc: list[int] = []
    stacks = _trace_calls(lambda: rc.append(main(argv)))
    assert rc == [0] and (tmp_path / "out" / "scan.las").is_file()
    for s in stacks:  # strictly down the layers: no module twice, none above one below it
        ranks = [RANK[m] for m in s]
        assert ranks == sorted(set(ranks)), s
    path = "streamed" if stream == "always" else "memory"
    other = "memory" if stream == "always" else "streamed"
    visited = {m for s in stacks for m in s}
    assert visited == {f"pcseg.inference.{m}" for m in ("files", path, "tiling", "predictor")} | (
        {"pcseg.inference.las_codes"}
    )
    assert f"pcseg.inference.{other}" not in visited
    deepest = max(stacks, key=len)
    assert deepest == tuple(f"pcseg.inference.{m}" for m in ("files", path, "tiling", "predictor"))


def test_leftovers_of_a_killed_predict_are_skipped_and_cleaned(tiny, tmp_path, monkeypatch, capsys):
    import os

    from pcseg.inference import files as files_mod

    monkeypatch.setattr(files_mod, "load_predictor", lambda *a, **k: tiny)
    src = tmp_path / "in"
    write_synthetic_las(src / "a.las", 3000, seed=1)
    out = tmp_path / "out"
    stale = out / ".a.stream.ab12cd34"  # what a kill -9 of a streamed predict leaves
    stale.mkdir(parents=True)
    for i in range(3):
        (stale / f"{i:05d}.bin").write_bytes(np.zeros(16, np.float32).tobytes())
    (out / ".a.las.x1y2z3w4.las").write_bytes(b"half a file")
    fresh = out / ".b.las.q1w2e3r4.las"  # newer than the run: another run's, kept
    fresh.write_bytes(b"x")
    for p in (stale, out / ".a.las.x1y2z3w4.las"):
        os.utime(p, (1_000_000, 1_000_000))
    os.utime(fresh, (4_000_000_000, 4_000_000_000))
    assert files_mod.expand_inputs([out]) == []  # the chunks are no KITTI scans
    s = files_mod.predict_files("ckpt.pt", [src], out, voxel_budget=1500, progress=False)
    assert len(s["files"]) == 1 and not s["failures"]
    err = capsys.readouterr().err
    assert (
        f"removed 2 leftover temporary file(s) / folder(s) of an interrupted run from {out}" in err
    )
    assert ".a.stream.ab12cd34" in err and ".a.las.x1y2z3w4.las" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [fresh.name, "a.las", "predict_summary.json"]
    )
    assert files_mod.expand_inputs([out]) == [out / "a.las"]


def test_out_that_is_a_file_is_a_one_line_error(tiny, tmp_path, monkeypatch, capsys):
    from pcseg.inference import files as files_mod

    monkeypatch.setattr(files_mod, "load_predictor", lambda *a, **k: tiny)
    src = write_synthetic_las(tmp_path / "a.las", 500, seed=1)
    taken = tmp_path / "taken"
    taken.write_text("a file")
    argv = ["predict", str(src), "--checkpoint", "ckpt.pt", "--out", str(taken)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pcseg: error: --out {taken} is an existing file, not a folder"]


def test_files_lacking_a_trained_feature_are_refused_before_any_work(
    tiny, tmp_path, monkeypatch, capsys
):
    """A checkpoint trained on features [intensity, reflectance]: LAS files without an extra
    dimension 'reflectance' are a one-line error before anything is read whole or written;
    a file that has it passes."""
    import dataclasses

    from pcseg.inference import files as files_mod
    from pcseg.inference.predictor import PredictError

    spec = tiny.spec.model_copy(update={"features": ["intensity", "reflectance"]})
    pred = dataclasses.replace(tiny, spec=spec, checkpoint="ckpt.pt")
    a = write_synthetic_las(tmp_path / "in" / "a.las", 500, seed=1)
    b = write_synthetic_las(tmp_path / "in" / "b.las", 500, seed=2)
    rows = np.zeros(50, dtype=[(n, "f8") for n in ("x", "y", "z", "intensity", "reflectance")])
    good = tmp_path / "in" / "good.npy"
    np.save(good, rows)
    files_mod.check_feature_inputs(pred, [good])  # has every field: no error
    assert files_mod.first_point(tmp_path / "in" / "none.txt") is None  # known once read
    with pytest.raises(PredictError) as e:
        files_mod.check_feature_inputs(pred, [good, a, b])
    msg = str(e.value)
    assert msg.startswith("checkpoint ckpt.pt was trained on features ['intensity', 'reflectance']")
    assert f"{a}: no field 'reflectance'; the file has fields [" in msg and "'intensity'" in msg
    assert msg.endswith("(and 1 more file(s))") and "\n" not in msg
    # through the command: exit 2, one line, no output folder made
    monkeypatch.setattr(files_mod, "load_predictor", lambda *a_, **k: pred)
    out = tmp_path / "out"
    assert main(["predict", str(a), "--checkpoint", "ckpt.pt", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no field 'reflectance'" in err[0] and not out.exists()


# ----------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("stream", ["never", "always"])
def test_predicted_files_take_the_umask(tiny, tmp_path, monkeypatch, stream):
    """Issue 24 item 9 / issue 25 item 5: mkstemp + rename made predicted files 0600."""
    import os
    import stat

    from pcseg.inference import files as files_mod

    monkeypatch.setattr(files_mod, "load_predictor", lambda *a, **k: tiny)
    src = write_synthetic_las(tmp_path / "in" / "a.las", 2000, seed=2)
    modes = {}
    for mask in (0o022, 0o077, 0o002):
        out = tmp_path / f"out_{mask:03o}"
        old = os.umask(mask)
        try:
            files_mod.predict_files(
                "ckpt.pt", [src], out, voxel_budget=1500, progress=False, stream=stream
            )
        finally:
            os.umask(old)
        modes[mask] = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes[0o022] == {"a.las": 0o644, "predict_summary.json": 0o644}
    assert modes[0o077] == {"a.las": 0o600, "predict_summary.json": 0o600}
    assert modes[0o002] == {"a.las": 0o664, "predict_summary.json": 0o664}


def test_two_runs_into_one_out_keep_both_summaries(tiny, tmp_path, monkeypatch, capsys):
    """Issue 24 item 9 / issue 25 item 6: a second predict into one --out replaced the first
    run's predict_summary.json; now the newest entry per input file wins."""
    import json
    import re

    from pcseg.inference import files as files_mod

    monkeypatch.setattr(files_mod, "load_predictor", lambda *a, **k: tiny)
    a, b, c = (write_synthetic_las(tmp_path / "in" / f"{n}.las", 800, seed=i) for i, n in
               enumerate("abc"))  # fmt: skip
    bad = tmp_path / "in" / "d.las"
    bad.write_bytes(b"not a las file")
    out = tmp_path / "out"

    def run(ckpt, inputs):
        s = files_mod.predict_files(ckpt, inputs, out, voxel_budget=1500, progress=False)
        return s, json.loads((out / "predict_summary.json").read_text())

    first, disk1 = run("one.pt", [a, b])
    assert [Path(e["file"]).name for e in disk1["files"]] == ["a.las", "b.las"]
    assert [r["checkpoint"] for r in disk1["runs"]] == ["one.pt"]
    second, disk2 = run("two.pt", [b, c, bad])
    # the run's own summary (exit status, caller) is this run only
    assert [Path(e["file"]).name for e in second["files"]] == ["b.las", "c.las"]
    assert [Path(e["file"]).name for e in second["failures"]] == ["d.las"]
    got = {Path(e["file"]).name: (e["checkpoint"], e["run_time"]) for e in disk2["files"]}
    t1, t2 = disk2["runs"][0]["run_time"], disk2["runs"][1]["run_time"]
    assert got == {"a.las": ("one.pt", t1), "b.las": ("two.pt", t2), "c.las": ("two.pt", t2)}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t2) and t1 <= t2
    assert [(r["checkpoint"], r["labelled"], r["failed"]) for r in disk2["runs"]] == [
        ("one.pt", 2, 0),
        ("two.pt", 2, 1),
    ]
    assert [(Path(e["file"]).name, e["checkpoint"]) for e in disk2["failures"]] == [
        ("d.las", "two.pt")
    ]
    b_entry = next(e for e in disk2["files"] if e["file"] == str(b))
    assert b_entry == {**second["files"][0], **{k: b_entry[k] for k in files_mod.ENTRY_RUN_KEYS},
                       "input_path": str(b.resolve())}  # fmt: skip
    assert b_entry["classes"] == tiny.class_names
    # the broken file repaired: its failure is replaced by its entry
    write_synthetic_las(bad, 800, seed=9)
    _, disk3 = run("three.pt", [bad])
    assert [Path(e["file"]).name for e in disk3["files"]] == ["a.las", "b.las", "c.las", "d.las"]
    assert disk3["failures"] == [] and len(disk3["runs"]) == 3
    # an unreadable summary is kept aside, not lost
    (out / "predict_summary.json").write_text("{ half written")
    run("four.pt", [a])
    assert (out / "predict_summary.unreadable.json").read_text() == "{ half written"
    assert "predict_summary.json could not be read" in capsys.readouterr().err


def test_merge_summaries_rules():
    from pcseg.inference.files import merge_summaries

    def entry(file, output, **kw):
        return {"file": file, "output": output, "points": 1, **kw}

    # a summary written before runs were merged: one run, dated by the file's time
    files = [entry("/in/x/t.las", "/out/t.las"), entry("/in/u.las", "/out/u.las")]
    old = {"checkpoint": "old.pt", "classes": ["g"], "points": 2, "failures": [], "files": files}
    run = {"run_time": "2026-01-02T00:00:00Z", "checkpoint": "new.pt", "classes": ["g"],
           "colors": None, "points": 1, "files": [entry("/in/y/t.las", "/out/t.las")],
           "failures": [{"file": "/in/u.las", "error": "E"}]}  # fmt: skip
    m = merge_summaries(old, run, written="2026-01-01T00:00:00Z")
    assert [r["run_time"] for r in m["runs"]] == ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
    assert m["runs"][0]["checkpoint"] == "old.pt" and m["runs"][0]["labelled"] == 2
    assert "files" not in m["runs"][1] and m["runs"][1]["failed"] == 1
    # /in/x/t.las's output was rewritten by another input of the same stem: dropped;
    # /in/u.las failed now: its older output is still there, so its entry stays
    assert [(e["file"], e["checkpoint"]) for e in m["files"]] == [
        ("/in/u.las", "old.pt"),
        ("/in/y/t.las", "new.pt"),
    ]
    assert [(e["file"], e["run_time"]) for e in m["failures"]] == [
        ("/in/u.las", "2026-01-02T00:00:00Z")
    ]
    assert merge_summaries(None, run)["files"][0]["input_path"] == "/in/y/t.las"
    with pytest.raises(TypeError):
        merge_summaries({"files": [1], "failures": []}, run)


def _same_stems(root):
    """``a/t.las``, ``b/t.las``, ``t.las`` and ``t.ply`` under ``root`` (one stem, other
    folders and formats)."""
    from pcseg.io.points import read_points, write_points

    for i, rel in enumerate(["a/t.las", "b/t.las", "t.las"]):
        write_synthetic_las(root / rel, 800, seed=i)
    write_points(read_points(root / "t.las"), root / "t.ply", {}, fmt="ply")
    return root


def test_same_stem_inputs_are_predicted_side_by_side(tiny, tmp_path, monkeypatch):
    from pcseg.inference import files as files_mod

    monkeypatch.setattr(files_mod, "load_predictor", lambda *a, **k: tiny)
    src = _same_stems(tmp_path / "in")
    plan = files_mod.plan_outputs([src])
    assert [(f.relative_to(src).as_posix(), s.as_posix()) for f, s in plan] == [
        ("a/t.las", "a"),
        ("b/t.las", "b"),
        ("t.las", "."),
        ("t.ply", "."),
    ]
    out = tmp_path / "out"
    s = files_mod.predict_files("ckpt.pt", [src], out, voxel_budget=1500, progress=False)
    assert not s["failures"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a/t.las",
        "b/t.las",
        "predict_summary.json",
        "t.las",
        "t.ply",
    ]
    for r in s["files"]:  # each output is the labelled copy of its own input
        assert Path(r["output"]).relative_to(out) == Path(r["file"]).relative_to(src)


@pytest.mark.parametrize(
    "given, fmt, clash",
    [
        (["a/t.las", "b/t.las"], "same", "t.las"),  # given by name: both to OUT/t.las
        (["."], "las", "t.las"),  # t.las and t.ply both converted to OUT/t.las
    ],
)
def test_only_colliding_outputs_are_refused_naming_both(tiny, tmp_path, capsys, given, fmt, clash):
    src = _same_stems(tmp_path / "in")
    argv = ["predict", *[str(src / g) for g in given], "--checkpoint", "ckpt.pt"]
    assert main([*argv, "--format", fmt, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pcseg: error: ")
    first, second = (
        (src / "a/t.las", src / "b/t.las") if fmt == "same" else (src / "t.las", src / "t.ply")
    )
    assert f"{first} and {second} would both be written as {clash} in --out" in err[0]
    assert not (tmp_path / "out").exists()  # refused before anything is written
