"""Damaged raw inputs: a bad scene never breaks a run, every hint is a real option, and the
readers share one point check (NaN / inf, empty scans) and one feature-unit check.

Raw folders come from pcseg.readers.synthetic and are damaged with tests/helpers/faults.py. The last
tests run ``pcseg prepare`` on a folder per dataset that mixes good scenes with truncated,
empty, NaN, mislabelled and garbage-line ones, then ``pcseg train`` and ``pcseg test`` on the
result with a tiny model.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import faults

from pcseg.cli.main import build_parser, main
from pcseg.data import processed
from pcseg.readers import common, s3dis, scannet
from pcseg.readers import semantickitti as sk
from pcseg.readers.common import DataWarning
from pcseg.readers.synthetic import (
    write_scannet_label_tsv,
    write_synthetic_s3dis,
    write_synthetic_scannet,
    write_synthetic_semantickitti,
)

pytestmark = pytest.mark.integration

KITTI_SCENES = [f"00_{i:06d}" for i in range(5)]


@pytest.fixture(scope="module")
def kitti_clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kitti") / "raw"
    return write_synthetic_semantickitti(
        root, sequences=("00",), scans_per_sequence=5, azimuth_steps=192, seed=3
    )


@pytest.fixture
def kitti(kitti_clean, tmp_path) -> Path:
    return Path(shutil.copytree(kitti_clean, tmp_path / "raw_kitti"))


@pytest.fixture(scope="module")
def scannet_clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scannet") / "raw"
    return write_synthetic_scannet(root, spacing=0.2, seed=2)


@pytest.fixture
def scan(scannet_clean, tmp_path) -> Path:
    return Path(shutil.copytree(scannet_clean, tmp_path / "raw_scannet"))


@pytest.fixture(scope="module")
def s3dis_clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("s3dis") / "raw"
    return write_synthetic_s3dis(root, num_areas=2, rooms_per_area=2, seed=1, spacing=0.12)


@pytest.fixture
def rooms(s3dis_clean, tmp_path) -> Path:
    return Path(shutil.copytree(s3dis_clean, tmp_path / "raw_s3dis"))


def _bin(raw: Path, sid: str) -> Path:
    seq, frame = sid.split("_")
    return raw / "dataset" / "sequences" / seq / "velodyne" / f"{frame}.bin"


def _label(raw: Path, sid: str) -> Path:
    seq, frame = sid.split("_")
    return raw / "dataset" / "sequences" / seq / "labels" / f"{frame}.label"


def _prepare(dataset: str, raw: Path, out: Path, *extra: str) -> int:
    return main(
        ["prepare", dataset, "--raw", str(raw), "--out", str(out), "--labels", "1%", *extra]
    )


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _room_file(raw: Path, area: str, cls: str = "wall_1.txt") -> Path:
    room = min(p for p in (raw / area).iterdir() if p.is_dir())
    return room / "Annotations" / cls


# ----------------------------------------------------------------------------- item 1


def test_failed_scenes_are_not_listed_and_come_back(kitti, kitti_clean, tmp_path, capsys):
    """A truncated .bin and a .label shorter than its scan: prepare exits 0, meta.json does not
    list the two scenes (training would die on their missing files), the summary says which
    were dropped and why, and a run after the files are fixed adds them back."""
    faults.truncate_file(_bin(kitti, "00_000002"), 7)
    faults.truncate_file(_label(kitti, "00_000003"), 8)
    out = tmp_path / "out"
    assert _prepare("semantickitti", kitti, out) == 1
    printed = capsys.readouterr().out
    meta = processed.read_meta(out)
    good = ["00_000000", "00_000001", "00_000004"]
    assert meta["splits"] == {"train": good}
    for sid in processed.split_scenes(out, "train"):  # every listed scene is readable
        processed.read_scene(out, sid)
    dropped = {d["scene"]: d for d in _summary(out)["dropped"]}
    assert set(dropped) == {"00_000002", "00_000003"}
    assert str(_bin(kitti, "00_000002")) in dropped["00_000002"]["error"]
    assert "trailing bytes" in dropped["00_000002"]["error"]
    assert str(_label(kitti, "00_000003")) in dropped["00_000003"]["error"]
    assert dropped["00_000003"]["splits"] == ["train"]
    assert "DROPPED" in printed and "00_000002" in printed
    for sid in ("00_000002", "00_000003"):  # fix the files: the scenes come back
        shutil.copy(_bin(kitti_clean, sid), _bin(kitti, sid))
        shutil.copy(_label(kitti_clean, sid), _label(kitti, sid))
    assert _prepare("semantickitti", kitti, out) == 0
    assert processed.read_meta(out)["splits"] == {"train": KITTI_SCENES}
    assert _summary(out)["dropped"] == []


# ----------------------------------------------------------------------------- item 2


def test_empty_scan_is_refused_naming_the_file(kitti, rooms, tmp_path, capsys):
    faults.empty_file(_bin(kitti, "00_000001"))
    with pytest.raises(ValueError, match=re.escape(str(_bin(kitti, "00_000001"))) + ".*no points"):
        sk.read_scene(kitti, "00_000001")
    out = tmp_path / "k"
    assert _prepare("semantickitti", kitti, out) == 1
    assert "00_000001" not in processed.read_meta(out)["splits"]["train"]
    assert "empty scan" in _summary(out)["failures"][0]["error"]
    room = _room_file(rooms, "Area_1").parent.parent
    faults.s3dis_empty_room(room)
    sid = f"Area_1_{room.name}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(ValueError, match=re.escape(str(room / "Annotations")) + ".*no points"):
            s3dis.read_scene(rooms, sid)
    out = tmp_path / "s"
    assert _prepare("s3dis", rooms, out, "--split", "Area_1") == 1
    assert sid not in processed.read_meta(out)["splits"]["Area_1"]


# ----------------------------------------------------------------------------- item 3


def test_check_points_names_file_count_and_first_indices():
    coords = np.zeros((10, 3), np.float32)
    coords[[3, 7, 8], 1] = [np.nan, np.inf, -np.inf]
    with pytest.raises(
        ValueError,
        match=r"^scan\.bin: 3 of 10 points .*point index 3, 7, 8\)"
        r".*--nonfinite drop",
    ):
        common.check_points(coords, "scan.bin")
    with pytest.warns(DataWarning, match=r"scan\.bin: 3 of 10 .*dropped"):
        keep = common.check_points(coords, "scan.bin", nonfinite="drop")
    np.testing.assert_array_equal(np.flatnonzero(~keep), [3, 7, 8])
    assert common.check_points(np.ones((4, 3)), "ok.bin") is None
    with pytest.raises(ValueError, match="no point left"):
        common.check_points(np.full((2, 3), np.nan), "all.bin", nonfinite="drop")
    with pytest.raises(ValueError, match=r"f\.txt: 1 of 2 .*line 7"):
        common.check_points(
            np.array([[0, 0, 0], [np.nan, 0, 0]]),
            "f.txt",
            positions=np.array([3, 7]),
            position_name="line",
        )


def test_nonfinite_points_every_reader(kitti, kitti_clean, scan, rooms, tmp_path):
    """Every reader refuses NaN / inf points at read time (file, count, first indices in the
    file's own order, counting unlabelled points too) or drops them with --nonfinite drop."""
    bad = [5, 40, 41]
    faults.kitti_nan_points(_bin(kitti, "00_000000"), bad)
    n = len(np.fromfile(_bin(kitti, "00_000000"), "<f4")) // 4
    with pytest.raises(
        ValueError,
        match=re.escape(f"{_bin(kitti, '00_000000')}: 3 of {n} points")
        + r".*point index 5, 40, 41",
    ):
        sk.read_scene(kitti, "00_000000")
    with pytest.warns(DataWarning, match="dropped"):
        dropped = sk.read_scene(kitti, "00_000000", sk.Options(nonfinite="drop"))
    clean = sk.read_scene(kitti_clean, "00_000000")
    keep = np.setdiff1d(np.arange(n), bad)
    np.testing.assert_array_equal(dropped.coords, clean.coords[keep])
    np.testing.assert_array_equal(dropped.semantic, clean.semantic[keep])
    assert dropped.extra["dropped_points"] == bad
    # prepare: refused by default (no files written), dropped with --nonfinite drop
    out = tmp_path / "k"
    assert _prepare("semantickitti", kitti, out) == 1
    assert not processed.scene_npz_path(out, "00_000000").exists()
    assert "00_000000" not in processed.read_meta(out)["splits"]["train"]
    assert _prepare("semantickitti", kitti, out, "--nonfinite", "drop") == 0
    assert processed.read_scene(out, "00_000000").num_points == n - 3
    assert any("dropped" in w for w in _summary(out)["warnings"])
    # S3DIS: line numbers of the object file
    obj = _room_file(rooms, "Area_1")
    faults.s3dis_nan_line(obj, 4, b"inf")
    sid = f"Area_1_{obj.parent.parent.name}"
    with pytest.raises(ValueError, match=re.escape(str(obj)) + r": 1 of \d+ points .*line 4\)"):
        s3dis.read_scene(rooms, sid)
    with pytest.warns(DataWarning, match=re.escape(str(obj)) + ".*line 4.*dropped"):
        s = s3dis.read_scene(rooms, sid, s3dis.Options(nonfinite="drop"))
    assert s.extra["skipped_lines"]["wall_1.txt"] == [4]
    # ScanNet: vertex indices of the mesh
    ply = scan / "scans" / "scene0000_00" / "scene0000_00_vh_clean_2.ply"
    faults.ply_nan_vertices(ply, [2, 9])
    with pytest.raises(ValueError, match=re.escape(str(ply)) + r": 2 of \d+ .*point index 2, 9\)"):
        scannet.read_scene(scan, "scene0000_00")
    with pytest.warns(DataWarning):
        s = scannet.read_scene(scan, "scene0000_00", scannet.Options(nonfinite="drop"))
    assert s.extra["dropped_points"] == [2, 9] and np.isfinite(s.coords).all()


# ----------------------------------------------------------------------------- item 4


def test_bad_split_line_skips_only_that_entry(scan, tmp_path, capsys):
    lst = scan / "meta" / "scannetv2_train.txt"
    line = faults.add_split_line(lst, "scene00x0_00 # typo", 1)
    out = tmp_path / "out"
    assert _prepare("scannet", scan, out) == 0
    err = capsys.readouterr().err
    assert f"{lst}:{line}: 'scene00x0_00 # typo' is not a ScanNet scene id" in err
    assert processed.read_meta(out)["splits"]["train"] == ["scene0000_00", "scene0001_00"]
    # a split list with no valid line is an error, not a split silently skipped
    lst.write_text("garbage\nmore garbage\n")
    assert _prepare("scannet", scan, tmp_path / "out2") == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(lst) in err and "no valid scene id" in err


# ----------------------------------------------------------------------------- item 5


def _prepare_options() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {o for a in sub.choices["prepare"]._actions for o in a.option_strings}


def test_hints_name_real_options_and_kitti_needs_no_yaml(
    kitti, kitti_clean, scan, rooms, tmp_path, capsys
):
    # SemanticKITTI without semantic-kitti.yaml: the official map built in
    (kitti / "semantic-kitti.yaml").unlink()
    out = tmp_path / "k"
    assert _prepare("semantickitti", kitti, out) == 0
    got = processed.read_scene(out, "00_000001")
    ref = sk.read_scene(kitti_clean, "00_000001")
    np.testing.assert_array_equal(got.semantic, ref.semantic)
    assert got.extra["config"] == "builtin"
    messages = []
    assert (
        _prepare(
            "semantickitti", kitti, tmp_path / "k2", "--kitti-yaml", str(tmp_path / "none.yaml")
        )
        == 2
    )
    messages.append(capsys.readouterr().err)
    with pytest.raises(ValueError) as e:
        sk.find_config(kitti)
    messages.append(str(e.value))
    for name in ("scannetv2_train.txt", "scannetv2-labels.combined.tsv"):
        for p in scan.rglob(name):
            p.unlink()
    assert _prepare("scannet", scan, tmp_path / "s", "--split", "train") == 2
    messages.append(capsys.readouterr().err)
    with pytest.raises(ValueError) as e:
        scannet.find_label_map(scan)
    messages.append(str(e.value))
    # S3DIS: an object file of an unknown class
    room = _room_file(rooms, "Area_1").parent
    shutil.copy(room / "wall_1.txt", room / "pillar_1.txt")
    sid = f"Area_1_{room.parent.name}"
    assert _prepare("s3dis", rooms, tmp_path / "r", "--split", "Area_1") == 1
    messages.append(_summary(tmp_path / "r")["failures"][0]["error"])
    assert (
        _prepare(
            "s3dis", rooms, tmp_path / "r2", "--split", "Area_1", "--s3dis-unknown-class", "ignore"
        )
        == 0
    )
    assert sid in processed.read_meta(tmp_path / "r2")["splits"]["Area_1"]
    options = _prepare_options()
    for m in messages:
        named = re.findall(r"--[a-z][a-z0-9-]+", m)
        assert named, m
        assert set(named) <= options, (m, options)
        assert not re.search(r"pass \w+=", m), m
    assert {
        "--kitti-yaml",
        "--scannet-split-dir",
        "--scannet-label-map",
        "--s3dis-unknown-class",
    } <= options
    # the split dir option works
    split_dir = tmp_path / "lists"
    split_dir.mkdir()
    (split_dir / "scannetv2_train.txt").write_text("scene0000_00\n")
    write_scannet_label_tsv(tmp_path / "labels.tsv")
    assert (
        _prepare(
            "scannet",
            scan,
            tmp_path / "s2",
            "--split",
            "train",
            "--scannet-split-dir",
            str(split_dir),
            "--scannet-label-map",
            str(tmp_path / "labels.tsv"),
        )
        == 0
    )
    assert processed.read_meta(tmp_path / "s2")["splits"] == {"train": ["scene0000_00"]}


def test_builtin_kitti_config_equals_official_yaml(real_data):
    official = sk.load_config(real_data / "semantickitti" / "semantic-kitti.yaml")
    built = sk.builtin_config()
    for key in ("labels", "learning_map", "learning_map_inv", "color_map"):
        assert built[key] == official[key], key


# ----------------------------------------------------------------------------- item 7


def test_split_scenes_from_command_line_and_config(kitti, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        _prepare(
            "semantickitti",
            kitti,
            out,
            "--split-scenes",
            "train=00_000000",
            "--split-scenes",
            "test=00_00000[12]",
        )
        == 0
    )
    assert processed.read_meta(out)["splits"] == {
        "train": ["00_000000"],
        "test": ["00_000001", "00_000002"],
    }
    for bad in ("train=00_000009", "test=01_*"):
        assert _prepare("semantickitti", kitti, tmp_path / "x", "--split-scenes", bad) == 2
        err = capsys.readouterr().err
        assert f"--split-scenes {bad}" in err and "matches" in err
    with pytest.raises(SystemExit):
        _prepare("semantickitti", kitti, tmp_path / "x", "--split-scenes", "train")
    # the processed folder's split resolution takes scene names and globs (data.train_split)
    assert processed.split_scenes(out, "00_000000") == ["00_000000"]
    assert processed.split_scenes(out, "00_00000[02]") == ["00_000000", "00_000002"]
    assert processed.split_scenes(out, ["train", "00_000002"]) == ["00_000000", "00_000002"]
    assert processed.split_scenes(out, "test") == ["00_000001", "00_000002"]
    with pytest.raises(ValueError, match=r"'07_\*'.*no scene name matches"):
        processed.split_scenes(out, "07_*")


# ----------------------------------------------------------------------------- item 8


def test_feature_units_detected_in_one_place(scan, scannet_clean, kitti):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(
            common.normalise_features(np.array([[0, 128, 255]], np.uint8), "a"),
            [[0, 128 / 255, 1]],
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            common.normalise_features(np.array([[0.2, 0.5]]), "a", expected=1.0),
            [[0.2, 0.5]],
            rtol=1e-6,
        )
    with pytest.warns(DataWarning, match=r"b\.ply: colour stored as float32 in 0-255.*divided"):
        v = common.normalise_features(
            np.array([[0, 100, 250.0]], np.float32), "b.ply", expected=1.0
        )
    np.testing.assert_allclose(v, [[0, 100 / 255, 250 / 255]], rtol=1e-6)
    for bad in ([[-1.0, 2.0]], [[0.0, 70000.0]]):
        with pytest.raises(ValueError, match=r"c\.ply: colour values range.*expected 0-1, 0-255"):
            common.normalise_features(np.array(bad), "c.ply")
    # a PLY with float colours 0-255 gives the same 0-1 features as the uchar original
    ply = scan / "scans" / "scene0001_00" / "scene0001_00_vh_clean_2.ply"
    faults.ply_float_colours(ply, 255.0)
    with pytest.warns(DataWarning, match=re.escape(str(ply)) + ".*divided by 255"):
        got = scannet.read_scene(scan, "scene0001_00")
    ref = scannet.read_scene(scannet_clean, "scene0001_00")
    assert got.feats.max() <= 1.0
    np.testing.assert_allclose(got.feats, ref.feats, atol=1e-6)
    # KITTI remission stored as 0-255
    b = _bin(kitti, "00_000004")
    pts = np.fromfile(b, "<f4").reshape(-1, 4)
    pts[:, 3] = np.round(pts[:, 3] * 200.0) + 20.0
    b.write_bytes(pts.tobytes())
    with pytest.warns(DataWarning, match=r"remission .*divided by 255"):
        s = sk.read_scene(kitti, "00_000004")
    assert 0 <= s.feats.min() and s.feats.max() <= 1.0


# ----------------------------------------------------------------------------- acceptance


def _tiny_cfg(tmp_path: Path, dataset: str, root: Path, train: str, val: str, test: str) -> Path:
    cfg = {
        "data": {
            "dataset": dataset,
            "root": str(root),
            "label_spec": "1%",
            "voxel_size": 0.1,
            "max_voxels": 600,
            "batch_size": 1,
            "train_split": train,
            "val_split": val,
            "test_split": test,
        },
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "method": {"name": "erda", "weight": 0.1, "momentum": 0.5},
        "train": {
            "iterations": 4,
            "optimizer": "adamw",
            "lr": 0.01,
            "scheduler": "constant",
            "log_every": 2,
            "progress": False,
            "device": "cpu",
            "val_every": 2,
        },
        "run_dir": str(tmp_path / f"run_{dataset}"),
    }
    path = tmp_path / f"{dataset}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_and_test(cfg: Path, tmp_path: Path) -> dict:
    assert main(["train", str(cfg), "--set", "train.seed=1"]) == 0
    run = yaml.safe_load(cfg.read_text())["run_dir"]
    out = tmp_path / f"test_{cfg.stem}"
    assert (
        main(
            [
                "test",
                str(cfg),
                "--checkpoint",
                f"{run}/checkpoints/last.pt",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    return json.loads((out / "metrics.json").read_text())


def _check_named(out: Path, printed: str, expected: dict[str, str]) -> None:
    """Every bad scene is dropped from meta.json, with its file named in the summary."""
    listed = {i for v in processed.read_meta(out)["splits"].values() for i in v}
    dropped = {d["scene"]: d["error"] for d in _summary(out)["dropped"]}
    assert set(dropped) == set(expected)
    for sid, text in expected.items():
        assert sid not in listed and text in dropped[sid] and sid in printed


def test_damaged_kitti_prepare_train_test(kitti, tmp_path, capsys):
    faults.truncate_file(_bin(kitti, "00_000001"), 5)  # truncated scan
    faults.empty_file(_bin(kitti, "00_000002"))  # empty scan
    faults.kitti_nan_points(_bin(kitti, "00_000003"), [0, 17])  # NaN points
    faults.kitti_relabel(_label(kitti, "00_000004"), [3, 4, 5], 7)  # raw id 7 not in the map
    out = tmp_path / "out"
    assert _prepare("semantickitti", kitti, out) == 1
    _check_named(
        out,
        capsys.readouterr().out,
        {
            "00_000001": str(_bin(kitti, "00_000001")),
            "00_000002": str(_bin(kitti, "00_000002")),
            "00_000003": str(_bin(kitti, "00_000003")),
            "00_000004": str(_label(kitti, "00_000004")),
        },
    )
    assert processed.read_meta(out)["splits"] == {"train": ["00_000000"]}
    m = _train_and_test(
        _tiny_cfg(tmp_path, "semantickitti", out, "train", "00_000000", "00_00000[0-4]"), tmp_path
    )
    assert m["scenes"] == ["00_000000"]


def test_damaged_scannet_prepare_train_test(scan, tmp_path, capsys):
    faults.add_split_line(scan / "meta" / "scannetv2_train.txt", "not-a-scene", 0)
    ply = scan / "scans" / "scene0001_00" / "scene0001_00_vh_clean_2.ply"
    faults.ply_nan_vertices(ply, [1])
    out = tmp_path / "out"
    assert _prepare("scannet", scan, out) == 1
    printed = capsys.readouterr()
    assert "scannetv2_train.txt:1" in printed.err
    _check_named(out, printed.out, {"scene0001_00": str(ply)})
    assert processed.read_meta(out)["splits"]["train"] == ["scene0000_00"]
    m = _train_and_test(_tiny_cfg(tmp_path, "scannet", out, "train", "val", "val"), tmp_path)
    assert m["scenes"] == ["scene0011_00"]


def test_damaged_s3dis_prepare_train_test(rooms, tmp_path, capsys):
    a1 = sorted(p for p in (rooms / "Area_1").iterdir() if p.is_dir())
    faults.inject_s3dis_damage(a1[0])  # repairable / skipped lines
    faults.s3dis_nan_line(a1[1] / "Annotations" / "floor_1.txt", 2)  # NaN
    a2 = sorted(p for p in (rooms / "Area_2").iterdir() if p.is_dir())
    faults.s3dis_empty_room(a2[1])  # empty room
    out = tmp_path / "out"
    assert _prepare("s3dis", rooms, out, "--split", "Area_1", "Area_2") == 1
    _check_named(
        out,
        capsys.readouterr().out,
        {
            f"Area_1_{a1[1].name}": str(a1[1] / "Annotations" / "floor_1.txt"),
            f"Area_2_{a2[1].name}": str(a2[1] / "Annotations"),
        },
    )
    m = _train_and_test(_tiny_cfg(tmp_path, "s3dis", out, "Area_1", "Area_2", "Area_2"), tmp_path)
    assert m["scenes"] == [f"Area_2_{a2[0].name}"]
