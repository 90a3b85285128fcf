"""SemanticKITTI reader: exact labels on synthetic scans, the real scan against an
independent computation, layout/config discovery, splits and error cases."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pcseg.data.classes import SEMANTICKITTI_CLASSES
from pcseg.readers import semantickitti as sk
from pcseg.readers.common import DataWarning
from pcseg.readers.synthetic import (
    make_kitti_scan,
    make_kitti_world,
    write_semantic_kitti_yaml,
)


def _write_scan(
    root: Path, seq: str, frame: int, pts: np.ndarray, labels: np.ndarray | None
) -> None:
    base = root / "dataset" / "sequences" / seq
    (base / "velodyne").mkdir(parents=True, exist_ok=True)
    pts.astype("<f4").tofile(base / "velodyne" / f"{frame:06d}.bin")
    if labels is not None:
        (base / "labels").mkdir(parents=True, exist_ok=True)
        labels.astype("<u4").tofile(base / "labels" / f"{frame:06d}.label")


def _expected(labels: np.ndarray, learning_map: dict) -> tuple[np.ndarray, np.ndarray]:
    """Independent mapping with a Python loop over points."""
    sem, inst = [], []
    for lab in labels.tolist():
        raw, iid = lab & 0xFFFF, lab >> 16
        c = learning_map[raw] - 1
        sem.append(c)
        inst.append(c * 65536 + iid if (iid > 0 and c >= 0) else -1)
    return np.array(sem, dtype=np.int64), np.array(inst, dtype=np.int64)


@pytest.fixture
def synthetic_root(tmp_path):
    rng = np.random.default_rng(5)
    world = make_kitti_world(rng)
    scans = []
    for k in range(2):
        pts, labels = make_kitti_scan(world, (k * 2.0, 0.0), rng, azimuth_steps=96)
        _write_scan(tmp_path, "08", k, pts, labels)
        scans.append((pts, labels))
    pts, _ = make_kitti_scan(world, (5.0, 0.0), rng, azimuth_steps=64)
    _write_scan(tmp_path, "11", 0, pts, None)
    write_semantic_kitti_yaml(tmp_path / "semantic-kitti.yaml")
    return tmp_path, scans


def test_synthetic_scans_roundtrip_exact(synthetic_root):
    root, scans = synthetic_root
    cfg = yaml.safe_load((root / "semantic-kitti.yaml").read_text())
    for k, (pts, labels) in enumerate(scans):
        scene = sk.read_scene(root, f"08_{k:06d}")
        assert scene.name == f"08_{k:06d}" and scene.dataset == "semantickitti"
        assert 2000 < scene.num_points < 10000
        np.testing.assert_array_equal(scene.coords, pts[:, :3])
        np.testing.assert_array_equal(scene.feats, pts[:, 3:4])
        assert scene.feats.shape == (len(pts), 1) and scene.coords.dtype == np.float32
        sem, inst = _expected(labels, cfg["learning_map"])
        np.testing.assert_array_equal(scene.semantic, sem)
        np.testing.assert_array_equal(scene.instance, inst)
        assert scene.extra["has_labels"] and scene.extra["sequence"] == "08"
        # moving cars (raw 252) fold into car (index 0); outliers (raw 1) are ignored
        raw = labels & 0xFFFF
        assert (scene.semantic[raw == 252] == 0).all() and (scene.semantic[raw == 1] == -1).all()
        assert (raw == 252).any()
    test = sk.read_scene(root, "11_000000")
    assert (
        (test.semantic == -1).all() and (test.instance == -1).all() and not test.extra["has_labels"]
    )


def test_layout_config_and_splits(synthetic_root):
    root, _ = synthetic_root
    ds = root / "dataset"
    assert sk.find_dataset_root(root) == ds and sk.find_dataset_root(ds) == ds
    assert sk.find_config(ds) == root / "semantic-kitti.yaml"
    a = sk.read_scene(root, "08_000001")
    b = sk.read_scene(ds, "08_000001")
    np.testing.assert_array_equal(a.semantic, b.semantic)
    assert sk.list_scenes(ds, "val") == sk.list_scenes(root, "valid") == ["08_000000", "08_000001"]
    assert sk.list_scenes(root, "08") == ["08_000000", "08_000001"]
    with pytest.warns(DataWarning, match="'12'"):
        assert sk.list_scenes(root, "test") == ["11_000000"]
    assert sk.list_scenes(root, "all") == ["08_000000", "08_000001", "11_000000"]
    assert sk.list_scenes(root, "08+11") == ["08_000000", "08_000001", "11_000000"]
    with pytest.warns(DataWarning), pytest.raises(ValueError, match="has no scans"):
        sk.list_scenes(root, "train")
    with pytest.raises(ValueError, match="unknown SemanticKITTI split 'training'"):
        sk.list_scenes(root, "training")
    assert sk.SPLITS["train"] == ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10")
    assert sk.SPLITS["val"] == ("08",) and sk.SPLITS["test"] == tuple(f"{i}" for i in range(11, 22))
    # an explicit config path wins; a missing one is a clear error
    other = root / "cfg" / "my.yaml"
    other.parent.mkdir()
    shutil.copy(root / "semantic-kitti.yaml", other)
    (root / "semantic-kitti.yaml").unlink()
    # without a yaml the official map built in is used (same labels as the official file)
    builtin = sk.read_scene(root, "08_000000")
    assert builtin.extra["config"] == "builtin"
    assert sk.read_scene(root, "08_000000", sk.Options(config=other)).extra["config"] == str(other)
    with pytest.raises(ValueError, match=r"missing\.yaml \(--kitti-yaml\) not found"):
        sk.read_scene(root, "08_000000", sk.Options(config=root / "missing.yaml"))
    # the config's split section is used
    cfg = yaml.safe_load(other.read_text())
    cfg["split"]["valid"] = [11]
    other.write_text(yaml.safe_dump(cfg))
    assert sk.list_scenes(root, "val", sk.Options(config=other)) == ["11_000000"]
    with pytest.raises(ValueError, match="sequence 11 belongs to the labelled train/valid split"):
        sk.read_scene(
            root, "11_000000", sk.Options(config=other)
        )  # 11 is labelled under this config
    # the config path recorded for the scene is absolute (test.py may run from elsewhere)
    rel = Path(os.path.relpath(other))
    assert not rel.is_absolute()
    assert sk.read_scene(root, "08_000000", sk.Options(config=rel)).extra["config"] == str(
        other.resolve()
    )


def test_error_cases(synthetic_root):
    root, scans = synthetic_root
    seq = root / "dataset" / "sequences" / "08"
    binp = seq / "velodyne" / "000000.bin"
    data = binp.read_bytes()
    binp.write_bytes(data[:-6])
    n = len(data) // 16
    with pytest.raises(
        ValueError,
        match=rf"000000.bin: {len(data) - 6} bytes is not a multiple of 16.*"
        rf"{n - 1} whole points and 10 trailing",
    ):
        sk.read_scene(root, "08_000000")
    binp.write_bytes(data[:-16])
    with pytest.raises(
        ValueError, match=rf"000000.label: {n} labels, but the scan has {n - 1} points"
    ):
        sk.read_scene(root, "08_000000")
    binp.write_bytes(data)
    lab = scans[0][1].copy()
    lab[3] = (7 << 16) | 77
    lab[4] = 300
    lab.astype("<u4").tofile(seq / "labels" / "000000.label")
    with pytest.raises(
        ValueError,
        match=r"000000.label: raw semantic ids not in learning_map: "
        r"77 \(1 points\), 300 \(1 points\)",
    ):
        sk.read_scene(root, "08_000000")
    with pytest.raises(ValueError, match="<seq>_<frame>"):
        sk.read_scene(root, "08-000000")
    with pytest.raises(ValueError, match="not found"):
        sk.read_scene(root, "08_000009")
    # a labelled sequence (08: valid) without its .label is an error, never an unlabelled scan;
    # the test sequence 11 is read unlabelled
    (seq / "labels" / "000001.label").unlink()
    with pytest.raises(
        ValueError,
        match=r"labels/000001.label not found: sequence 08 belongs to the labelled "
        r"train/valid split \['00', .*, '10', '08'\] of the config \(partial download",
    ):
        sk.read_scene(root, "08_000001")
    test_scan = sk.read_scene(root, "11_000000")
    assert (
        not test_scan.has_labels
        and (test_scan.semantic == -1).all()
        and (test_scan.instance == -1).all()
    )
    bad = root / "bad.yaml"
    bad.write_text("learning_map:\n  0: 0\n  10: 25\n")
    with pytest.raises(ValueError, match="learning_map 10: 25"):
        sk.load_config(bad)
    bad.write_text("labels: {}\n")
    with pytest.raises(ValueError, match="no 'learning_map'"):
        sk.load_config(bad)


def test_lut():
    lut = sk.build_lut({0: 0, 1: 0, 10: 1, 252: 1, 40: 9})
    assert lut.shape == (253,) and lut[10] == 0 and lut[252] == 0 and lut[40] == 8 and lut[0] == -1
    assert lut[5] == -2
    np.testing.assert_array_equal(
        sk.map_raw_labels(np.array([0, 10, 252, 40], np.uint32), lut, "x"), [-1, 0, 0, 8]
    )
    with pytest.raises(
        ValueError, match="x: raw semantic ids not in learning_map: 5 \\(2 points\\), 1000"
    ):
        sk.map_raw_labels(np.array([5, 5, 1000]), lut, "x")


def test_generated_yaml_matches_official(real_data, tmp_path):
    real = sk.load_config(real_data / "semantickitti" / "semantic-kitti.yaml")
    ours = sk.load_config(write_semantic_kitti_yaml(tmp_path / "semantic-kitti.yaml"))
    for key in ("labels", "learning_map", "learning_map_inv", "learning_ignore", "split"):
        assert ours[key] == real[key], key
    assert set(ours["color_map"]) == set(real["color_map"])
    # learning ids 1..19 name our class list in order
    names = [real["labels"][real["learning_map_inv"][i]] for i in range(1, 20)]
    assert tuple(names) == SEMANTICKITTI_CLASSES


def test_real_scan(real_data):
    root = real_data / "semantickitti"
    scene = sk.read_scene(root, "00_000000")
    assert scene.num_points == 124668 and scene.feats.shape == (124668, 1)
    # independent computation: raw file, yaml read directly, Python loop over unique ids
    cfg = yaml.safe_load((root / "semantic-kitti.yaml").read_text())
    raw = np.fromfile(root / "dataset/sequences/00/labels/000000.label", dtype=np.uint32) & 0xFFFF
    ids, cnt = np.unique(raw, return_counts=True)
    assert dict(zip(ids.tolist(), cnt.tolist())) == {
        0: 2184,
        1: 4,
        10: 4234,
        40: 34228,
        44: 3268,
        48: 26360,
        50: 18268,
        51: 370,
        52: 1471,
        60: 1053,
        70: 27123,
        71: 1192,
        72: 2964,
        80: 532,
        81: 102,
        99: 1227,
        255: 88,
    }
    hist = {}
    for i, c in zip(ids.tolist(), cnt.tolist()):
        k = cfg["learning_map"][i] - 1
        hist[k] = hist.get(k, 0) + c
    got = dict(zip(*[a.tolist() for a in np.unique(scene.semantic, return_counts=True)]))
    assert got == hist
    assert got[SEMANTICKITTI_CLASSES.index("motorcyclist")] == 88  # moving class 255 folded
    assert (
        got[-1] == 2184 + 4 + 1471 + 1227
        and got[SEMANTICKITTI_CLASSES.index("road")] == 34228 + 1053
    )
    c = scene.coords
    assert -78.2 < c[:, 0].min() < -77.9 and 77.9 < c[:, 0].max() < 78.1
    assert -55.8 < c[:, 1].min() < -55.6 and 44.8 < c[:, 1].max() < 45.0
    assert -11.6 < c[:, 2].min() < -11.5 and 2.8 < c[:, 2].max() < 2.9
    road = scene.semantic == SEMANTICKITTI_CLASSES.index("road")
    car = scene.semantic == SEMANTICKITTI_CLASSES.index("car")
    assert abs(np.median(c[raw == 40, 2]) + 1.82) < 0.02 and abs(np.median(c[car, 2]) + 1.19) < 0.02
    assert road.sum() == 35281
    assert 0.0 <= scene.feats.min() and scene.feats.max() <= 1.0
    # instances: 13 cars and one moving motorcyclist, unique across classes
    inst = scene.instance
    assert len(np.unique(inst[inst >= 0])) == 14
    assert (inst[car] >> 16 == 0).all() and ((inst[car] & 0xFFFF) >= 208).all()
    moto = scene.semantic == SEMANTICKITTI_CLASSES.index("motorcyclist")
    assert (inst[moto] == (7 << 16 | 1)).all()
    assert (inst[~(car | moto)] == -1).all()
    with pytest.warns(DataWarning, match="'01'"):
        assert sk.list_scenes(root, "train") == ["00_000000"]
