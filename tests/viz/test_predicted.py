"""pcseg.viz.predicted (and its sources in pcseg.viz.data): a file written by `pcseg predict`
opened by the view data layer with the classes, colours and confidence of the run that wrote
it (issue 24 item 8); a LAS written directly in that layout without a summary; a predict
--out folder as scenes; files that are no predictions are one-line errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pcseg.benchmarks.predict import write_synthetic_las
from pcseg.cli.main import main
from pcseg.viz.colors import available_modes, mode_colors
from pcseg.viz.data import PredictedSource, load_view_data, open_source
from pcseg.viz.errors import ViewError
from pcseg.viz.palettes import generic_palette
from pcseg.viz.predicted import read_predicted_file, summary_classes

BUILDING = [10, 20, 30]


@pytest.fixture
def predicted(tiny, tmp_path, monkeypatch) -> dict:
    """tmp/out: a.las and b.las labelled by `pcseg predict` (tiny predictor, its class spec
    with a colour for building) and tmp/out_ply/a.ply (--format ply)."""
    from pcseg.inference import files as files_mod

    spec = tiny.spec.model_copy(update={"colors": {"building": BUILDING}})
    predictor = dataclasses.replace(tiny, spec=spec)
    monkeypatch.setattr(files_mod, "load_predictor", lambda *a, **k: predictor)
    srcs = [write_synthetic_las(tmp_path / "in" / f"{n}.las", 1500, seed=i) for i, n in
            enumerate("ab")]  # fmt: skip
    kw = {"voxel_budget": 1500, "progress": False}
    files_mod.predict_files("tiny.pt", srcs, tmp_path / "out", **kw)
    files_mod.predict_files("tiny.pt", srcs[:1], tmp_path / "out_ply", fmt="ply", **kw)
    return {
        "out": tmp_path / "out",
        "ply": tmp_path / "out_ply" / "a.ply",
        "names": tiny.class_names,
    }


def _expected_palette(names: list[str]) -> np.ndarray:
    """The palette by hand: building's colour from the class file, the others the generic
    colours of a dataset without a palette, chosen around it."""
    k = names.index("building")
    pal = np.zeros((len(names), 3), np.uint8)
    pal[k] = BUILDING
    rest = [i for i in range(len(names)) if i != k]
    pal[rest] = generic_palette(len(rest), avoid=pal[[k]])
    return pal


@pytest.mark.parametrize("which", ["las", "ply"])
def test_a_predicted_file_is_viewed_with_its_classes_and_confidence(predicted, which):
    import laspy

    path = predicted["out"] / "a.las" if which == "las" else predicted["ply"]
    src = laspy.read(str(predicted["out"] / "a.las"))  # the same points and predictions
    v = load_view_data(path)
    names = predicted["names"]
    assert v.name == path.name and v.class_names == tuple(names) and v.notes == []
    np.testing.assert_array_equal(v.pred, np.asarray(src.pred_class))
    np.testing.assert_array_equal(v.confidence, np.asarray(src.confidence))
    assert (v.semantic == -1).all() and v.num_points == 1500
    xyz = np.stack([np.asarray(src.x), np.asarray(src.y), np.asarray(src.z)], 1)
    np.testing.assert_allclose(v.coords, xyz - xyz.min(0), atol=1e-3)
    assert v.feat_kind == "intensity"
    np.testing.assert_array_equal(v.feats[:, 0], np.asarray(src.intensity, np.float32))
    assert available_modes(v) == ["rgb", "pred", "confidence"]
    np.testing.assert_array_equal(v.palette, _expected_palette(names))
    b = names.index("building")
    cols = mode_colors(v, "pred")
    assert (cols[v.pred == b] == BUILDING).all() and (v.pred == b).any()


def test_a_las_in_the_same_layout_without_a_summary(tmp_path, capsys):
    """Written directly with laspy: RGB (16 bit), pred_class and confidence extra dims."""
    import laspy

    rng = np.random.default_rng(4)
    n = 400
    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    las.add_extra_dim(laspy.ExtraBytesParams("pred_class", np.uint8))
    las.add_extra_dim(laspy.ExtraBytesParams("confidence", np.float32))
    las.header.scales, las.header.offsets = [0.01] * 3, [500_000.0, 4_000_000.0, 0.0]
    xyz = rng.uniform(0, 50, (n, 3)) + [500_000.0, 4_000_000.0, 0.0]
    las.x, las.y, las.z = xyz.T
    rgb = rng.integers(0, 65536, (n, 3))
    las.red, las.green, las.blue = rgb.T
    pred = rng.integers(0, 3, n)
    las.pred_class, las.confidence = pred, rng.uniform(0.3, 1.0, n).astype(np.float32)
    path = tmp_path / "scan.las"
    las.write(str(path))
    v = load_view_data(path)
    assert v.class_names == ("class 0", "class 1", "class 2")
    assert len(v.notes) == 1 and "no predict_summary.json entry" in v.notes[0]
    assert v.feat_kind == "rgb"
    np.testing.assert_allclose(v.feats, rgb / 65535.0, atol=1e-6)
    np.testing.assert_array_equal(v.pred, pred)
    # the command says so once, on stderr, as a warning line
    assert main(["view", str(path), "--list"]) == 0
    out = capsys.readouterr()
    assert "scan.las\t400 points\tmodes: rgb,pred,confidence" in out.out
    assert out.err.count("warning: ") == 1 and "class 0..2" in out.err


def test_a_predict_out_folder_is_a_source_of_its_files(predicted):
    src = open_source(predicted["out"])
    assert isinstance(src, PredictedSource) and src.scenes == ["a.las", "b.las"]
    assert src.load("b").name == "b.las" == src.load("b.las").name
    with pytest.raises(ViewError, match=r"'c' not found in .*out \(available: a.las, b.las\)"):
        src.load("c")
    found = summary_classes(predicted["out"])
    assert sorted(found) == ["a.las", "b.las"]
    assert found["a.las"].colors == {"building": BUILDING}


def test_summaries_of_one_run_before_merging_give_the_classes(tmp_path):
    """A summary written before runs were merged: the classes are its top-level ones."""
    (tmp_path / "predict_summary.json").write_text(
        json.dumps({"classes": ["x", "y"], "files": [{"file": "i/t.las", "output": "o/t.las"}]})
    )
    found = summary_classes(tmp_path)
    assert list(found) == ["t.las"] and found["t.las"].names == ("x", "y")
    assert found["t.las"].colors is None


def test_files_that_are_no_predictions_are_one_line_errors(predicted, tmp_path, capsys):
    raw = write_synthetic_las(tmp_path / "raw.las", 200, seed=1)
    with pytest.raises(ViewError, match=r"raw\.las: no 'pred_class' field"):
        read_predicted_file(raw)
    assert main(["view", str(raw), "--list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no 'pred_class' field" in err[0]
    summary = predicted["out"] / "predict_summary.json"
    s = json.loads(summary.read_text())
    for e in s["files"]:
        e["classes"] = ["only", "two"]
    summary.write_text(json.dumps(s))
    with pytest.raises(
        ViewError, match=r"a\.las: pred_class values in \[\d, \d\], .* lists 2 classes"
    ):
        load_view_data(predicted["out"] / "a.las")


@pytest.mark.timeout(200)
def test_a_predicted_file_renders_headless_and_never_opens_a_window(predicted, tmp_path):
    from helpers.viz import _count, _headless_env, _read_png, _run_tool

    from pcseg.viz.render import TITLE_HEIGHT

    out, w, h = tmp_path / "a.png", 200, 150
    las = predicted["out"] / "a.las"
    r = _run_tool(
        [las, "--render", out, "--width", w, "--height", h, "--view", "top", "--no-legend"],
        env=_headless_env(),
        timeout=150,
    )
    assert r.returncode == 0, r.stderr
    assert "modes rgb,pred,confidence" in r.stdout
    img = _read_png(out)
    assert img.shape == (TITLE_HEIGHT + h, 3 * w, 3)
    pred_tile = img[TITLE_HEIGHT:, w + 1 : 2 * w]
    assert _count(pred_tile, BUILDING) >= 50  # every point predicted building, its colour
    # without DISPLAY the interactive viewer is a one-line exit 2, no window, no hang
    r = _run_tool([predicted["out"]], env=_headless_env(), timeout=50)
    assert r.returncode == 2 and "DISPLAY" in r.stderr and "--render" in r.stderr


def test_kitti_scans_are_left_out_with_the_reason(predicted, tmp_path):
    """pcseg predict writes a KITTI .bin's classes to a .label beside it: not a view source."""
    from pcseg.viz.predicted import predicted_files

    scan = predicted["out"] / "s.bin"
    np.zeros((10, 4), np.float32).tofile(scan)
    assert [p.name for p in predicted_files(predicted["out"])] == ["a.las", "b.las"]
    (tmp_path / "k").mkdir()
    np.zeros((10, 4), np.float32).tofile(tmp_path / "k" / "s.bin")
    assert predicted_files(tmp_path / "k") == []
    with pytest.raises(ViewError, match=r"s\.bin: a KITTI \.bin scan: .* --format ply"):
        load_view_data(scan)
