"""Weak-label specs: counts per class / scene checked by brute force, seeding, real scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pcseg.data.scene import Scene
from pcseg.data.weak_labels import (
    LabelSpec,
    candidate_points,
    import_indices,
    load_limited_annotation,
    parse_spec,
    sample_weak_labels,
    spec_dirname,
)


def _scene(name: str = "room_1", n: int = 30000, seed: int = 0) -> Scene:
    """A room with 6 classes of very different sizes (class 5 has a handful of points) and
    instances."""
    rng = np.random.default_rng(seed)
    coords = (rng.random((n, 3)) * [6.0, 5.0, 3.0]).astype(np.float32)
    p = np.array([0.5, 0.3, 0.15, 0.04, 0.0099, 0.0001])
    semantic = rng.choice(6, size=n, p=p / p.sum()).astype(np.int64)
    semantic[rng.random(n) < 0.1] = -1
    instance = np.where(semantic >= 0, semantic * 10 + (coords[:, 0] > 3).astype(np.int64), -1)
    instance[semantic == 2] = -1  # a stuff class without instances
    return Scene(
        name=name,
        dataset="s3dis",
        coords=coords,
        feats=rng.random((n, 3)).astype(np.float32),
        semantic=semantic,
        instance=instance,
    )


def _floor(c: np.ndarray, vs: float) -> np.ndarray:
    return np.floor(c.astype(np.float64) / vs).astype(np.int64)


@pytest.mark.parametrize(
    "spec,name,dirname,kind",
    [
        ("1%", "1%", "1pct", "ratio"),
        ("0.1%", "0.1%", "0.1pct", "ratio"),
        ("0.01%", "0.01%", "0.01pct", "ratio"),
        ("1pct", "1%", "1pct", "ratio"),
        ("sqn1%", "sqn1%", "sqn1pct", "sqn"),
        ("sqn0.1pct", "sqn0.1%", "sqn0.1pct", "sqn"),
        ("1pt", "1pt", "1pt", "npt"),
        ("20pt", "20pt", "20pt", "npt"),
        ("200pps", "200pps", "200pps", "pps"),
        ("click", "click", "click", "click"),
        ("FULL", "full", "full", "full"),
        ("import:points20", "import:points20", "import_points20", "import"),
    ],
)
def test_parse_spec(spec, name, dirname, kind):
    sp = parse_spec(spec)
    assert (sp.name, sp.kind, spec_dirname(spec)) == (name, kind, dirname)
    assert parse_spec(sp.name) == sp and parse_spec(sp.dirname) == sp


@pytest.mark.parametrize(
    "bad", ["", "1", "abc", "0%", "101%", "0pt", "-1pt", "1.5pt", "sqn", "import:", "1 %x"]
)
def test_parse_spec_errors(bad):
    with pytest.raises(ValueError, match="grammar"):
        parse_spec(bad)


def _class_counts(idx: np.ndarray, semantic: np.ndarray) -> dict[int, int]:
    ks, cs = np.unique(semantic[idx], return_counts=True)
    return dict(zip(ks.tolist(), cs.tolist()))


def _pool_counts(
    scene: Scene, voxel_size: float | None, seed: int
) -> tuple[np.ndarray, dict[int, int]]:
    """Candidate pool, checked independently: labelled points, one per occupied voxel."""
    lab = np.flatnonzero(scene.semantic >= 0)
    cand = candidate_points(scene, seed, voxel_size)
    assert set(cand.tolist()) <= set(lab.tolist())
    if voxel_size:
        vox = _floor(scene.coords[cand], voxel_size)
        assert len(np.unique(vox, axis=0)) == len(cand)  # distinct voxels
        assert len(cand) == len(
            np.unique(_floor(scene.coords[lab], voxel_size), axis=0)
        )  # all voxels
    else:
        np.testing.assert_array_equal(cand, lab)
    return cand, _class_counts(cand, scene.semantic)


@pytest.mark.parametrize("voxel_size", [None, 0.1])
def test_counts_per_spec_bruteforce(voxel_size):
    sc = _scene()
    cand, nk = _pool_counts(sc, voxel_size, seed=3)
    assert 5 in nk and nk[5] < 20  # the rare class is present, with fewer than 20 points
    n = len(cand)
    expect = {
        "1%": {k: max(int(c * 0.01), 1) for k, c in nk.items()},
        "0.1%": {k: max(int(c * 0.001), 1) for k, c in nk.items()},
        "0.01%": {k: 1 for k in nk},
        "1pt": {k: 1 for k in nk},
        "20pt": {k: min(20, c) for k, c in nk.items()},
    }
    for spec, per_class in expect.items():
        idx = sample_weak_labels(sc, spec, seed=3, voxel_size=voxel_size)
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
        assert set(idx.tolist()) <= set(cand.tolist()), spec
        assert _class_counts(idx, sc.semantic) == per_class, spec
    for spec, total in {
        "sqn1%": max(int(n * 0.01), 1),
        "sqn0.01%": max(int(n * 0.0001), 1),
        "200pps": 200,
        "100000pps": n,
    }.items():
        idx = sample_weak_labels(sc, spec, seed=3, voxel_size=voxel_size)
        assert len(idx) == total and set(idx.tolist()) <= set(cand.tolist()), spec
    # click: one point per instance present in the pool
    idx = sample_weak_labels(sc, "click", seed=3, voxel_size=voxel_size)
    inst_pool = {int(i) for i in sc.instance[cand] if i >= 0}
    assert sorted(sc.instance[idx].tolist()) == sorted(inst_pool)
    assert np.all(sc.semantic[idx] >= 0)
    # full: every labelled raw point, whatever the voxel size
    np.testing.assert_array_equal(
        sample_weak_labels(sc, "full", 3, voxel_size), np.flatnonzero(sc.semantic >= 0)
    )


def test_voxel_level_at_most_one_point_per_voxel():
    sc = _scene(n=20000, seed=1)
    for spec in ("1%", "sqn1%", "5pt", "300pps", "click"):
        idx = sample_weak_labels(sc, spec, seed=0, voxel_size=0.2)
        vox = _floor(sc.coords[idx], 0.2)
        assert len(np.unique(vox, axis=0)) == len(idx), spec
    # raw-level draws do put several points in one voxel at this density
    idx = sample_weak_labels(sc, "sqn10%", seed=0, voxel_size=None)
    assert len(np.unique(_floor(sc.coords[idx], 0.2), axis=0)) < len(idx)


def test_seeding_reproducible_and_order_independent():
    a, b = (
        _scene("Area_1_office_1", seed=1),
        _scene("Area_1_office_2", seed=1),
    )  # same points, other name
    for spec in ("1%", "sqn1%", "1pt", "20pps", "click"):
        x1 = sample_weak_labels(a, spec, 7, 0.05)
        sample_weak_labels(b, spec, 7, 0.05)  # processing another scene first changes nothing
        np.testing.assert_array_equal(x1, sample_weak_labels(a, spec, 7, 0.05))
        assert not np.array_equal(x1, sample_weak_labels(a, spec, 8, 0.05)), spec
        assert not np.array_equal(x1, sample_weak_labels(b, spec, 7, 0.05)), (
            spec
        )  # name enters the seed


def test_unlabelled_scene_and_import_spec():
    sc = _scene(n=500)
    sc.semantic[:] = -1
    for spec in ("1%", "1pt", "click", "full", "20pps"):
        assert sample_weak_labels(sc, spec, 0, 0.05).size == 0
    with pytest.raises(ValueError, match="import_indices"):
        sample_weak_labels(sc, "import:points20", 0)


def test_import_indices(tmp_path):
    out = import_indices(
        {"scene0000_00": [5, 3, 3, 9], "scene0001_00": np.array([], dtype=np.int64)},
        num_points={"scene0000_00": 10},
    )
    np.testing.assert_array_equal(out["scene0000_00"], [3, 5, 9])
    assert out["scene0001_00"].dtype == np.int64 and out["scene0001_00"].size == 0
    with pytest.raises(ValueError, match="scene0000_00.*out of range"):
        import_indices({"scene0000_00": [10]}, num_points={"scene0000_00": 10})
    with pytest.raises(ValueError, match="negative"):
        import_indices({"s": [-1, 2]})
    with pytest.raises(ValueError, match="integer"):
        import_indices({"s": [0.5]})
    import torch

    f = tmp_path / "points20.pth"
    torch.save({"scene0000_00": torch.tensor([4, 1, 2]), "scene0002_00": np.array([7, 0])}, f)
    got = load_limited_annotation(f)
    np.testing.assert_array_equal(got["scene0000_00"], [1, 2, 4])
    np.testing.assert_array_equal(got["scene0002_00"], [0, 7])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json.*mapping"):
        load_limited_annotation(tmp_path / "bad.json")
    assert isinstance(parse_spec("import:points20"), LabelSpec)
    # a pickle with more than arrays / tensors needs an explicit trusted (full) load
    torch.save({"scene0000_00": range(3)}, f)
    with pytest.raises(ValueError, match="points20.pth.*trust"):
        load_limited_annotation(f)
    np.testing.assert_array_equal(
        load_limited_annotation(f, trusted=True)["scene0000_00"], [0, 1, 2]
    )
    with pytest.raises(
        ValueError, match=r"points20.pth.*scene0000_00.*index 2 out of range for 2 points"
    ):
        load_limited_annotation(f, num_points={"scene0000_00": 2}, trusted=True)


def _kitti_scene(real: Path) -> Scene:
    root = real / "semantickitti"
    cfg = yaml.safe_load((root / "semantic-kitti.yaml").read_text())
    lut = np.zeros(max(cfg["learning_map"]) + 1, dtype=np.int64)
    for raw_id, learn in cfg["learning_map"].items():
        lut[raw_id] = learn
    scan = np.fromfile(root / "dataset/sequences/00/velodyne/000000.bin", dtype=np.float32).reshape(
        -1, 4
    )
    lab = np.fromfile(root / "dataset/sequences/00/labels/000000.label", dtype=np.uint32)
    semantic = lut[lab & 0xFFFF] - 1  # learning id 0 (unlabelled) -> -1, 1..19 -> 0..18
    instance = (lab >> 16).astype(np.int64)
    instance[instance == 0] = -1
    return Scene(
        name="00_000000",
        dataset="semantickitti",
        coords=scan[:, :3].copy(),
        feats=scan[:, 3:].copy(),
        semantic=semantic,
        instance=instance,
    )


def test_real_semantickitti_scan(real_data):
    sc = _kitti_scene(real_data)
    assert sc.num_points == 124668
    raw_k = _class_counts(np.flatnonzero(sc.semantic >= 0), sc.semantic)
    # 0.1% on raw points: max(int(n_k / 1000), 1) per class present
    idx = sample_weak_labels(sc, "0.1%", seed=0, voxel_size=None)
    assert _class_counts(idx, sc.semantic) == {k: max(int(c * 0.001), 1) for k, c in raw_k.items()}
    # default protocol: on the 5 cm voxelized cloud
    cand, nk = _pool_counts(sc, 0.05, seed=0)
    idx = sample_weak_labels(sc, "0.1%", seed=0, voxel_size=0.05)
    assert _class_counts(idx, sc.semantic) == {k: max(int(c * 0.001), 1) for k, c in nk.items()}
    one = sample_weak_labels(sc, "1pt", seed=0, voxel_size=0.05)
    assert _class_counts(one, sc.semantic) == {k: 1 for k in nk}
    assert len(one) == len(raw_k)  # every class of the scan keeps a point
    assert len(np.unique(_floor(sc.coords[idx], 0.05), axis=0)) == len(idx)
