"""pcseg.data.superpoints: graph segmentation, label propagation and its quality."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import torch

from pcseg.data import processed
from pcseg.data.dataset import SegmentationDataset, collate
from pcseg.data.superpoints import (
    SuperpointOptions,
    ensure_superpoints,
    propagation_report,
    propagate_labels,
    propagation_quality,
    scene_superpoints,
    segment_graph,
    superpoints,
    superpoints_dir,
)
from pcseg.methods.supervised import SupervisedOnly


def _brute_fh(n: int, edges: np.ndarray, weights: np.ndarray, k: float) -> np.ndarray:
    """Felzenszwalb-Huttenlocher with explicit member sets (no union-find)."""
    comp = [{i} for i in range(n)]
    internal = [0.0] * n
    owner = list(range(n))
    for e in np.argsort(weights, kind="stable"):
        a, b = owner[edges[e, 0]], owner[edges[e, 1]]
        if a == b:
            continue
        w = float(weights[e])
        if w <= min(internal[a] + k / len(comp[a]), internal[b] + k / len(comp[b])):
            comp[a] |= comp[b]
            internal[a] = max(internal[a], internal[b], w)
            for i in comp[b]:
                owner[i] = a
            comp[b] = set()
    first: dict[int, int] = {}
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = first.setdefault(owner[i], len(first))
    return out


def test_segment_graph_hand_worked_chain():
    # a chain 0-1-2-3 with weights 0.1, 5.0, 0.2: k = 1 merges the cheap pairs, not the middle
    edges = np.array([[0, 1], [1, 2], [2, 3]])
    weights = np.array([0.1, 5.0, 0.2])
    np.testing.assert_array_equal(segment_graph(4, edges, weights, k=1.0), [0, 0, 1, 1])
    # a huge k merges everything; k = 0 merges only zero-weight edges (none here)
    np.testing.assert_array_equal(segment_graph(4, edges, weights, k=100.0), [0, 0, 0, 0])
    np.testing.assert_array_equal(segment_graph(4, edges, weights, k=0.0), [0, 1, 2, 3])
    # min_size 3 forces the two pairs together along their cheapest edge
    np.testing.assert_array_equal(segment_graph(4, edges, weights, 1.0, min_size=3), [0] * 4)


def test_segment_graph_matches_a_brute_force_on_random_graphs():
    rng = np.random.default_rng(0)
    for n, k in itertools.product([6, 15, 30], [0.05, 0.5, 3.0]):
        pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
        edges = pairs[rng.random(len(pairs)) < 0.3]
        weights = rng.random(len(edges))
        np.testing.assert_array_equal(
            segment_graph(n, edges, weights, k), _brute_fh(n, edges, weights, k)
        )


def test_superpoints_cut_colour_and_normal_boundaries():
    rng = np.random.default_rng(1)
    g = np.arange(0.025, 1.0, 0.05)  # voxel centres: no voxel holds two parts
    floor = np.array([(x, y, 0.0) for x in g for y in g])
    wall = np.array([(x, 1.025, z) for x in g for z in g + 0.05])  # meets the floor at its edge
    red = floor[:, 0] < 0.5  # two colours on the flat floor
    coords = np.concatenate([floor, wall]) + rng.normal(0, 1e-3, (len(floor) + len(wall), 3))
    feats = np.concatenate(
        [
            np.where(red[:, None], [0.9, 0.1, 0.1], [0.5, 0.5, 0.5]),
            np.tile([0.5, 0.5, 0.5], (len(wall), 1)),
        ]
    )
    part = np.concatenate([np.where(red, 0, 1), np.full(len(wall), 2)])
    sp = superpoints(coords, feats, SuperpointOptions(voxel_size=0.05, k=0.5, min_size=3))
    assert sp.shape == (len(coords),) and sp.dtype == np.int64
    # no superpoint straddles two parts (colour edge and the floor/wall crease are cut)
    for s in np.unique(sp):
        assert len(np.unique(part[sp == s])) == 1
    # and each part is covered by few superpoints (it is not shattered into voxels)
    assert len(np.unique(sp)) <= 12


def test_propagate_labels_against_a_loop():
    rng = np.random.default_rng(2)
    sp = rng.integers(0, 20, 300)
    idx = np.sort(rng.choice(300, 40, replace=False))
    cls = rng.integers(0, 3, 40)
    got = propagate_labels(sp, idx, cls)
    for s in range(20):
        members = np.flatnonzero(sp == s)
        labels = {int(c) for i, c in zip(idx, cls) if sp[i] == s}
        want = labels.pop() if len(labels) == 1 else -1
        for m in members:
            own = cls[idx == m]
            assert got[m] == (own[0] if len(own) else want)
    assert (propagate_labels(sp, idx[:0], cls[:0]) == -1).all()


def test_propagation_quality_hand_worked():
    prop = np.array([0, 0, 1, -1, 2, 2])
    sem = np.array([0, 1, 1, 1, -1, 2])
    q = propagation_quality(prop, sem)
    # scored: 5 points (one ignored); labelled and scored: 4, right: 3
    assert q == {"precision": 0.75, "coverage": 0.8, "labelled": 4.0}


# ----------------------------------------------------------------------------- in training
@pytest.fixture
def rooms_copy(prepared_rooms, tmp_path):
    """A writable copy of the shared processed rooms (the superpoint cache writes into it)."""
    out = tmp_path / "processed"
    shutil.copytree(prepared_rooms, out)
    return out


def test_scene_superpoints_are_computed_once_and_cached(rooms_copy):
    opts = SuperpointOptions(voxel_size=0.1, k=0.5)
    name = processed.split_scenes(rooms_copy, "Area_1")[0]
    folder = ensure_superpoints(rooms_copy, [name], opts, progress=False)
    path = folder / f"{name}.npy"
    assert folder == superpoints_dir(rooms_copy, opts) and path.is_file()
    assert (folder / "options.json").is_file()
    scene = processed.read_scene(rooms_copy, name)
    np.testing.assert_array_equal(np.load(path), superpoints(scene.coords, scene.feats, opts))
    stamp = path.stat().st_mtime_ns
    np.testing.assert_array_equal(scene_superpoints(rooms_copy, name, opts), np.load(path))
    assert path.stat().st_mtime_ns == stamp  # read back, not recomputed
    # other options live in another folder
    assert superpoints_dir(rooms_copy, SuperpointOptions(k=2.0)) != folder


def test_dataset_gives_propagated_labels_per_voxel(rooms_copy):
    opts = SuperpointOptions(voxel_size=0.1, k=0.5)
    ds = SegmentationDataset(rooms_copy, "Area_1", label_spec="1%", superpoints=opts)
    name = ds.scene_names[0]
    scene, weak, cls = ds.load_weak(name)
    sp = scene_superpoints(rooms_copy, name, opts)
    want_points = propagate_labels(sp, weak, cls)
    np.testing.assert_array_equal(ds.propagated_labels(name), want_points)
    # most points of a scene get a label, and nearly all of those are right
    q = propagation_quality(want_points, scene.semantic)
    assert q["coverage"] > 0.3 and q["precision"] > 0.85
    sample = ds.get_sample(0, np.random.default_rng(0))
    spread, own = sample["propagated_labels"], sample["weak_labels"]
    assert spread.shape == own.shape
    assert ((spread >= 0) & (own >= 0)).sum() == 0  # a weakly labelled voxel keeps its own
    assert (spread >= 0).sum() > 5 * (own >= 0).sum()
    batch = collate([sample, ds.get_sample(1, np.random.default_rng(1))])
    assert batch["propagated_labels"].shape == batch["weak_labels"].shape
    # a dataset without superpoints has no such key, and says why when asked
    plain = SegmentationDataset(rooms_copy, "Area_1", label_spec="1%")
    assert "propagated_labels" not in plain.get_sample(0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="without superpoints"):
        plain.propagated_labels(name)


def test_propagated_term_of_the_supervised_loss_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(8, 3, requires_grad=True)
    weak = torch.tensor([0, -1, -1, 2, -1, -1, -1, -1])
    prop = torch.tensor([-1, 1, 1, -1, 0, -1, 2, -1])
    batch = {"weak_labels": weak, "propagated_labels": prop, "labels": torch.zeros(8).long()}
    out = SupervisedOnly(3, 4, propagated_weight=0.5)(logits, torch.zeros(8, 4), batch)
    ce_weak = sum(-torch.log_softmax(logits[i], 0)[weak[i]] for i in (0, 3)) / 2
    ce_prop = sum(-torch.log_softmax(logits[i], 0)[prop[i]] for i in (1, 2, 4, 6)) / 4
    torch.testing.assert_close(out["loss_prop"], ce_prop)
    torch.testing.assert_close(out["loss"], ce_weak + 0.5 * ce_prop)
    assert float(out["diag/propagated_frac"]) == 0.5
    # weight 0 is today's loss; a weight without propagated labels names the setting
    plain = SupervisedOnly(3, 4)(logits, torch.zeros(8, 4), batch)
    torch.testing.assert_close(plain["loss"], ce_weak)
    del batch["propagated_labels"]
    with pytest.raises(ValueError, match="data.superpoints"):
        SupervisedOnly(3, 4, propagated_weight=0.5)(logits, torch.zeros(8, 4), batch)


def test_erda_with_propagated_labels_leaves_them_out_of_its_unlabelled_term():
    from pcseg.methods.erda import ERDA

    torch.manual_seed(0)
    logits = torch.randn(10, 3, requires_grad=True)
    feats = torch.randn(10, 4)
    weak = torch.tensor([0, 1, 2, -1, -1, -1, -1, -1, -1, -1])
    prop = torch.tensor([-1, -1, -1, 1, 1, 0, -1, -1, -1, -1])
    batch = {"weak_labels": weak, "propagated_labels": prop, "labels": torch.zeros(10).long()}
    with_prop = ERDA(3, 4, propagated_weight=1.0)
    without = ERDA(3, 4)
    without.load_state_dict(with_prop.state_dict())
    for m in (with_prop, without):  # BatchNorm on running statistics: no batch coupling
        m.head.eval()
    out = with_prop(logits, feats, batch)
    # the same ERDA term as a plain ERDA on the batch where voxels 3-5 are simply absent
    keep = torch.tensor([0, 1, 2, 6, 7, 8, 9])
    sub = {"weak_labels": weak[keep], "labels": torch.zeros(7).long()}
    ref = without(logits[keep], feats[keep], sub)
    torch.testing.assert_close(out["loss_erda"], ref["loss_erda"])
    ce_prop = sum(-torch.log_softmax(logits[i], 0)[prop[i]] for i in (3, 4, 5)) / 3
    torch.testing.assert_close(out["loss_prop"], ce_prop)
    torch.testing.assert_close(out["loss"], ref["loss"] + ce_prop)


def test_propagation_report_pools_scenes_as_a_loop_does(rooms_copy):
    opts = SuperpointOptions(voxel_size=0.1, k=0.5)
    names = processed.split_scenes(rooms_copy, "Area_1")
    rep = propagation_report(rooms_copy, names, "1%", opts, progress=False)
    got = right = scored = weak = 0
    for name in names:
        scene = processed.read_scene(rooms_copy, name)
        idx = processed.read_labels(rooms_copy, "1%", name)
        prop = propagate_labels(scene_superpoints(rooms_copy, name, opts), idx, scene.semantic[idx])
        ok = (prop >= 0) & (scene.semantic >= 0)
        got += ok.sum()
        right += (prop[ok] == scene.semantic[ok]).sum()
        scored += (scene.semantic >= 0).sum()
        weak += len(idx)
    assert rep["weak"] == weak and rep["scenes"] == len(names)
    assert rep["coverage"] == pytest.approx(got / scored)
    assert rep["precision"] == pytest.approx(right / got)
    assert 0 <= rep["conflicting"] < 0.5


def test_superpoints_command_reports_and_writes_json(rooms_copy, tmp_path, capsys):
    from pcseg.cli.main import main

    out = tmp_path / "report.json"
    rc = main(
        [
            "superpoints",
            str(rooms_copy),
            "--split",
            "Area_1",
            "--labels",
            "1%",
            "--voxel-size",
            "0.1",
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert f"spread to {100 * rep['coverage']:.1f} %" in text
    assert rep["options"]["voxel_size"] == 0.1 and rep["labels"] == "1%"
