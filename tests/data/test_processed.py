"""Processed folder: round trips, completion check and clear errors on bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pcseg.data import processed
from pcseg.data.classes import S3DIS_CLASSES
from pcseg.data.scene import Scene


def _scene(name: str = "Area_1_office_1", n: int = 500, remission: bool = False) -> Scene:
    rng = np.random.default_rng(4)
    sem = rng.integers(-1, 13, n)
    return Scene(
        name=name,
        dataset="s3dis",
        coords=rng.random((n, 3)).astype(np.float32),
        feats=rng.random((n, 1 if remission else 3)).astype(np.float32),
        semantic=sem,
        instance=rng.integers(-1, 5, n),
        source="/raw/x",
        extra={"area": "Area_1"},
    )


def test_scene_round_trip(tmp_path):
    sc = _scene()
    processed.write_scene(tmp_path, sc)
    got = processed.read_scene(tmp_path, sc.name)
    for k in ("coords", "feats", "semantic", "instance"):
        np.testing.assert_array_equal(getattr(got, k), getattr(sc, k))
    assert got.coords.dtype == np.float32 and got.semantic.dtype == np.int64
    assert (got.name, got.dataset, got.source, got.extra) == (
        sc.name,
        "s3dis",
        "/raw/x",
        {"area": "Area_1"},
    )
    info = json.loads((tmp_path / "scenes" / f"{sc.name}.json").read_text())
    assert info["num_points"] == 500 and info["feat_kind"] == "rgb"
    assert info["class_names"] == list(S3DIS_CLASSES)
    ref = [int((sc.semantic == k).sum()) for k in range(13)]
    assert info["class_counts"] == ref
    with np.load(tmp_path / "scenes" / f"{sc.name}.npz") as z:
        assert sorted(z.files) == ["coords", "feats", "instance", "semantic"]
    processed.write_scene(tmp_path, _scene("s2", remission=True))
    assert processed.read_scene_info(tmp_path, "s2")["feat_kind"] == "remission"


def test_labels_round_trip_and_done(tmp_path):
    sc = _scene()
    assert not processed.is_scene_done(tmp_path, sc.name, ["1%"])
    processed.write_scene(tmp_path, sc)
    assert processed.is_scene_done(tmp_path, sc.name)
    assert not processed.is_scene_done(tmp_path, sc.name, ["1%"])
    path = processed.write_labels(tmp_path, "1%", sc.name, np.array([3, 7, 100], dtype=np.int32))
    assert path == tmp_path / "labels" / "1pct" / f"{sc.name}.npy"
    got = processed.read_labels(tmp_path, "1%", sc.name, num_points=500)
    assert got.dtype == np.int64 and got.tolist() == [3, 7, 100]
    assert processed.is_scene_done(tmp_path, sc.name, ["1%"])
    assert not processed.is_scene_done(tmp_path, sc.name, ["1%", "1pt"])
    with pytest.raises(ValueError, match="sorted, unique"):
        processed.write_labels(tmp_path, "1pt", sc.name, np.array([5, 5]))
    with pytest.raises(ValueError, match="out of range"):
        processed.read_labels(tmp_path, "1%", sc.name, num_points=50)
    with pytest.raises(ValueError, match=r"labels/1pt/.*does not exist"):
        processed.read_labels(tmp_path, "1pt", sc.name)


def test_meta_round_trip_and_splits(tmp_path):
    meta = {
        "dataset": "s3dis",
        "class_names": list(S3DIS_CLASSES),
        "voxel_size": 0.05,
        "splits": {"train": ["a", "b"], "val": ["c"]},
        "label_specs": ["1%"],
        "seed": 0,
    }
    processed.write_meta(tmp_path, meta)
    assert processed.read_meta(tmp_path) == meta
    assert processed.split_scenes(tmp_path, "train") == ["a", "b"]
    assert processed.split_scenes(tmp_path, "all") == ["a", "b", "c"]
    assert processed.split_scenes(tmp_path, ["val", "train"]) == ["c", "a", "b"]
    with pytest.raises(ValueError, match="split 'test' not in .*meta.json"):
        processed.split_scenes(tmp_path, "test")
    with pytest.raises(ValueError, match="missing keys"):
        processed.write_meta(tmp_path, {"dataset": "s3dis"})


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"meta.json does not exist"):
        processed.read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"meta.json is corrupt"):
        processed.read_meta(tmp_path)
    sc = _scene()
    with pytest.raises(ValueError, match=rf"{sc.name}.json does not exist"):
        processed.read_scene(tmp_path, sc.name)
    processed.write_scene(tmp_path, sc)
    npz = tmp_path / "scenes" / f"{sc.name}.npz"
    npz.write_bytes(npz.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match=rf"{sc.name}.npz is corrupt"):
        processed.read_scene(tmp_path, sc.name)
    np.savez(npz, coords=sc.coords, feats=sc.feats, semantic=sc.semantic)
    with pytest.raises(ValueError, match=r"missing arrays \['instance'\]"):
        processed.read_scene(tmp_path, sc.name)
    np.savez(
        npz,
        coords=sc.coords,
        feats=sc.feats,
        semantic=sc.semantic.astype(np.int32),
        instance=sc.instance,
    )
    with pytest.raises(ValueError, match="semantic must be int64"):
        processed.read_scene(tmp_path, sc.name)
    lab = tmp_path / "labels" / "1pct" / f"{sc.name}.npy"
    lab.parent.mkdir(parents=True)
    lab.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"1pct/.*npy is corrupt"):
        processed.read_labels(tmp_path, "1%", sc.name)
    np.save(lab, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="expected 1-D int64"):
        processed.read_labels(tmp_path, "1%", sc.name)


def test_bad_class_label_rejected(tmp_path):
    sc = _scene()
    sc.semantic[3] = 13
    with pytest.raises(ValueError, match="13 >= number of classes 13"):
        processed.write_scene(tmp_path, sc)
    assert not (tmp_path / "scenes" / f"{sc.name}.npz").exists()


# ----------------------------------------------------------------------------- fingerprint
def _fp(**over) -> dict:
    fp = {
        "format": processed.PROCESSED_FORMAT,
        "dataset": "custom",
        "reader": "pcseg.readers.custom.CustomReader",
        "reader_options": {"nonfinite": "refuse"},
        "class_names": ["ground", "building"],
        "voxel_size": 0.5,
        "seed": 0,
        "classes": {
            "names": ["ground", "building"],
            "label_field": "classification",
            "map": {"2": "ground", "6": "building"},
            "ignore": [0, 1],
            "features": ["intensity"],
            "units": None,
            "columns": None,
        },
        "label_specs": {"given": "given"},
    }
    for k, v in over.items():
        if k in fp["classes"]:
            fp["classes"] = {**fp["classes"], k: v}
        else:
            fp[k] = v
    return fp


def test_fingerprint_changes_name_each_change():
    assert processed.fingerprint_changes(_fp(), _fp()) == []
    swapped = _fp(map={"2": "building", "6": "ground"})
    assert processed.fingerprint_changes(_fp(), swapped) == [
        "map: 2->ground became 2->building, 6->building became 6->ground"
    ]
    more = _fp(map={"2": "ground", "6": "building", "10": "ground"}, ignore=[0])
    assert processed.fingerprint_changes(_fp(), more) == [
        "map: 10->ground added",
        "ignore: [0, 1] became [0]",
    ]
    assert processed.fingerprint_changes(_fp(), _fp(map=None)) == [
        "map: {2: ground, 6: building} became none (raw values are the class indices)"
    ]
    feats = _fp(features=["intensity", "return_number"], voxel_size=0.25)
    assert processed.fingerprint_changes(_fp(), feats) == [
        "voxel_size: 0.5 became 0.25",
        "features: [intensity] became [intensity, return_number]",
    ]
    opts = _fp(reader_options={"nonfinite": "drop"}, format=1)
    assert processed.fingerprint_changes(opts, _fp()) == [
        "processed format: 1 became 2",
        "reader option nonfinite: drop became refuse",
    ]
    # a spec added to a folder is no change; a spec defined otherwise (another file) is
    added = _fp(label_specs={"given": "given", "1%": "1%"})
    assert processed.fingerprint_changes(_fp(), added) == []
    a = _fp(label_specs={"import:x": "file sha256 aa"})
    b = _fp(label_specs={"import:x": "file sha256 bb"})
    assert processed.fingerprint_changes(a, b) == [
        "label spec import:x: file sha256 aa became file sha256 bb"
    ]


def test_scene_digest_ignores_the_label_specs_only():
    base = processed.scene_digest(_fp())
    assert len(base) == 16 and int(base, 16) >= 0
    assert processed.scene_digest(_fp(label_specs={"1pt": "1pt"})) == base
    assert processed.scene_digest(_fp(map={"2": "building", "6": "ground"})) != base
    assert processed.scene_digest(_fp(seed=1)) != base


def test_write_scene_keeps_the_digest(tmp_path):
    sc = _scene()
    processed.write_scene(tmp_path, sc, fingerprint="0123456789abcdef")
    assert processed.scene_fingerprint(tmp_path, sc.name) == "0123456789abcdef"
    processed.write_scene(tmp_path, _scene("other"))
    assert processed.scene_fingerprint(tmp_path, "other") is None
    assert processed.scene_fingerprint(tmp_path, "missing") is None


def _filled(out):
    """A processed folder with every kind of entry: prepare's labels (M,), a person's
    (M, 2), a superpoint cache, meta and summary."""
    sc = _scene()
    processed.write_scene(out, sc)
    processed.write_labels(out, "1%", sc.name, np.array([1, 5, 9]))
    processed.write_label_file(
        processed.labels_path(out, "import:annotate", sc.name), np.array([[3, 1], [7, 2]])
    )
    (out / "superpoints" / "abc").mkdir(parents=True)
    np.save(out / "superpoints" / "abc" / f"{sc.name}.npy", np.zeros(sc.num_points, np.int64))
    meta = {"dataset": "s3dis", "class_names": list(S3DIS_CLASSES), "voxel_size": 0.05,
            "splits": {"train": [sc.name]}, "label_specs": ["1%"], "seed": 0}
    processed.write_meta(out, meta)
    (out / "summary.json").write_text("{}")
    return sc


def _left(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*"))


def test_wipe_removes_everything_but_a_persons_labels(tmp_path):
    sc = _filled(tmp_path)
    assert processed.annotated_label_dirs(tmp_path) == ["import_annotate"]
    assert processed.wipe_processed(tmp_path) == ["import_annotate"]
    assert _left(tmp_path) == ["labels", "labels/import_annotate",
                               f"labels/import_annotate/{sc.name}.npy"]
    assert not processed.finish_wipe(tmp_path)  # nothing left to finish


def test_a_killed_wipe_is_finished_by_the_next_run(tmp_path, monkeypatch):
    sc = _filled(tmp_path)
    real = processed.os.replace
    calls = []

    def dies_on_the_third(src, dst):
        calls.append(src)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed between two renames
        real(src, dst)

    monkeypatch.setattr(processed.os, "replace", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        processed.wipe_processed(tmp_path)
    monkeypatch.setattr(processed.os, "replace", real)
    # half done: meta.json and summary.json gone, the scenes still there, the plan kept
    assert not (tmp_path / "meta.json").exists() and (tmp_path / "scenes").is_dir()
    assert (tmp_path / processed.WIPE_MARKER).is_file()
    assert processed.finish_wipe(tmp_path)
    assert _left(tmp_path) == ["labels", "labels/import_annotate",
                               f"labels/import_annotate/{sc.name}.npy"]
