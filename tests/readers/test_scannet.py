"""ScanNet reader: exact labels on synthetic meshes, label-tsv line endings (real files),
splits, test scenes, error cases and limited-annotation import."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pcseg.data.classes import SCANNET_CLASSES
from pcseg.readers import scannet
from pcseg.readers.common import DataWarning
from pcseg.readers.synthetic import (
    make_scannet_scene,
    write_scannet_label_tsv,
    write_scannet_scene,
    write_synthetic_scannet,
)

TSV = "scannetv2-labels.combined.tsv"


def _scene(tmp_path: Path, line_ending: str = "\r\n", sid: str = "scene0000_00"):
    rng = np.random.default_rng(7)
    syn = make_scannet_scene(rng, sid, spacing=0.15)
    write_scannet_scene(tmp_path / "scans" / sid, syn)
    write_scannet_label_tsv(tmp_path / TSV, line_ending)
    return syn


@pytest.mark.parametrize("line_ending", ["\n", "\r\n", "\r\r\n"])
def test_scene_roundtrip_exact(tmp_path, line_ending):
    syn = _scene(tmp_path, line_ending)
    assert TSV.encode() and (line_ending.encode() + b"1\twall") in (tmp_path / TSV).read_bytes()
    scene = scannet.read_scene(tmp_path, "scene0000_00")
    assert scene.num_points == len(syn.xyz) == scene.extra["num_vertices"]
    np.testing.assert_array_equal(scene.coords, syn.xyz)
    np.testing.assert_array_equal(scene.feats, (syn.rgb / 255.0).astype(np.float32))
    np.testing.assert_array_equal(scene.semantic, syn.semantic)
    np.testing.assert_array_equal(scene.instance, syn.instance)
    assert scene.semantic.dtype == np.int64 and scene.instance.dtype == np.int64
    # hand-checked classes through the NYU40 ids: group label -> expected class name / ignored
    expect = {
        "floor": "floor",
        "wall": "wall",
        "office chair": "chair",
        "chair": "chair",
        "desk": "desk",
        "kitchen cabinet": "cabinet",
        "bookshelf": "bookshelf",
        "trash can": "otherfurniture",
        "door": "door",
        "table": "table",
        "ceiling": None,
        "object": None,
    }
    seg_to_group = {s: g for g in syn.seg_groups for s in g["segments"]}
    for g in syn.seg_groups:
        verts = np.isin(syn.seg_indices, g["segments"])
        name = expect[g["label"]]
        want = -1 if name is None else SCANNET_CLASSES.index(name)
        assert (scene.semantic[verts] == want).all(), g["label"]
        assert (scene.instance[verts] == g["objectId"]).all()
    unannotated = np.array([s not in seg_to_group for s in syn.seg_indices])
    assert unannotated.sum() > 0
    assert (scene.semantic[unannotated] == -1).all() and (scene.instance[unannotated] == -1).all()


def test_align_and_test_scene(tmp_path):
    syn = _scene(tmp_path)
    aligned = scannet.read_scene(tmp_path, "scene0000_00", scannet.Options(align=True))
    m = np.array(syn.axis_alignment).reshape(4, 4)
    xyz1 = np.c_[syn.xyz.astype(np.float64), np.ones(len(syn.xyz))]
    np.testing.assert_allclose(aligned.coords, (xyz1 @ m.T)[:, :3], atol=1e-5)
    test = make_scannet_scene(np.random.default_rng(1), "scene0707_00", spacing=0.2)
    write_scannet_scene(tmp_path / "scans_test" / "scene0707_00", test, with_labels=False)
    t = scannet.read_scene(tmp_path, "scene0707_00")
    assert t.num_points == len(test.xyz)
    assert (t.semantic == -1).all() and (t.instance == -1).all() and not t.has_labels
    assert t.extra["split_dir"] == "scans_test" and not t.extra["has_labels"]


def test_synthetic_dataset_splits(tmp_path):
    root = write_synthetic_scannet(tmp_path, spacing=0.2)
    assert scannet.list_scenes(root, "train") == ["scene0000_00", "scene0001_00"]
    assert scannet.list_scenes(root, "val") == ["scene0011_00"]
    assert scannet.list_scenes(root, "test") == ["scene0707_00"]
    assert scannet.list_scenes(root, "trainval") == ["scene0000_00", "scene0001_00", "scene0011_00"]
    assert len(scannet.list_scenes(root, "all")) == 4
    for sid in scannet.list_scenes(root, "all"):
        s = scannet.read_scene(root, sid)
        assert s.has_labels == (sid != "scene0707_00")
    # a listed scene that is not on disk is skipped with a warning
    (root / "meta" / "scannetv2_val.txt").write_text("scene0011_00\r\nscene0012_00\r\n")
    with pytest.warns(DataWarning, match="1 of 2 scenes"):
        assert scannet.list_scenes(root, "val") == ["scene0011_00"]
    (root / "meta" / "scannetv2_val.txt").write_text("scene0011_00\nscene11\n")
    with pytest.warns(DataWarning, match=r"scannetv2_val.txt:2: 'scene11' .*entry skipped"):
        assert scannet.list_scenes(root, "val") == ["scene0011_00"]
    (root / "meta" / "scannetv2_val.txt").unlink()
    with pytest.raises(ValueError, match="scannetv2_val.txt not found"):
        scannet.list_scenes(root, "val")
    with pytest.raises(ValueError, match="unknown ScanNet split"):
        scannet.list_scenes(root, "training")


def _naive_rows(path: Path) -> list[list[bytes]]:
    """Independent parse: split on any CR* LF, keep cells verbatim (no stripping)."""
    lines = [ln for ln in re.split(rb"\r*\n", path.read_bytes()) if ln.strip()]
    return [ln.split(b"\t") for ln in lines[1:]]


def test_real_label_tsv_line_endings(real_data):
    meta = real_data / "scannet" / "meta"
    orig = meta / TSV
    lf = meta / "variants" / "scannetv2-labels.combined.lf.tsv"
    crcrlf = meta / "variants" / "scannetv2-labels.combined.crcrlf.tsv"
    assert (
        b"\r\n" in orig.read_bytes()
        and b"\r" not in lf.read_bytes()
        and b"\r\r\n" in crcrlf.read_bytes()
    )
    tables = {p.name: scannet.read_label_table(p) for p in (orig, lf, crcrlf)}
    assert [len(t) for t in tables.values()] == [607, 607, 607]
    maps = {p.name: scannet.read_label_map(p) for p in (orig, lf, crcrlf)}
    m0 = maps[orig.name]
    assert len(m0) == 607 and maps[lf.name] == m0
    # the \r\r\n copy renamed raw_category 'stick' (nyu40 40) to 'object' (already 40)
    assert set(m0.items()) - set(maps[crcrlf.name].items()) == {("stick", 40)}
    assert set(maps[crcrlf.name].items()) - set(m0.items()) == set()
    # independent check of values against a naive parse of the original
    naive = {r[1].decode().strip(): int(r[4]) for r in _naive_rows(orig)}
    assert naive == m0
    assert (
        m0["wall"] == 1 and m0["chair"] == 5 and m0["books"] == 23 and m0["wardrobe cabinet"] == 39
    )
    # the two rows that differ byte-wise between the original and the \r\r\n copy
    a, b = _naive_rows(orig), _naive_rows(crcrlf)
    changed = [(ra[0], ra, rb) for ra, rb in zip(a, b) if ra != rb]
    assert [c[0] for c in changed] == [b"1177", b"1163"]
    assert (
        changed[0][1][2] == b"wardrobe " and changed[0][2][2] == b"wardrobe"
    )  # trailing space gone
    assert changed[1][1][1] == b"stick" and changed[1][2][1] == b"object"
    # the LF copy only dropped the empty trailing cells of one row (id 363)
    dropped = [ra[0] for ra, rl in zip(a, _naive_rows(lf)) if ra != rl]
    assert dropped == [b"363"]
    # stripped tables agree except that one raw_category
    for r0, r2 in zip(tables[orig.name], tables[crcrlf.name]):
        diff = {k for k in r0 if k != "_line" and r0[k] != r2[k]}
        assert diff == (
            set() if r0["id"] != "1163" or r0["raw_category"] != "stick" else {"raw_category"}
        )


def test_label_table_errors(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_bytes(b"id\traw_category\tnyu40id\r\n1\tchair \t5\r\n2\tchair\t5\r\n\r\n")
    assert scannet.read_label_map(p) == {"chair": 5}
    p.write_bytes(b"id\traw_category\tnyu40id\n1\tchair\t5\n2\tchair\t7\n")
    with pytest.raises(
        ValueError, match=r"t.tsv:3: raw_category 'chair' maps to 7, but line 2 maps it to 5"
    ):
        scannet.read_label_map(p)
    p.write_bytes(b"id\traw_category\tnyu40id\n1\tchair\tfive\n")
    with pytest.raises(ValueError, match=r"t.tsv:2: nyu40id 'five' is not an integer"):
        scannet.read_label_map(p)
    p.write_bytes(b"id\traw_category\tnyu40id\n1\tchair\t5\tx\n")
    with pytest.raises(ValueError, match=r"t.tsv:2: 4 tab-separated cells, header has 3"):
        scannet.read_label_map(p)
    p.write_bytes(b"id\tname\tnyu40id\n1\tchair\t5\n")
    with pytest.raises(ValueError, match="columns 'raw_category' and 'nyu40id' required"):
        scannet.read_label_map(p)
    p.write_bytes(b"id\traw_category\tnyu40id\r1\tdesk\t14\r")  # old-Mac CR endings
    assert scannet.read_label_map(p) == {"desk": 14}
    # mixed endings in one file (a bare CR inside an LF file ends a line too) and cells quoted by
    # a spreadsheet export; line numbers count every kind of line break
    p.write_bytes(
        b'id\traw_category\tnyu40id\n1\t"desk"\t14\r2\t"tv ""stand"""\t" 39 "\r\n'
        b"3\tlamp\t35\r\r\n4\tlamp\tx\n"
    )
    with pytest.raises(ValueError, match=r"t.tsv:5: nyu40id 'x' is not an integer"):
        scannet.read_label_map(p)
    p.write_bytes(p.read_bytes().replace(b"lamp\tx", b"sofa\t6"))
    assert scannet.read_label_map(p) == {"desk": 14, 'tv "stand"': 39, "lamp": 35, "sofa": 6}


def test_scene_errors_overlaps_unknown_categories(tmp_path):
    syn = _scene(tmp_path)
    d = tmp_path / "scans" / "scene0000_00"
    agg_path = d / "scene0000_00.aggregation.json"
    agg = json.loads(agg_path.read_text())
    # move one segment of the first group also into the last group: last group wins
    seg = agg["segGroups"][0]["segments"][0]
    agg["segGroups"][-1]["segments"].append(seg)
    agg["segGroups"].append(
        {
            "id": 99,
            "objectId": 99,
            "segments": [agg["segGroups"][1]["segments"][0]],
            "label": "flux capacitor",
        }
    )
    agg_path.write_text(json.dumps(agg))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = scannet.read_scene(tmp_path, "scene0000_00")
    msgs = [str(w.message) for w in caught]
    assert any("'flux capacitor'" in m for m in msgs) and any(
        "2 segments belong to several" in m for m in msgs
    )
    assert s.extra["overlapping_segments"] == 2
    last = agg["segGroups"][-2]
    moved = syn.seg_indices == seg
    assert (s.instance[moved] == last["objectId"]).all()
    assert (s.semantic[moved] == syn.semantic[syn.instance == last["objectId"]][0]).all()
    unknown = syn.seg_indices == agg["segGroups"][1]["segments"][0]
    assert (s.semantic[unknown] == -1).all() and (s.instance[unknown] == 99).all()
    others = ~moved & ~unknown
    np.testing.assert_array_equal(s.semantic[others], syn.semantic[others])

    segs_path = d / "scene0000_00_vh_clean_2.0.010000.segs.json"
    segs = json.loads(segs_path.read_text())
    segs["segIndices"] = segs["segIndices"][:-3]
    segs_path.write_text(json.dumps(segs))
    with pytest.raises(
        ValueError,
        match=rf"segs.json: {len(syn.xyz) - 3} segIndices, mesh .* has {len(syn.xyz)} vertices",
    ):
        scannet.read_scene(tmp_path, "scene0000_00")
    segs_path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot parse JSON"):
        scannet.read_scene(tmp_path, "scene0000_00")
    (tmp_path / TSV).unlink()
    with pytest.raises(ValueError, match="scene id"):
        scannet.read_scene(tmp_path, "scene0_0")
    with pytest.raises(ValueError, match="not found"):
        scannet.read_scene(tmp_path, "scene0999_00")
    (d / "scene0000_00_vh_clean_2.ply").write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n"
    )
    with pytest.raises(
        ValueError, match=r"vertex properties \['y', 'z', 'red', 'green', 'blue'\] missing"
    ):
        scannet.read_scene(tmp_path, "scene0000_00")


def test_aggregation_must_match_the_low_res_segments(tmp_path):
    """A labelled scene never silently becomes unlabelled, and the high-resolution aggregation
    (segment ids of another mesh) is never paired with the _vh_clean_2 segments."""
    syn = _scene(tmp_path)
    d = tmp_path / "scans" / "scene0000_00"
    agg_path = d / "scene0000_00.aggregation.json"
    agg = json.loads(agg_path.read_text())
    assert agg["segmentsFile"] == "scannet.scene0000_00_vh_clean_2.0.010000.segs.json"
    # labels with stray spaces still map (the tsv side is stripped too)
    agg["segGroups"][0]["label"] = f" {agg['segGroups'][0]['label']} "
    agg_path.write_text(json.dumps(agg))
    np.testing.assert_array_equal(
        scannet.read_scene(tmp_path, "scene0000_00").semantic, syn.semantic
    )
    # an aggregation of the high-resolution mesh is refused, naming both files
    agg["segmentsFile"] = "scannet.scene0000_00_vh_clean.segs.json"
    agg_path.write_text(json.dumps(agg))
    with pytest.raises(
        ValueError,
        match=r"aggregation.json: segmentsFile 'scannet.scene0000_00_vh_clean.segs.json' "
        r"does not match scene0000_00_vh_clean_2.0.010000.segs.json",
    ):
        scannet.read_scene(tmp_path, "scene0000_00")
    # under scans/ a missing aggregation is an error (not an unlabelled scene), and the
    # high-resolution file next to it is not taken as a fallback
    agg_path.rename(d / "scene0000_00_vh_clean.aggregation.json")
    with pytest.raises(
        ValueError,
        match=r"scene0000_00.aggregation.json not found: every scene under scans/ "
        r"is annotated .*_vh_clean.aggregation.json annotates the high-resolution",
    ):
        scannet.read_scene(tmp_path, "scene0000_00")
    (d / "scene0000_00_vh_clean.aggregation.json").unlink()
    with pytest.raises(
        ValueError,
        match=r"not found: every scene under scans/ is annotated \(partial download\?\); "
        r"unlabelled scenes belong in scans_test/",
    ):
        scannet.read_scene(tmp_path, "scene0000_00")


def test_load_limited_annotation(tmp_path):
    p = tmp_path / "points20"
    torch.save(
        {
            "scene0000_00": np.array([5, 1, 3]),
            "scene0001_00": torch.tensor([2, 0], dtype=torch.int64),
            "scene0002_00": np.array([], dtype=np.int64),
        },
        p,
    )
    out = scannet.load_limited_annotation(p, {"scene0000_00": 6, "scene0001_00": 3})
    assert sorted(out) == ["scene0000_00", "scene0001_00", "scene0002_00"]
    np.testing.assert_array_equal(out["scene0000_00"], [1, 3, 5])
    np.testing.assert_array_equal(out["scene0001_00"], [0, 2])
    assert all(v.dtype == np.int64 for v in out.values())
    with pytest.raises(ValueError, match=r"scene0000_00': index 5 out of range for 5 points"):
        scannet.load_limited_annotation(p, {"scene0000_00": 5})
    torch.save({"scene0000_00": np.array([1, -2])}, p)
    with pytest.raises(ValueError, match="negative index -2"):
        scannet.load_limited_annotation(p)
    torch.save({"scene0000_00": np.array([1.5, 2.0])}, p)
    with pytest.raises(ValueError, match="1-D integer array"):
        scannet.load_limited_annotation(p)
    torch.save({"scene0000_00": np.array([[1, 2]])}, p)
    with pytest.raises(ValueError, match="1-D integer array"):
        scannet.load_limited_annotation(p)
    torch.save([1, 2], p)
    with pytest.raises(ValueError, match="expected a mapping"):
        scannet.load_limited_annotation(p)
    torch.save({"room1": np.array([1])}, p)
    with pytest.raises(ValueError, match="not a ScanNet scene id"):
        scannet.load_limited_annotation(p)
    torch.save({"scene0000_00": np.array([4, 4, 1])}, p)
    with pytest.warns(DataWarning, match="1 duplicated vertex indices"):
        np.testing.assert_array_equal(scannet.load_limited_annotation(p)["scene0000_00"], [1, 4])
    p.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read limited-annotation file"):
        scannet.load_limited_annotation(p)


SID = "scene0000_00"


def _labelled_scene(tmp_path: Path):
    syn = make_scannet_scene(np.random.default_rng(7), SID, spacing=0.15)
    write_scannet_scene(tmp_path / "scans" / SID, syn)
    write_scannet_label_tsv(tmp_path / "scannetv2-labels.combined.tsv", "\n")
    return syn, tmp_path / "scans" / SID


def test_overlapping_groups_last_group_wins(tmp_path):
    syn, d = _labelled_scene(tmp_path)
    agg_path = d / f"{SID}.aggregation.json"
    agg = json.loads(agg_path.read_text())
    groups = agg["segGroups"]
    # two labelled groups of different classes; the later one also claims a segment of the
    # earlier one
    first, last = 0, len(groups) - 1
    cls = {
        g["objectId"]: int(syn.semantic[syn.instance == g["objectId"]][0])
        for g in groups
        if (syn.instance == g["objectId"]).any()
    }
    while groups[first]["objectId"] not in cls or cls[groups[first]["objectId"]] < 0:
        first += 1
    while groups[last]["objectId"] not in cls or cls[groups[last]["objectId"]] in (
        -1,
        cls[groups[first]["objectId"]],
    ):
        last -= 1
    assert first < last
    stolen = groups[first]["segments"][0]
    groups[last]["segments"].append(stolen)
    agg_path.write_text(json.dumps(agg))
    with pytest.warns(DataWarning, match=r"aggregation.json: 1 segments belong to several"):
        scene = scannet.read_scene(tmp_path, SID)
    on = syn.seg_indices == stolen
    assert on.any()
    expect_sem, expect_inst = syn.semantic.copy(), syn.instance.copy()
    expect_sem[on] = cls[groups[last]["objectId"]]
    expect_inst[on] = groups[last]["objectId"]
    np.testing.assert_array_equal(scene.semantic, expect_sem)
    np.testing.assert_array_equal(scene.instance, expect_inst)
    assert scene.extra["overlapping_segments"] == 1 and scene.extra["has_labels"]


def test_missing_and_malformed_label_files_are_named(tmp_path):
    _, d = _labelled_scene(tmp_path)
    segs = d / f"{SID}_vh_clean_2.0.010000.segs.json"
    agg = d / f"{SID}.aggregation.json"
    good_segs, good_agg = segs.read_text(), agg.read_text()
    segs.write_text(json.dumps({"sceneId": SID}))
    with pytest.raises(ValueError, match=rf"{segs.name}: no 'segIndices' key"):
        scannet.read_scene(tmp_path, SID)
    segs.unlink()
    with pytest.raises(ValueError, match=rf"{segs.name} not found \(needed with {agg.name}\)"):
        scannet.read_scene(tmp_path, SID)
    segs.write_text(good_segs)
    agg.write_text(json.dumps({"sceneId": SID}))
    with pytest.raises(ValueError, match=rf"{agg.name}: no 'segGroups' key"):
        scannet.read_scene(tmp_path, SID)
    agg.write_text(good_agg)
    assert scannet.read_scene(tmp_path, SID).extra["has_labels"]
    (d / f"{SID}_vh_clean_2.ply").unlink()
    with pytest.raises(ValueError, match=rf"{SID}_vh_clean_2.ply not found"):
        scannet.read_scene(tmp_path, SID)
    with pytest.raises(ValueError, match=r"'scene12_3' is not of the form sceneXXXX_YY"):
        scannet.read_scene(tmp_path, "scene12_3")
    with pytest.raises(ValueError, match=r"'scene0001_00' not found under .*scans or .*scans_test"):
        scannet.read_scene(tmp_path, "scene0001_00")


def test_unlabelled_test_scene_has_no_labels(tmp_path):
    syn = make_scannet_scene(np.random.default_rng(3), SID, spacing=0.2)
    write_scannet_scene(tmp_path / "scans_test" / SID, syn, with_labels=False)
    scene = scannet.read_scene(tmp_path, SID)
    assert (scene.semantic == -1).all() and (scene.instance == -1).all()
    assert scene.num_points == len(syn.xyz) and not scene.extra["has_labels"]
    assert scene.extra["split_dir"] == "scans_test" and scene.extra["overlapping_segments"] == 0


def test_hostile_mesh_header_is_named_before_plyfile_reads(tmp_path, monkeypatch):
    import plyfile

    from pcseg.io.point_file import PointFileError

    _scene(tmp_path)
    ply = tmp_path / "scans" / "scene0000_00" / "scene0000_00_vh_clean_2.ply"
    raw = ply.read_bytes()
    n = int(re.search(rb"element vertex (\d+)\n", raw)[1])
    ply.write_bytes(raw.replace(b"element vertex %d\n" % n, b"element vertex 4000000000\n"))

    def boom(*a, **k):
        raise AssertionError("plyfile was asked to read a hostile header")

    monkeypatch.setattr(plyfile.PlyData, "read", boom)
    with pytest.raises(
        PointFileError,
        match=re.escape(str(ply)) + r": damaged PLY header: "
        r"element 'vertex' claims 4,000,000,000 records",
    ):
        scannet.read_scene(tmp_path, "scene0000_00")
