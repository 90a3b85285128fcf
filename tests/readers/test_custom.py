"""pcseg prepare custom: CLASSES.yaml checks, partial labels as the spec ``given``, the origin
shift, unlabelled scans, and every bad input named by file and field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

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

ASPRS = {
    "names": ["ground", "low_vegetation", "high_vegetation", "building"],
    "label_field": "classification",
    "map": {2: "ground", 3: "low_vegetation", 5: "high_vegetation", 6: "building"},
    "ignore": [0, 1],
    "features": ["intensity"],
    "voxel_size": 0.5,
}


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
        ({"features": ["rgb", "intensity"]}, "features"),
    ]:
        path = _classes(tmp_path, **bad)
        with pytest.raises(ClassesError) as e:
            load_classes(path)
        assert str(path) in str(e.value) and key in str(e.value), str(e.value)
    spec = load_classes(_classes(tmp_path))
    assert list(spec.reverse_map()) == [2, 3, 5, 6]


@pytest.mark.parametrize("name", ["classes_asprs_las.yaml", "classes_ply_label.yaml"])
def test_shipped_class_files_load(name):
    from conftest import REPO

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
    with pytest.warns(UserWarning, match="water"):
        s = prepare_custom(raw, path, tmp_path / "proc")
    assert s["scenes"] == 1 and s["failed"] == 1 and s["empty_classes"] == ["water"]
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
