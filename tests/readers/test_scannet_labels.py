"""pcseg.readers.scannet.read_scene: the label files of a scene (aggregation + segments)
that test_scannet.py does not cover: overlapping segment groups (the last group wins,
checked vertex by vertex against the written segments) and each missing / malformed file
named in the error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pcseg.readers import scannet
from pcseg.readers.common import DataWarning
from pcseg.readers.synthetic import make_scannet_scene, write_scannet_label_tsv, write_scannet_scene

SID = "scene0000_00"


def _scene(tmp_path: Path):
    syn = make_scannet_scene(np.random.default_rng(7), SID, spacing=0.15)
    write_scannet_scene(tmp_path / "scans" / SID, syn)
    write_scannet_label_tsv(tmp_path / "scannetv2-labels.combined.tsv", "\n")
    return syn, tmp_path / "scans" / SID


def test_overlapping_groups_last_group_wins(tmp_path):
    syn, d = _scene(tmp_path)
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
    _, d = _scene(tmp_path)
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
