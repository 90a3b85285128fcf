"""Synthetic raw-data generators: formats on disk, realism checks, determinism, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from plyfile import PlyData

from pcseg.cli.main import main
from pcseg.data.classes import S3DIS_CLASSES
from pcseg.readers import s3dis, scannet, semantickitti, synthetic


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_default_s3dis_room_is_realistic():
    rng = np.random.default_rng(0)
    W, L, H = 4.2, 4.8, 3.0
    objs = synthetic.make_s3dis_room(rng, size=(W, L, H), beam=True, column=True, sofa=True)
    pts = np.concatenate([o.points for o in objs])
    assert 40_000 <= len(pts) <= 80_000
    assert {o.class_name for o in objs} == set(S3DIS_CLASSES)  # all 13 classes
    assert np.array_equal(pts, np.round(pts, 3))  # millimetre precision like the release
    by = {c: [o for o in objs if o.class_name == c] for c in S3DIS_CLASSES}
    # floor at z=0 with ~5 mm sensor noise; ceiling at H
    fz = by["floor"][0].points[:, 2]
    assert abs(fz.mean()) < 1e-3 and 0.004 < fz.std() < 0.006
    assert abs(by["ceiling"][0].points[:, 2].mean() - H) < 1e-3
    # surface spacing ~4 cm: nearest-neighbour distance on the floor
    f = by["floor"][0].points[:2000, :2]
    d = np.sqrt(((f[:, None] - by["floor"][0].points[None, :, :2]) ** 2).sum(-1))
    d[np.arange(len(f)), np.arange(len(f))] = np.inf
    nn = d.min(1)
    assert 0.01 < np.median(nn) < 0.04
    # doors, windows and boards lie on (within 15 cm of) a wall plane
    for cls in ("door", "window", "board"):
        for o in by[cls]:
            p = o.points
            dist = np.minimum.reduce(
                [np.abs(p[:, 0]), np.abs(p[:, 0] - W), np.abs(p[:, 1]), np.abs(p[:, 1] - L)]
            )
            assert np.median(dist) < 0.05 and dist.max() < 0.15, cls
    # chairs stand near a table (centre within 1.6 m of a table centre), seat ~0.45 m
    tables = np.array([o.points.mean(0)[:2] for o in by["table"]])
    for o in by["chair"]:
        c = o.points.mean(0)[:2]
        assert np.min(np.linalg.norm(tables - c, axis=1)) < 1.6
        assert 0.3 < np.median(o.points[:, 2]) < 0.7
    # everything inside the room box
    assert pts[:, 0].min() > -0.05 and pts[:, 0].max() < W + 0.05 and pts[:, 2].max() < H + 0.05
    # class-typical colours with per-object variation: walls brighter than chairs
    assert by["wall"][0].colors.mean() > by["chair"][0].colors.mean() + 50
    assert len({tuple(o.colors.mean(0).round()) for o in by["wall"]}) == 4


def test_write_synthetic_s3dis_layout_and_determinism(tmp_path):
    a = synthetic.write_synthetic_s3dis(
        tmp_path / "a", num_areas=2, rooms_per_area=2, seed=3, spacing=0.25
    )
    b = synthetic.write_synthetic_s3dis(
        tmp_path / "b", num_areas=2, rooms_per_area=2, seed=3, spacing=0.25
    )
    c = synthetic.write_synthetic_s3dis(
        tmp_path / "c", num_areas=2, rooms_per_area=2, seed=4, spacing=0.25
    )
    assert _tree_digest(a) == _tree_digest(b) != _tree_digest(c)
    rooms = sorted(p.relative_to(a).as_posix() for p in a.glob("Area_*/*") if p.is_dir())
    assert rooms == ["Area_1/office_1", "Area_1/office_2", "Area_2/lounge_1", "Area_2/office_1"]
    for room in a.glob("Area_*/*"):
        files = sorted((room / "Annotations").iterdir())
        assert all(s3dis._OBJECT_RE.match(f.name) for f in files)
        # the room file is the concatenation of the annotation files in written order
        assert (room / f"{room.name}.txt").stat().st_size == sum(f.stat().st_size for f in files)
        first = (room / "Annotations" / "ceiling_1.txt").read_text().splitlines()[0].split()
        assert len(first) == 6 and all(0 <= int(v) <= 255 for v in first[3:])
    # rooms of one area do not overlap (area coordinates, like the release)
    boxes = []
    for room in sorted(a.glob("Area_1/*")):
        xs = np.loadtxt(room / "Annotations" / "floor_1.txt")[:, 0]
        boxes.append((xs.min(), xs.max()))
    assert boxes[0][1] < boxes[1][0] or boxes[1][1] < boxes[0][0]


def test_s3dis_cli_then_damage(tmp_path):
    from helpers.faults import inject_s3dis_damage

    from pcseg.cli.main import main

    assert (
        main(
            [
                "synthetic",
                "s3dis",
                "--out",
                str(tmp_path),
                "--areas",
                "1",
                "--rooms-per-area",
                "1",
                "--spacing",
                "0.3",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    ann = tmp_path / "Area_1" / "office_1" / "Annotations"
    assert not (ann / ".DS_Store").exists()
    inject_s3dis_damage(ann.parent)
    assert (ann / ".DS_Store").is_file() and (ann / "wall_1 (1).txt").is_file()
    assert (
        b"\x00" in (ann / "ceiling_1.txt").read_bytes()
        and b"\x10" in (ann / "floor_1.txt").read_bytes()
    )


def test_semantickitti_scan_is_lidar_like():
    rng = np.random.default_rng(0)
    world = synthetic.make_kitti_world(rng)
    pts, labels = synthetic.make_kitti_scan(world, (0.0, 0.0), rng, azimuth_steps=360)
    assert pts.dtype == np.float32 and labels.dtype == np.uint32 and pts.shape[1] == 4
    xyz = pts[:, :3].astype(np.float64)
    rng_ = np.linalg.norm(xyz, axis=1)
    raw, inst = labels & 0xFFFF, labels >> 16
    cfg = synthetic.semantic_kitti_config()
    assert set(np.unique(raw).tolist()) <= set(cfg["learning_map"])
    assert {40, 48, 50, 70, 72, 10}.issubset(set(raw.tolist()))
    # 64 rings between -24.8 and +2 degrees (outliers excluded: their range is shortened only)
    el = np.degrees(np.arcsin(xyz[:, 2] / rng_))
    assert el.min() > -25.0 and el.max() < 2.2
    ring = np.round((el + 24.8) / (26.8 / 63)).astype(int)
    assert len(np.unique(ring)) >= 40
    assert rng_.max() < 80.5 and rng_.min() > 0.3
    # range falls off: fewer points per metre of range far away
    h = np.histogram(rng_, bins=[5, 15, 25, 35, 45, 55, 65, 75])[0]
    assert h[0] > h[2] > h[-1]
    # remission in [0, 0.99], quantised to 0.01; lane markings brighter than road
    rem = pts[:, 3]
    assert (
        rem.min() >= 0
        and rem.max() <= 0.99
        and np.allclose(rem * 100, np.round(rem * 100), atol=1e-3)
    )
    if (raw == 60).sum() > 10:
        assert rem[raw == 60].mean() > rem[raw == 40].mean()
    # ground (road) at the sensor height below the sensor
    assert abs(np.median(xyz[raw == 40, 2]) + 1.73) < 0.03
    # instance ids only on things (cars, moving cars, people, bicycles, other vehicles)
    assert set(np.unique(raw[inst > 0]).tolist()) <= {10, 11, 20, 30, 252, 254}
    assert (inst[np.isin(raw, [10, 252])] > 0).all()


def test_write_synthetic_semantickitti(tmp_path):
    root = synthetic.write_synthetic_semantickitti(
        tmp_path, sequences=("00", "11"), scans_per_sequence=2, azimuth_steps=64, seed=1
    )
    seq = root / "dataset" / "sequences"
    assert sorted(p.name for p in (seq / "00" / "velodyne").iterdir()) == [
        "000000.bin",
        "000001.bin",
    ]
    assert (seq / "00" / "labels" / "000001.label").is_file() and not (
        seq / "11" / "labels"
    ).exists()
    n = (seq / "00" / "velodyne" / "000000.bin").stat().st_size // 16
    assert (seq / "00" / "labels" / "000000.label").stat().st_size == 4 * n
    # generated yaml: official structure (compared with the real file in
    # tests/readers/test_semantickitti.py)
    ours = yaml.safe_load((root / "semantic-kitti.yaml").read_text())
    assert set(ours) == {
        "labels",
        "color_map",
        "learning_map",
        "learning_map_inv",
        "learning_ignore",
        "split",
    }
    assert (
        ours["learning_map"][255] == 8
        and ours["learning_map_inv"][8] == 32
        and ours["split"]["valid"] == [8]
    )
    assert semantickitti.list_scenes(root, "00") == ["00_000000", "00_000001"]
    s = semantickitti.read_scene(root, "00_000001")
    assert s.num_points == (seq / "00" / "velodyne" / "000001.bin").stat().st_size // 16
    assert (
        main(
            [
                "synthetic",
                "semantickitti",
                "--out",
                str(tmp_path / "cli"),
                "--sequences",
                "08",
                "--scans",
                "1",
                "--azimuth-steps",
                "32",
            ]
        )
        == 0
    )
    assert (tmp_path / "cli" / "dataset" / "sequences" / "08" / "labels" / "000000.label").is_file()


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r\r\n"])
def test_write_synthetic_scannet(tmp_path, ending):
    root = synthetic.write_synthetic_scannet(tmp_path, line_ending=ending, spacing=0.2)
    tsv = (root / "scannetv2-labels.combined.tsv").read_bytes()
    n_lines = len(synthetic.SCANNET_CATEGORIES) + 1
    assert tsv.count(ending.encode()) == n_lines and tsv.endswith(ending.encode())
    if ending == "\n":
        assert b"\r" not in tsv
    assert b"office chair \t" in tsv  # a trailing space like copies in the wild
    d = root / "scans" / "scene0000_00"
    ply = PlyData.read(str(d / "scene0000_00_vh_clean_2.ply"))
    assert [p.name for p in ply["vertex"].properties] == [
        "x",
        "y",
        "z",
        "red",
        "green",
        "blue",
        "alpha",
    ]
    faces = np.stack(ply["face"].data["vertex_indices"])
    nv = len(ply["vertex"].data)
    assert faces.shape[1] == 3 and faces.min() >= 0 and faces.max() < nv
    segs = json.loads((d / "scene0000_00_vh_clean_2.0.010000.segs.json").read_text())["segIndices"]
    groups = json.loads((d / "scene0000_00.aggregation.json").read_text())["segGroups"]
    assert len(segs) == nv
    all_segs = [s for g in groups for s in g["segments"]]
    assert len(all_segs) == len(set(all_segs)) and set(all_segs) < set(
        segs
    )  # one group per segment, some free
    assert sorted(g["objectId"] for g in groups) == list(range(len(groups)))
    assert not (root / "scans_test" / "scene0707_00" / "scene0707_00.aggregation.json").exists()
    assert scannet.read_label_map(root / "scannetv2-labels.combined.tsv")["office chair"] == 5
    with pytest.raises(ValueError, match="line_ending"):
        synthetic.write_scannet_label_tsv(tmp_path / "x.tsv", "\r")
    assert main(["synthetic", "scannet", "--out", str(tmp_path / "cli")]) == 0


def test_synthetic_rooms_model_matches_the_writer():
    import inspect

    params = inspect.signature(synthetic.write_synthetic_s3dis).parameters
    defaults = {k: p.default for k, p in params.items() if k != "root"}
    assert synthetic.SyntheticRooms().model_dump() == defaults
