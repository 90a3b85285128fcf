"""S3DIS reader: exact labels/instances on synthetic rooms, damaged lines, stray files, splits."""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers.faults import inject_s3dis_damage

from pcseg.readers import s3dis
from pcseg.readers.common import DataWarning
from pcseg.readers.synthetic import (
    expected_s3dis_labels,
    make_s3dis_room,
    write_s3dis_room,
    write_synthetic_s3dis,
)


def _small_room(root: Path, area: str = "Area_1", room: str = "office_1", seed: int = 0):
    rng = np.random.default_rng(seed)
    objs = make_s3dis_room(
        rng, size=(3.0, 3.5, 2.6), spacing=0.2, beam=True, column=True, sofa=True
    )
    names = write_s3dis_room(root / area / room, objs)
    return objs, names


def _read(root: Path, scene_id: str, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = s3dis.read_scene(root, scene_id, s3dis.Options(**kw))
    return scene, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_room_roundtrip_exact(tmp_path):
    objs, names = _small_room(tmp_path)
    n = sum(len(o.points) for o in objs)
    assert 1000 < n < 20000
    scene, msgs = _read(tmp_path, "Area_1_office_1")
    assert msgs == []
    exp = expected_s3dis_labels(objs, names)
    assert scene.name == "Area_1_office_1" and scene.dataset == "s3dis"
    assert scene.coords.dtype == np.float32 and scene.feats.dtype == np.float32
    assert scene.semantic.dtype == np.int64 and scene.instance.dtype == np.int64
    np.testing.assert_array_equal(scene.semantic, exp["semantic"])
    np.testing.assert_array_equal(scene.instance, exp["instance"])
    np.testing.assert_array_equal(scene.coords, exp["coords"].astype(np.float32))
    np.testing.assert_array_equal(scene.feats, (exp["rgb"] / 255.0).astype(np.float32))
    # every class the generator wrote is present, instance ids are 0..objects-1
    assert set(np.unique(scene.semantic)) == {s3dis.CLASS_TO_INDEX[o.class_name] for o in objs}
    assert np.array_equal(np.unique(scene.instance), np.arange(len(objs)))
    assert (
        scene.extra["alignment_angle_deg"] is None
        and scene.extra["objects"][0][0] == sorted(names)[0]
    )


def test_hand_written_room_order_and_stairs(tmp_path):
    ann = tmp_path / "Area_2" / "WC_1" / "Annotations"
    ann.mkdir(parents=True)
    files = {
        "wall_1.txt": "0 0 0 10 20 30\n1 0 0 10 20 30\n",
        "chair_2.txt": "0.5 0.5 0.5 255 0 0\n",
        "chair_10.txt": "0.25 0.5 0.5 0 255 0\r\n0.125 0.5 0.5 0 0 255\r\n",
        "stairs_1.txt": "2 2 2 1 2 3\n",
    }
    for k, v in files.items():
        (ann / k).write_text(v)
    scene, msgs = _read(tmp_path, "Area_2_WC_1")
    assert msgs == []
    # sorted() order: chair_10, chair_2, stairs_1, wall_1
    np.testing.assert_array_equal(scene.instance, [0, 0, 1, 2, 3, 3])
    np.testing.assert_array_equal(
        scene.semantic, [8, 8, 8, 12, 2, 2]
    )  # chair=8, stairs->clutter=12, wall=2
    np.testing.assert_array_equal(scene.coords[:, 0], np.float32([0.25, 0.125, 0.5, 2, 0, 1]))
    np.testing.assert_allclose(scene.feats[2], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(scene.feats[4], np.float32([10, 20, 30]) / 255, rtol=1e-6)


def test_damaged_lines_and_stray_files(tmp_path):
    objs, names = _small_room(tmp_path)
    room = tmp_path / "Area_1" / "office_1"
    ann = room / "Annotations"
    nul_line_before = (ann / "ceiling_1.txt").read_bytes().split(b"\n")[2]
    info = inject_s3dis_damage(room)
    assert b"\x00" in (ann / "ceiling_1.txt").read_bytes().split(b"\n")[2]
    scene, msgs = _read(tmp_path, "Area_1_office_1")

    def has(fragment: str) -> bool:
        return any(fragment in m for m in msgs)

    # NUL repaired, garbage and wrong column count skipped: file path and 1-based line named
    assert has(f"{ann / 'ceiling_1.txt'}:3: NUL byte") and has("line repaired")
    assert has(f"{ann / 'floor_1.txt'}:5: garbage byte (0x10")
    assert has(f"{ann / 'wall_1.txt'}:2: expected 6 values, found 5; line skipped")
    for stray in info["stray"]:
        assert has(str(ann / stray)), stray
    assert has("wall_1 (1).txt: duplicate copy (identical to wall_1.txt)")
    assert has("copy_Room_1.txt: misnamed")

    # expected = written objects minus line 5 of floor_1 and line 2 of wall_1
    drop = {"floor_1.txt": 4, "wall_1.txt": 1}
    kept = []
    for o, name in zip(objs, names):
        keep = np.ones(len(o.points), bool)
        if name in drop:
            keep[drop[name]] = False
        kept.append(type(o)(o.class_name, o.points[keep], o.colors[keep]))
    exp = expected_s3dis_labels(kept, names)
    np.testing.assert_array_equal(scene.semantic, exp["semantic"])
    np.testing.assert_array_equal(scene.instance, exp["instance"])
    np.testing.assert_array_equal(scene.coords, exp["coords"].astype(np.float32))
    np.testing.assert_array_equal(scene.feats, (exp["rgb"] / 255.0).astype(np.float32))
    # the repaired NUL line carries the original six values
    vals = [float(t) for t in nul_line_before.split()]
    i_ceiling = sorted(names).index("ceiling_1.txt")
    row = np.flatnonzero(scene.instance == i_ceiling)[2]
    np.testing.assert_array_equal(scene.coords[row], np.float32(vals[:3]))
    np.testing.assert_array_equal(scene.feats[row], np.float32(np.array(vals[3:]) / 255.0))
    assert scene.extra["repaired_lines"] == {"ceiling_1.txt": [3]}
    assert scene.extra["skipped_lines"] == {"floor_1.txt": [5], "wall_1.txt": [2]}


@pytest.mark.parametrize(
    "line, expect",
    [
        (b"1 2 3 185\x00187 9", [1, 2, 3, 185, 187, 9]),  # NUL between numbers: repaired
        (b"1 2 3 4 5 6\x1a", [1, 2, 3, 4, 5, 6]),  # stray byte next to line end: unambiguous
        (b"\x7f 1 2 3 4 5 6", [1, 2, 3, 4, 5, 6]),  # stray byte next to whitespace
        (b"103.0\x100000 2 3 4 5 6", None),  # garbage inside a number (real non-aligned damage)
        (b"1 2 3 4 5", None),  # too few columns
        (b"1 2 3 4 5 6 7", None),  # too many
        (b"1 2 3 4 18\x005 6", None),  # NUL makes 7 columns: skipped, not guessed
        (b"1.2.3 2 3 4 5 6", None),  # not a number (only np.fromstring notices)
    ],
)
def test_parse_numeric_table_cases(line, expect):
    data = b"0 0 0 1 1 1\r\n" + line + b"\n\n9 9 9 2 2 2\n"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vals, rep = s3dis.parse_numeric_table(data, 6, "f.txt")
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and msgs[0].startswith("f.txt:2: ")
    if expect is None:
        assert rep.skipped == [2] and rep.repaired == [] and "skipped" in msgs[0]
        np.testing.assert_array_equal(vals, [[0, 0, 0, 1, 1, 1], [9, 9, 9, 2, 2, 2]])
    else:
        assert rep.repaired == [2] and rep.skipped == [] and "repaired" in msgs[0]
        np.testing.assert_array_equal(vals, [[0, 0, 0, 1, 1, 1], expect, [9, 9, 9, 2, 2, 2]])


def test_parse_cr_only_line_endings():
    """Old-Mac files (CR only) are lines like any other: parsed, and damage named by line."""
    vals, rep = s3dis.parse_numeric_table(b"0 0 0 1 1 1\r9 9 9 2 2 2\r", 6, "f.txt")
    np.testing.assert_array_equal(vals, [[0, 0, 0, 1, 1, 1], [9, 9, 9, 2, 2, 2]])
    assert rep.skipped == [] and rep.repaired == []
    with pytest.warns(UserWarning, match=r"f.txt:2: "):
        vals, rep = s3dis.parse_numeric_table(b"0 0 0 1 1 1\r1 2 3\r9 9 9 2 2 2", 6, "f.txt")
    assert rep.skipped == [2]
    np.testing.assert_array_equal(vals, [[0, 0, 0, 1, 1, 1], [9, 9, 9, 2, 2, 2]])


def test_parse_roundtrip_and_warning_cap():
    rng = np.random.default_rng(1)
    arr = np.concatenate(
        [np.round(rng.uniform(-50, 50, (20000, 3)), 3), rng.integers(0, 256, (20000, 3))], 1
    )
    buf = io.StringIO()
    np.savetxt(buf, arr, fmt="%.3f %.3f %.3f %d %d %d")
    data = buf.getvalue().encode()
    vals, rep = s3dis.parse_numeric_table(data, 6, "big.txt")
    np.testing.assert_array_equal(vals, arr)  # mm-rounded values round-trip exactly
    assert rep.skipped == rep.repaired == []
    # 30 damaged lines: 5 listed one by one, then one summary
    lines = data.split(b"\n")
    for i in range(0, 3000, 100):
        lines[i] = lines[i] + b" 7"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vals2, rep2 = s3dis.parse_numeric_table(b"\n".join(lines), 6, "big.txt", max_warnings=5)
    assert len(caught) == 6 and "25 more damaged lines" in str(caught[-1].message)
    assert rep2.skipped == [i + 1 for i in range(0, 3000, 100)]
    keep = np.ones(len(arr), bool)
    keep[list(range(0, 3000, 100))] = False
    np.testing.assert_array_equal(vals2, arr[keep])


@pytest.mark.slow
def test_parse_speed_one_million_lines():
    rng = np.random.default_rng(2)
    arr = np.concatenate(
        [np.round(rng.uniform(-50, 50, (1_000_000, 3)), 3), rng.integers(0, 256, (1_000_000, 3))], 1
    )
    buf = io.StringIO()
    np.savetxt(buf, arr, fmt="%.3f %.3f %.3f %d %d %d")
    data = buf.getvalue().encode()
    t = time.perf_counter()
    vals, _ = s3dis.parse_numeric_table(data, 6, "big.txt")
    dt = time.perf_counter() - t
    np.testing.assert_array_equal(vals, arr)
    assert dt < 10.0, f"1M-line parse took {dt:.1f}s"


def test_unknown_class(tmp_path):
    ann = tmp_path / "Area_1" / "office_9" / "Annotations"
    ann.mkdir(parents=True)
    (ann / "wall_1.txt").write_text("0 0 0 1 1 1\n")
    (ann / "sink_1.txt").write_text("1 1 1 1 1 1\n2 2 2 2 2 2\n")
    with pytest.raises(ValueError, match=r"sink_1\.txt: unknown S3DIS class 'sink'"):
        s3dis.read_scene(tmp_path, "Area_1_office_9")
    scene, msgs = _read(tmp_path, "Area_1_office_9", on_unknown_class="ignore")
    np.testing.assert_array_equal(scene.semantic, [-1, -1, 2])
    np.testing.assert_array_equal(scene.instance, [0, 0, 1])
    assert any("sink_1.txt" in m for m in msgs)
    scene, msgs = _read(tmp_path, "Area_1_office_9", on_unknown_class="skip")
    np.testing.assert_array_equal(scene.semantic, [2])
    np.testing.assert_array_equal(scene.instance, [0])


def test_bad_scene_ids_and_missing_room(tmp_path):
    _small_room(tmp_path)
    with pytest.raises(ValueError, match="Area_<N>_<room>"):
        s3dis.read_scene(tmp_path, "office_1")
    with pytest.raises(ValueError, match="office_7"):
        s3dis.read_scene(tmp_path, "Area_1_office_7")
    empty = tmp_path / "Area_1" / "office_2" / "Annotations"
    empty.mkdir(parents=True)
    (empty / ".DS_Store").write_bytes(b"\x00")
    with pytest.raises(ValueError, match="no valid"):
        _read(tmp_path, "Area_1_office_2")
    with pytest.raises(ValueError, match="no Area_N"):
        s3dis.list_scenes(tmp_path / "Area_1", "all")


def test_splits(tmp_path):
    rng = np.random.default_rng(0)
    for area, rooms in (
        ("Area_1", ["office_1", "office_10", "office_2"]),
        ("Area_2", ["hallway_1"]),
        ("Area_3", ["WC_1"]),
    ):
        for room in rooms:
            write_s3dis_room(
                tmp_path / area / room, make_s3dis_room(rng, size=(2, 2, 2.5), spacing=0.5)
            )
    (tmp_path / "Area_1" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "Area_1" / "Area_1_alignmentAngle.txt").write_text("office_1 0\n")
    assert s3dis.list_scenes(tmp_path, "Area_1") == [
        "Area_1_office_1",
        "Area_1_office_2",
        "Area_1_office_10",
    ]
    assert s3dis.list_scenes(tmp_path, "Area_1+Area_3") == [
        "Area_1_office_1",
        "Area_1_office_2",
        "Area_1_office_10",
        "Area_3_WC_1",
    ]
    assert s3dis.list_scenes(tmp_path, "fold3") == ["Area_3_WC_1"]
    with pytest.warns(DataWarning, match=r"Area_4', 'Area_5', 'Area_6"):
        assert len(s3dis.list_scenes(tmp_path, "fold3_train")) == 4
    with pytest.warns(DataWarning, match="Area_5"):
        with pytest.raises(ValueError, match="has no rooms"):
            s3dis.list_scenes(tmp_path, "val")
    with pytest.raises(ValueError, match="unknown S3DIS split 'fold7'"):
        s3dis.list_scenes(tmp_path, "fold7")
    assert s3dis.SPLITS["train"] == ("Area_1", "Area_2", "Area_3", "Area_4", "Area_6")
    assert s3dis.SPLITS["val"] == s3dis.SPLITS["test"] == ("Area_5",)
    for k in range(1, 7):
        assert s3dis.resolve_split(f"fold{k}") == (f"Area_{k}",)
        assert set(s3dis.resolve_split(f"fold{k}_train")) == set(s3dis.AREAS) - {f"Area_{k}"}
    # RAW may be the parent of the release folder
    parent = tmp_path.parent / (tmp_path.name + "_parent")
    parent.mkdir()
    (parent / "Stanford3dDataset_v1.2_Aligned_Version").symlink_to(tmp_path)
    assert s3dis.list_scenes(parent, "Area_3") == ["Area_3_WC_1"]


def test_alignment_angle(tmp_path):
    _small_room(tmp_path)
    plain, _ = _read(tmp_path, "Area_1_office_1")
    with pytest.raises(ValueError, match="alignmentAngle"):
        s3dis.read_scene(tmp_path, "Area_1_office_1", s3dis.Options(align=True))
    (tmp_path / "Area_1" / "Area_1_alignmentAngle.txt").write_text(
        "## Global alignment angle per disjoint space in Area_1 ##\n"
        "## Disjoint Space Name Angle ##\noffice_1 90\n"
    )
    scene, _ = _read(tmp_path, "Area_1_office_1")
    assert scene.extra["alignment_angle_deg"] == 90.0 and not scene.extra["aligned"]
    np.testing.assert_array_equal(scene.coords, plain.coords)  # recorded, not applied
    rot, _ = _read(tmp_path, "Area_1_office_1", align=True)
    c = plain.coords.astype(np.float64)
    centre = (c.max(0) + c.min(0)) / 2
    # -90 degrees about +z: (x, y) -> (y, -x) around the centre (hand-worked)
    d = c - centre
    expect = np.stack([d[:, 1], -d[:, 0], d[:, 2]], 1) + centre
    np.testing.assert_allclose(rot.coords, expect, atol=1e-5)
    np.testing.assert_array_equal(rot.semantic, plain.semantic)
    (tmp_path / "Area_1" / "Area_1_alignmentAngle.txt").write_text("office_1 ninety\n")
    with pytest.raises(ValueError, match=r"Area_1_alignmentAngle.txt:1"):
        s3dis.read_scene(tmp_path, "Area_1_office_1")


def test_synthetic_dataset_with_damage_reads(tmp_path):
    root = write_synthetic_s3dis(
        tmp_path, num_areas=2, rooms_per_area=1, spacing=0.2, alignment_angles=True
    )
    inject_s3dis_damage(root / "Area_1" / "office_1")
    ids = s3dis.list_scenes(root, "Area_1+Area_2")
    assert ids == ["Area_1_office_1", "Area_2_office_1"]
    scene, msgs = _read(root, ids[0])
    assert scene.extra["skipped_lines"] == {"floor_1.txt": [5], "wall_1.txt": [2]}
    assert len(msgs) == 7
    assert scene.extra["alignment_angle_deg"] in (0.0, 90.0, 180.0, 270.0)
    scene2, msgs2 = _read(root, ids[1])
    assert msgs2 == [] and scene2.num_points > 1000
    assert 0.0 <= scene2.feats.min() and scene2.feats.max() <= 1.0


def _damaged_file() -> tuple[bytes, list[list[float] | None]]:
    """Lines of a 6-column file and, per line, the row parse_numeric_table keeps (None:
    skipped / blank / dropped as non-finite)."""
    rng = np.random.default_rng(5)
    good = np.round(rng.uniform(-9, 9, (12, 6)), 2)
    lines: list[bytes] = []
    keep: list[list[float] | None] = []

    def clean(i: int) -> None:
        lines.append(" ".join(f"{v:.2f}" for v in good[i]).encode())
        keep.append([float(v) for v in good[i]])

    for i in range(3):  # a clean stretch (bulk)
        clean(i)
    lines.append(b"1 2 3 185\x00187 9")  # NUL between numbers: repaired
    keep.append([1, 2, 3, 185, 187, 9])
    clean(3)
    lines.append(b"1.2.3 2 3 4 5 6")  # no suspicious byte: its stretch falls back per line
    keep.append(None)
    clean(4)
    lines.append(b"")  # blank: no row
    keep.append(None)
    lines.append(b"1 2 inf 4 5 6")  # numbers after all: non-finite
    keep.append(None)
    clean(5)
    lines.append(b"1 2 3 4 5")  # too few columns: skipped
    keep.append(None)
    for i in range(6, 9):
        clean(i)
    return b"\r\n".join(lines) + b"\r\n", keep


def test_every_damage_in_one_file_keeps_the_good_rows_in_order():
    data, keep = _damaged_file()
    expect = np.array([r for r in keep if r is not None], dtype=np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vals, rep = s3dis.parse_numeric_table(data, 6, "f.txt", nonfinite="drop")
    np.testing.assert_array_equal(vals, expect)
    # 1-based: 4 NUL, 6 "1.2.3", 8 blank, 9 inf (dropped), 11 five values
    assert rep.repaired == [4] and rep.skipped == [6, 9, 11]
    msgs = [str(w.message) for w in caught]
    for line in (4, 6, 11):
        assert any(m.startswith(f"f.txt:{line}: ") for m in msgs), (line, msgs)
    assert any("f.txt" in m and "9" in m and "line" in m for m in msgs[-1:]), msgs


def test_nonfinite_line_is_refused_by_default_naming_its_line():
    data, _ = _damaged_file()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"f\.txt.*\b9\b"):
            s3dis.parse_numeric_table(data, 6, "f.txt")
