"""pcseg prepare custom: CLASSES.yaml checks, partial labels as the spec ``given``, the origin
shift, unlabelled scans, and every bad input named by file and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from helpers.classes import ASPRS

from pcseg.benchmarks.predict import write_synthetic_las
from pcseg.cli.main import main
from pcseg.data import processed
from pcseg.io.point_file import PointFileError
from pcseg.readers.custom import (
    ClassesError,
    CustomReader,
    classes_from_dict,
    load_classes,
    prepare_custom,
)


def _classes(tmp_path, **over):
    d = {**ASPRS, **over}
    path = tmp_path / "classes.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_classes_yaml_errors_name_file_and_key(tmp_path):
    for bad, key in [
        ({"colour": {}}, "colour"),
        ({"map": {2: "roof"}}, "map"),
        ({"names": ["a", "a"]}, "names"),
        ({"voxel_size": -1}, "voxel_size"),
        ({"features": ["intensity", "intensity"]}, "features"),
        ({"units": "yard"}, "units"),
    ]:
        path = _classes(tmp_path, **bad)
        with pytest.raises(ClassesError) as e:
            load_classes(path)
        assert str(path) in str(e.value) and key in str(e.value), str(e.value)
    spec = load_classes(_classes(tmp_path))
    assert list(spec.reverse_map()) == [2, 3, 5, 6]


@pytest.mark.parametrize(
    "name",
    [
        "classes_asprs_las.yaml",
        "classes_ply_label.yaml",
        "classes_ground_nonground.yaml",
        "classes_asprs_2_6.yaml",
    ],
)
def test_shipped_class_files_load(name):
    from helpers.paths import REPO

    spec = load_classes(REPO / "configs" / "custom" / name)
    assert spec.label_field and spec.names


def test_partial_labels_are_exactly_the_given_weak_labels(tmp_path):
    import laspy

    raw = tmp_path / "raw"
    write_synthetic_las(raw / "tile_a.las", 3000, seed=0, label_fraction=0.05)
    write_synthetic_las(raw / "sub" / "tile_b.las", 3000, seed=1, label_fraction=0.05)
    s = prepare_custom(raw, _classes(tmp_path), tmp_path / "proc")
    assert s["failed"] == 0 and s["scenes"] == 2
    meta = processed.read_meta(tmp_path / "proc")
    assert meta["dataset"] == "custom" and meta["label_specs"] == ["given"]
    assert meta["classes"]["names"] == ASPRS["names"]
    for sid, f in [("tile_a", raw / "tile_a.las"), ("sub__tile_b", raw / "sub" / "tile_b.las")]:
        las = laspy.read(str(f))
        want = np.flatnonzero(np.isin(np.asarray(las.classification), [2, 3, 5, 6]))
        got = processed.read_labels(tmp_path / "proc", "given", sid)
        np.testing.assert_array_equal(got, want)
        scene = processed.read_scene(tmp_path / "proc", sid)
        origin = np.asarray(scene.extra["origin"])
        assert abs(origin[0] - 2_445_000) < 1000
        xyz = np.column_stack([las.x, las.y, las.z])
        np.testing.assert_allclose(scene.coords, (xyz - origin).astype(np.float32), atol=0)
        assert np.abs(scene.coords).max() < 200  # local frame: float32 keeps millimetres


def test_sampled_spec_and_splits(tmp_path):
    raw = tmp_path / "raw"
    write_synthetic_las(raw / "train" / "a.las", 3000, seed=0)
    write_synthetic_las(raw / "val" / "b.las", 3000, seed=1)
    path = _classes(tmp_path, splits={"train": "train/*", "val": "val/*"})
    s = prepare_custom(raw, path, tmp_path / "proc", labels=["1%"])
    assert s["splits"] == {"train": 1, "val": 1}
    assert 0 < s["label_specs"]["1%"]["labelled"] < 100


def test_unlabelled_files_prepare(tmp_path):
    from plyfile import PlyData, PlyElement

    v = np.zeros(
        500,
        dtype=[
            ("x", "f4"),
            ("y", "f4"),
            ("z", "f4"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
        ],
    )
    v["x"] = np.random.default_rng(0).random(500) * 5
    (tmp_path / "raw").mkdir()
    PlyData([PlyElement.describe(v, "vertex")]).write(str(tmp_path / "raw" / "room.ply"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"names": ["a", "b"], "features": ["rgb"], "voxel_size": 0.1}))
    s = prepare_custom(tmp_path / "raw", path, tmp_path / "proc")
    assert s["scenes"] == 1 and s["labelled_points"] == 0 and s["label_specs"] == {}
    sc = processed.read_scene(tmp_path / "proc", "room")
    assert sc.feats.shape == (500, 3) and (sc.semantic == -1).all()


def _reader_error(tmp_path, raw_file, **over):
    reader = CustomReader(classes_from_dict({**ASPRS, **over}), "classes.yaml")
    with pytest.raises(PointFileError) as e:
        reader.read_scene(raw_file.parent, raw_file.stem)
    return str(e.value)


def test_bad_inputs_name_file_and_field(tmp_path):
    raw = tmp_path / "raw"
    f = write_synthetic_las(raw / "t.las", 2000, seed=0)
    # a field named in CLASSES.yaml missing from the file (the fields it has are listed)
    msg = _reader_error(tmp_path, f, label_field="label", map=None, ignore=[])
    assert "t.las" in msg and "'label'" in msg and "classification" in msg
    msg = _reader_error(tmp_path, f, features=["reflectance"])
    assert "t.las" in msg and "'reflectance'" in msg and "intensity" in msg
    # label values not in map and not in ignore
    msg = _reader_error(tmp_path, f, map={2: "ground", 3: "low_vegetation"})
    assert "t.las" in msg and "'classification'" in msg and "5 (" in msg and "6 (" in msg
    # coordinates too far apart for the voxel key range at the chosen voxel size
    msg = _reader_error(tmp_path, f, voxel_size=0.001)
    assert "t.las" in msg and "spans" in msg and "allows 16.38 m" in msg


def test_nan_coordinates_named(tmp_path):
    arr = np.zeros(10, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")])
    arr["y"][3] = np.nan
    (tmp_path / "raw").mkdir()
    np.save(tmp_path / "raw" / "n.npy", arr)
    msg = _reader_error(
        tmp_path, tmp_path / "raw" / "n.npy", label_field=None, map=None, ignore=[], features=[]
    )
    assert "n.npy" in msg and "'y'" in msg and "NaN" in msg


def test_one_bad_file_does_not_stop_the_others_and_empty_class_warns(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_synthetic_las(raw / "good.las", 3000, seed=0)
    (raw / "empty.ply").write_bytes(b"")
    path = _classes(tmp_path, names=[*ASPRS["names"], "water"], map={**ASPRS["map"], 9: "water"})
    s = prepare_custom(raw, path, tmp_path / "proc")
    assert s["scenes"] == 1 and s["failed"] == 1 and s["empty_classes"] == ["water"]
    err = capsys.readouterr().err
    assert err.count("have no labelled point") == 1 and "['water']" in err
    (fail,) = s["failures"]
    assert fail["scene"] == "empty" and "empty.ply" in fail["error"]
    assert not processed.scene_npz_path(tmp_path / "proc", "empty").exists()


def test_cli_prepare_custom(tmp_path):
    raw = tmp_path / "raw"
    write_synthetic_las(raw / "a.las", 2000, seed=0)
    rc = main(
        [
            "prepare",
            "custom",
            "--raw",
            str(raw),
            "--classes",
            str(_classes(tmp_path)),
            "--out",
            str(tmp_path / "proc"),
            "--labels",
            "given",
            "1pt",
        ]
    )
    assert rc == 0
    summary = json.loads((tmp_path / "proc" / "summary.json").read_text())
    assert set(summary["label_specs"]) == {"given", "1pt"}
    assert (
        main(
            [
                "prepare",
                "custom",
                "--raw",
                str(raw),
                "--out",
                str(tmp_path / "p2"),
                "--classes",
                str(tmp_path / "missing.yaml"),
            ]
        )
        == 2
    )


def test_training_at_another_voxel_size_than_the_class_spec_warns(tmp_path):
    import warnings

    from pcseg.config import config_from_dict
    from pcseg.engine.data import build_dataset

    raw = tmp_path / "raw"
    write_synthetic_las(raw / "a.las", 2000, seed=0, label_fraction=0.05)
    prepare_custom(raw, _classes(tmp_path), tmp_path / "proc")  # voxel_size 0.5

    def cfg(size):
        data = {"dataset": "custom", "root": str(tmp_path / "proc"), "label_spec": "given"}
        return config_from_dict({"data": {**data, "voxel_size": size}, "train": {"iterations": 1}})

    with pytest.warns(UserWarning, match=r"data.voxel_size is 0.25 m .*voxel_size 0.5 m"):
        build_dataset(cfg(0.25), "train", "train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dataset(cfg(0.5), "train", "train")


def test_nonfinite_drop_leaves_out_exactly_those_points(tmp_path, capsys):
    # a labelled NPY whose rows 3 and 7 have NaN / inf coordinates
    arr = np.zeros(12, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("label", "i4")])
    arr["x"] = np.arange(12, dtype=float)
    arr["label"] = np.arange(12) % 2
    arr["y"][3] = np.nan
    arr["z"][7] = np.inf
    raw = tmp_path / "raw"
    raw.mkdir()
    np.save(raw / "n.npy", arr)
    classes = tmp_path / "c.yaml"
    spec = {"names": ["a", "b"], "label_field": "label", "map": {0: "a", 1: "b"}}
    classes.write_text(yaml.safe_dump({**spec, "features": [], "voxel_size": 0.5}))
    args = ["prepare", "custom", "--raw", str(raw), "--classes", str(classes)]
    # refuse (the default): the scene fails, named; nothing prepared: exit 2
    assert main([*args, "--out", str(tmp_path / "p_refuse")]) == 2
    cap = capsys.readouterr()
    report = cap.out + cap.err
    assert "n.npy (field(s) ['y', 'z']): 2 of 12 points" in report
    assert "first at point index 3, 7" in report and "--nonfinite drop" in report
    # drop: the 10 finite points, in file order, with their own labels
    assert main([*args, "--out", str(tmp_path / "p"), "--nonfinite", "drop"]) == 0
    scene = processed.read_scene(tmp_path / "p", "n")
    keep = np.setdiff1d(np.arange(12), [3, 7])
    origin = np.asarray(scene.extra["origin"])
    np.testing.assert_allclose(scene.coords[:, 0] + origin[0], arr["x"][keep])
    np.testing.assert_array_equal(scene.semantic, arr["label"][keep])
    assert scene.extra["dropped_nonfinite"] == 2


def test_one_classes_parser_for_prepare_and_annotate(tmp_path):
    from pcseg.annotate.state import AnnotationError
    from pcseg.annotate.state import load_classes as annotate_classes
    from pcseg.readers.custom import load_class_names

    path = _classes(tmp_path, colors={"building": [220, 80, 60]})
    spec, names, cl = load_classes(path), load_class_names(path), annotate_classes(path)
    assert spec.names == names.names == cl.names == ASPRS["names"]
    assert spec.colors == names.colors == {"building": [220, 80, 60]}
    assert cl.colors[3].tolist() == [220, 80, 60]
    # a names-only file is a class list for annotate but not a prepare spec (no voxel_size)
    only = tmp_path / "names.yaml"
    only.write_text("names: [a, b]\n")
    assert annotate_classes(only).names == ["a", "b"]
    with pytest.raises(ClassesError, match=r"names\.yaml: key 'voxel_size': Field required"):
        load_classes(only)
    # the same check, the same message, on both sides
    bad = _classes(tmp_path, colors={"roof": [1, 2, 3]})
    for load, err in ((load_classes, ClassesError), (annotate_classes, AnnotationError)):
        with pytest.raises(err, match=r"classes\.yaml: colors for unknown classes \['roof'\]"):
            load(bad)


FOOT_WKT = (
    'PROJCS["NAD83 / Ohio North (ft)",GEOGCS["NAD83",DATUM["D",SPHEROID["GRS 1980",6378137,'
    '298.257222101]],UNIT["degree",0.0174532925199433]],UNIT["foot",0.3048],'
    'AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
)


def airborne_las(path, n=3000, seed=0, foot=True, intensity_max=None, codes=None, side=40.0):
    """A LAS 1.2 point format 3 tile of synthetic_outdoor (``side`` metres a side) with
    return numbers and RGB; in international feet with a WKT VLR (``foot``) or in metres
    without a CRS; ``intensity_max``: intensities scaled to this maximum; ``codes``:
    {ASPRS code: share of points} overwritten at random."""
    import laspy
    from laspy.vlrs.known import WktCoordinateSystemVlr

    from pcseg.benchmarks.predict import synthetic_outdoor

    d = synthetic_outdoor(n, seed, side=side)
    rng = np.random.default_rng([seed, 7])
    unit = 0.3048 if foot else 1.0
    h = laspy.LasHeader(point_format=3, version="1.2")
    h.scales = np.array([0.01, 0.01, 0.01])
    h.offsets = np.array([1_500_000.0, 600_000.0, 0.0])
    if foot:
        h.vlrs.append(WktCoordinateSystemVlr(FOOT_WKT))
    las = laspy.LasData(h)
    xyz = d["xyz"] / unit + h.offsets + np.array([0, 0, 800.0])
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    cls = d["classification"].copy()
    for code, share in (codes or {}).items():
        cls[rng.random(n) < share] = code
    las.classification = cls
    inten = d["intensity"].astype(np.float64)
    if intensity_max is not None:
        inten = np.round(inten * intensity_max / inten.max())
    las.intensity = inten.astype(np.uint16)
    las.number_of_returns = rng.integers(1, 4, n).astype(np.uint8)
    las.return_number = np.minimum(rng.integers(1, 4, n), las.number_of_returns).astype(np.uint8)
    for c in ("red", "green", "blue"):
        las[c] = rng.integers(0, 256, n).astype(np.uint16) * 256
    path.parent.mkdir(parents=True, exist_ok=True)
    las.write(str(path))
    return path, d


def test_feet_converted_to_metres_and_sparse_voxels_warn(tmp_path, capsys):
    import laspy
    from scipy.spatial.distance import cdist

    raw = tmp_path / "raw"
    path, _ = airborne_las(raw / "ft.las", 1500, side=40.0)
    s = prepare_custom(raw, _classes(tmp_path, ignore=[0, 1], voxel_size=0.1), tmp_path / "p")
    cap = capsys.readouterr()
    err = cap.err
    assert s["failed"] == 0
    assert "x/y foot (0.3048 m), z foot (0.3048 m), from the LAS WKT" in err
    assert "NAD83 / Ohio North (ft)" in err
    scene = processed.read_scene(tmp_path / "p", "ft")
    las = laspy.read(str(path))
    xyz_m = np.column_stack([las.x, las.y, las.z]) * 0.3048
    origin = np.asarray(scene.extra["origin"])
    np.testing.assert_allclose(scene.coords, (xyz_m - origin).astype(np.float32), atol=0)
    assert abs(np.ptp(scene.coords[:, 0]) - 40.0) < 0.5  # metres, not feet
    assert scene.extra["units"]["horizontal"] == 0.3048
    meta = processed.read_meta(tmp_path / "p")
    assert meta["inputs"]["units"][0]["crs"] == "NAD83 / Ohio North (ft)"
    # about 1 point per m^2: at 0.1 m most voxels are alone; the spacing is reported
    d = cdist(xyz_m, xyz_m)
    np.fill_diagonal(d, np.inf)
    want = float(np.median(d.min(axis=1)))
    dens = s["voxel_density"]
    assert abs(dens["median_spacing_m"] - want) < 1e-9
    assert dens["isolated_voxel_share"] > 0.9
    assert len(s["warnings"]) == 1 and s["warnings"][0].startswith(f"ft: {path}: voxel_size 0.1")
    assert f"median point spacing {want:.3g} m" in s["warnings"][0]
    assert "of its voxels have no neighbour in a 3x3x3 kernel" in s["warnings"][0]
    assert f"warning (ft): {path}: voxel_size 0.1 m: " in cap.out
    s2 = prepare_custom(raw, _classes(tmp_path, ignore=[0, 1], voxel_size=2.0), tmp_path / "p2")
    assert s2["warnings"] == [] and s2["voxel_density"]["isolated_voxel_share"] < 0.5


def test_units_key_for_a_file_without_crs(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    v = np.zeros(200, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("label", "i4")])
    v["x"], v["y"], v["z"] = (rng.random((3, 200)) * 100).round(3)
    np.save(raw / "a.npy", v)
    spec = {"names": ["a"], "label_field": "label", "voxel_size": 1.0, "units": "us_survey_foot"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert prepare_custom(raw, path, tmp_path / "p")["failed"] == 0
    scene = processed.read_scene(tmp_path / "p", "a")
    xyz_m = np.column_stack([v["x"], v["y"], v["z"]]) * (1200 / 3937)
    origin = np.asarray(scene.extra["origin"])
    np.testing.assert_allclose(scene.coords, (xyz_m - origin).astype(np.float32), atol=0)
    assert scene.extra["units"]["source"] == "CLASSES.yaml units"


def test_one_normalisation_for_every_file(tmp_path):
    """A tile with intensity up to ~2,687 and one up to 255: the same raw value gets the same
    feature in both (per-file scaling gave the first ~1/10 of it), fitted on the 1st / 99th
    percentiles of both files' intensities."""
    import laspy

    raw = tmp_path / "raw"
    airborne_las(raw / "hi.las", 2000, seed=0, foot=False, intensity_max=2687)
    airborne_las(raw / "lo.las", 2000, seed=1, foot=False, intensity_max=255)
    hi_las = laspy.read(str(raw / "hi.las"))  # a few dark points: raw values both tiles have
    hi_las.intensity[:40] = np.asarray(laspy.read(str(raw / "lo.las")).intensity[:40])
    hi_las.write(str(raw / "hi.las"))
    s = prepare_custom(raw, _classes(tmp_path, ignore=[0, 1]), tmp_path / "p")
    assert s["failed"] == 0
    vals = {n: np.asarray(laspy.read(str(raw / f"{n}.las")).intensity) for n in ("hi", "lo")}
    assert vals["hi"].max() == 2687 and vals["lo"].max() == 255
    lo, hi = np.percentile(np.concatenate(list(vals.values())).astype(np.float64), [1, 99])
    norm = processed.read_meta(tmp_path / "p")["inputs"]["normalisation"]
    assert norm["channels"] == ["intensity"]
    np.testing.assert_allclose([norm["lo"][0], norm["hi"][0]], [lo, hi])
    feats = {n: processed.read_scene(tmp_path / "p", n).feats[:, 0] for n in vals}
    for n in vals:
        np.testing.assert_allclose(feats[n], ((vals[n] - lo) / (hi - lo)).astype(np.float32))
    common = np.intersect1d(vals["hi"], vals["lo"])
    assert len(common) >= 10
    for c in common:
        a = feats["hi"][vals["hi"] == c][0]
        b = feats["lo"][vals["lo"] == c][0]
        assert a == b


def test_several_features_channels_and_height_above_ground(tmp_path):
    import laspy

    raw = tmp_path / "raw"
    path, d = airborne_las(raw / "t.las", 3000, seed=2, foot=True)
    feats = ["intensity", "return_number", "number_of_returns", "rgb", "height_above_ground"]
    s = prepare_custom(raw, _classes(tmp_path, features=feats), tmp_path / "p")
    assert s["failed"] == 0
    info = processed.read_scene_info(tmp_path / "p", "t")
    assert info["feat_kind"] == "features" and info["feat_channels"] == 7
    meta = processed.read_meta(tmp_path / "p")
    assert meta["inputs"]["normalisation"]["channels"] == [
        "intensity", "return_number", "number_of_returns", "red", "green", "blue",
        "height_above_ground",
    ]  # fmt: skip
    assert meta["inputs"]["ground"] == {"ground class 2": 1}
    scene = processed.read_scene(tmp_path / "p", "t")
    las = laspy.read(str(path))
    norm = meta["inputs"]["normalisation"]
    rn = np.asarray(las.return_number, dtype=np.float64)
    want = (rn - norm["lo"][1]) / (norm["hi"][1] - norm["lo"][1])
    np.testing.assert_allclose(scene.feats[:, 1], want.astype(np.float32))
    np.testing.assert_allclose(scene.feats[:, 3], np.asarray(las.red) / 65535, atol=1e-6)
    # height above ground against the generator's terrain (z without objects, metres)
    terrain = 0.02 * d["xyz"][:, 0] + 0.5 * np.sin(d["xyz"][:, 1] / 40.0)
    hag = scene.feats[:, 6] * (norm["hi"][6] - norm["lo"][6]) + norm["lo"][6]
    bld = d["classification"] == 6
    np.testing.assert_allclose(hag[bld], (d["xyz"][:, 2] - terrain)[bld], atol=0.2)
    assert np.abs(hag[d["classification"] == 2]).max() < 0.2


def test_a_predict_folder_with_leftovers_lists_only_its_point_files(tmp_path):
    from pcseg.readers.custom import list_files

    raw = tmp_path / "raw"
    write_synthetic_las(raw / "a.las", 500, seed=0)
    left = raw / ".a.stream.ab12cd34"  # a killed streamed predict's chunks
    left.mkdir()
    (left / "00000.bin").write_bytes(np.zeros(16, np.float32).tobytes())
    (raw / ".a.las.x1y2z3w4.las").write_bytes(b"half")
    (raw / "b.las.tmp").write_bytes(b"half")
    assert list_files(raw) == {"a": raw / "a.las"}


def test_spec_fingerprint_is_what_makes_a_scene(tmp_path):
    from pcseg.readers.custom import classes_fingerprint, spec_fingerprint

    spec = load_classes(_classes(tmp_path))
    by_index = load_classes(_classes(tmp_path, map={2: 0, 3: 1, 5: 2, 6: 3}))
    fp = classes_fingerprint(spec)
    assert fp["map"] == {
        "2": "ground",
        "3": "low_vegetation",
        "5": "high_vegetation",
        "6": "building",
    }
    assert classes_fingerprint(by_index) == fp  # a class index or its name: the same map
    colours = load_classes(_classes(tmp_path, colors={"ground": [1, 2, 3]}))
    assert classes_fingerprint(colours) == fp  # a view, not the data
    full = spec_fingerprint(spec)
    assert full["normalisation"]["percentiles"] == [1.0, 99.0]
    assert full["normalisation"]["fit_split"] == "train"
    rgb = spec_fingerprint(load_classes(_classes(tmp_path, features=["rgb"])))
    assert rgb["normalisation"]["fixed"] == {c: [0.0, 1.0] for c in ("red", "green", "blue")}


def test_a_rerun_adding_files_keeps_the_fitted_inputs(tmp_path, capsys):
    """A file added to the raw folder is normalised with the inputs the first run fitted
    (so every scene of the folder is normalised alike), not with a new fit."""
    import laspy

    raw, out, classes = tmp_path / "raw", tmp_path / "proc", _classes(tmp_path)
    write_synthetic_las(raw / "a.las", 3000, seed=0)
    prepare_custom(raw, classes, out)
    fitted = processed.read_meta(out)["inputs"]
    a_before = processed.read_scene(out, "a").feats
    write_synthetic_las(raw / "b.las", 3000, seed=5)
    capsys.readouterr()
    s = prepare_custom(raw, classes, out)
    assert "inputs fitted by an earlier run" in capsys.readouterr().err
    assert (s["processed"], s["skipped"]) == (1, 1)
    assert processed.read_meta(out)["inputs"] == fitted
    np.testing.assert_array_equal(processed.read_scene(out, "a").feats, a_before)
    lo = fitted["normalisation"]["lo"][0]
    hi = fitted["normalisation"]["hi"][0]
    inten = np.asarray(laspy.read(str(raw / "b.las")).intensity, dtype=np.float64)
    np.testing.assert_allclose(
        processed.read_scene(out, "b").feats[:, 0], ((inten - lo) / (hi - lo)), rtol=1e-6
    )
    # --force fits them anew on both files
    prepare_custom(raw, classes, out, force=True)
    both = np.concatenate([inten, laspy.read(str(raw / "a.las")).intensity])
    assert processed.read_meta(out)["inputs"]["normalisation"]["hi"][0] == pytest.approx(
        float(np.percentile(both, 99)), rel=1e-9
    )


def _las_with_codes(path, codes: np.ndarray, seed: int = 0) -> None:
    """A small LAS 1.2 tile whose points carry ``codes`` (heights by code, so the tile looks
    like ground, vegetation and roofs), intensity by code."""
    import laspy

    rng = np.random.default_rng(seed)
    n = len(codes)
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales, header.offsets = [0.01, 0.01, 0.01], [500000.0, 4000000.0, 0.0]
    las = laspy.LasData(header)
    las.x = 500000.0 + rng.random(n) * 40
    las.y = 4000000.0 + rng.random(n) * 40
    las.z = np.asarray(codes, dtype=np.float64) * 1.5 + rng.random(n) * 0.2
    las.classification = np.asarray(codes, dtype=np.uint8)
    las.intensity = (np.asarray(codes, dtype=np.int64) * 300 + rng.integers(0, 100, n)).astype(
        np.uint16
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    las.write(str(path))


@pytest.mark.parametrize(
    "name, codes, labelled",
    [
        # a ground-filter tile: codes 1 and 2 (+ noise, water, overlap left unlabelled)
        ("classes_ground_nonground", [1, 2, 7, 9, 12], {1: "non_ground", 2: "ground"}),
        # a vendor-classified tile: the ASPRS 2-6 set (+ unclassified, noise, water)
        (
            "classes_asprs_2_6",
            [1, 2, 3, 4, 5, 6, 7, 9],
            {
                2: "ground",
                3: "low_vegetation",
                4: "medium_vegetation",
                5: "high_vegetation",
                6: "building",
            },
        ),
    ],
)
def test_example_class_files_label_the_codes_they_are_for(tmp_path, name, codes, labelled):
    """classes_asprs_las ignores code 1, so a tile classified 1/2 got ground labels only; the
    class file for that case labels both, the 2-6 file all five, each point exactly by its code."""
    from helpers.paths import REPO

    rng = np.random.default_rng(0)
    code = rng.choice(np.asarray(codes), 3000)
    _las_with_codes(tmp_path / "raw" / "t.las", code)
    path = REPO / "configs" / "custom" / f"{name}.yaml"
    spec = load_classes(path)
    prepare_custom(tmp_path / "raw", path, tmp_path / "proc")
    sem = processed.read_scene(tmp_path / "proc", "t").semantic
    idx, cls = processed.read_label_classes(tmp_path / "proc", "given", "t", sem)
    want_idx = np.flatnonzero(np.isin(code, list(labelled)))
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(cls, [spec.names.index(labelled[int(c)]) for c in code[want_idx]])
    # the finding: the general ASPRS file labels none of the code-1 points
    if name == "classes_ground_nonground":
        prepare_custom(
            tmp_path / "raw",
            REPO / "configs" / "custom" / "classes_asprs_las.yaml",
            tmp_path / "p2",
        )
        old = processed.read_labels(tmp_path / "p2", "given", "t")
        assert not np.isin(old, np.flatnonzero(code == 1)).any()


def test_every_example_class_file_says_when_it_fits():
    from helpers.paths import REPO

    files = sorted((REPO / "configs" / "custom").glob("classes_*.yaml"))
    assert len(files) >= 4
    for f in files:
        head = " ".join(ln.lstrip("# ") for ln in f.read_text().splitlines() if ln.startswith("#"))
        assert "Fits when" in head, f.name


def test_empty_class_warning_is_one_plain_line(tmp_path):
    """`pcseg prepare custom` printed the empty-class warning twice, once through
    warnings.warn with the Python source line under it."""
    from helpers.paths import REPO

    raw = tmp_path / "raw"
    write_synthetic_las(raw / "good.las", 2000, seed=0)
    path = _classes(tmp_path, names=[*ASPRS["names"], "water"], map={**ASPRS["map"], 9: "water"})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONWARNINGS", None)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pcseg",
            "prepare",
            "custom",
            "--raw",
            str(raw),
            "--classes",
            str(path),
            "--out",
            str(tmp_path / "proc"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if "have no labelled point" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "['water']" in lines[0]
    assert "UserWarning" not in r.stderr and "prepare_custom(" not in r.stderr


def test_same_stem_files_are_distinct_scenes(tmp_path, capsys):
    """One stem in other folders or formats: one scene each (the folder in the id, the
    format where one folder holds both); only a true clash is refused, naming both files."""
    from pcseg.io.points import read_points, write_points
    from pcseg.readers.common import SplitError
    from pcseg.readers.custom import list_files

    raw = tmp_path / "raw"
    for i, rel in enumerate(["a/tile.las", "b/tile.las", "tile.las"]):
        write_synthetic_las(raw / rel, 600, seed=i)
    write_points(read_points(raw / "tile.las"), raw / "tile.ply", {}, fmt="ply")
    want = {"a__tile": "a/tile.las", "b__tile": "b/tile.las", "tile_las": "tile.las"}
    want["tile_ply"] = "tile.ply"
    assert {k: v.relative_to(raw).as_posix() for k, v in list_files(raw).items()} == want
    classes = _classes(tmp_path)
    s = prepare_custom(raw, classes, tmp_path / "proc")
    assert s["failed"] == 0
    assert sorted(processed.read_meta(tmp_path / "proc")["splits"]["train"]) == sorted(want)
    for sid, rel in want.items():  # each scene holds its own file's points
        n = len(read_points(raw / rel).xyz)
        assert processed.read_scene(tmp_path / "proc", sid).num_points == n
    write_synthetic_las(raw / "a__tile.las", 600, seed=9)  # a__tile as a/tile.las, both .las
    with pytest.raises(SplitError) as e:
        list_files(raw)
    assert str(e.value) == (
        f"{raw / 'a' / 'tile.las'} and {raw / 'a__tile.las'} would both be scene "
        "'a__tile_las' (scenes/a__tile_las.npz); rename one"
    )
    capsys.readouterr()
    argv = ["prepare", "custom", "--raw", str(raw), "--classes", str(classes), "--out"]
    assert main([*argv, str(tmp_path / "p2")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"pcseg: error: {e.value}"]


def _spacing(xyz):
    from scipy.spatial.distance import cdist

    d = cdist(xyz, xyz)
    np.fill_diagonal(d, np.inf)
    return float(np.median(d.min(axis=1)))


def _extent(xyz, unit):
    return "extent " + " x ".join(f"{e:.3g}" for e in np.ptp(xyz, axis=0)) + f" {unit}"


def test_lonlat_degrees_and_absurd_voxel_size_warn_per_file(tmp_path):
    """A file in degrees without a CRS, and voxel_size 1000 on a 40 m tile: one warning line
    each naming the file, its extent and its median point spacing (checked against a
    brute-force nearest neighbour); a tile in metres at a sound voxel size: none."""
    import laspy
    from helpers.faults import lonlat_las

    raw = tmp_path / "raw"
    deg = lonlat_las(raw / "deg.las", 1500, seed=2)
    ok = write_synthetic_las(raw / "ok.las", 1500, seed=3)
    s = prepare_custom(raw, _classes(tmp_path), tmp_path / "p")
    warned = [w for w in s["warnings"] if "longitude / latitude" in w]
    assert len(warned) == 1 and warned[0].startswith(f"deg: {deg}: the coordinates look like")
    las = laspy.read(str(deg))
    xyz = np.column_stack([las.x, las.y, las.z])
    assert _extent(xyz, "units") in warned[0]
    assert f"median point spacing {_spacing(xyz[:, :2]):.3g} units, LAS scale 1e-07" in warned[0]
    assert "no CRS and no units: in CLASSES.yaml (metres assumed)" in warned[0]
    assert not [w for w in s["warnings"] if str(ok) in w]
    # voxel_size 1000: the 40 m tile is one voxel
    (raw / "deg.las").unlink()
    s = prepare_custom(raw, _classes(tmp_path, voxel_size=1000), tmp_path / "p2")
    okl = laspy.read(str(ok))
    xyz = np.column_stack([okl.x, okl.y, okl.z])
    bound = int(np.prod(np.floor(np.ptp(xyz, axis=0) / 1000) + 1))
    assert bound == 1 and s["warnings"] == [
        f"ok: {ok}: voxel_size 1000.0 m: its extent holds at most 1 voxel(s) (the network sees "
        f"almost nothing); {_extent(xyz, 'm')}, median point spacing {_spacing(xyz):.3g} m: a "
        f"voxel_size of about {_spacing(xyz):.2g}-{2 * _spacing(xyz):.2g} m suits it "
        "(coordinates are in metres whatever the file's unit)"
    ]
