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
