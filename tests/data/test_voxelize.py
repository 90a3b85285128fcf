"""Grid sampling: checked against brute-force numpy / python references."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pcseg.data.voxelize import majority_vote, voxelize, voxelize_baseline


def _room(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 3)) * [4.0, 3.0, 2.5] - [1.0, 2.0, 0.3]).astype(np.float32)


def _floor(c: np.ndarray, vs: float) -> np.ndarray:
    return np.floor(c.astype(np.float64) / vs).astype(np.int64)


@pytest.mark.parametrize("mode", ["train", "mean", "test"])
def test_inverse_and_voxel_set_match_bruteforce(mode):
    c = _room(20000)
    vs = 0.1
    r = voxelize(c, vs, mode=mode, rng=1)
    fl = _floor(c, vs)
    # every point floors into the voxel its inverse names
    np.testing.assert_array_equal(r.voxel_coords[r.inverse], fl)
    # the voxel set equals np.unique of the floored coordinates, in the same (x, y, z) order
    ref_vox, ref_inv = voxelize_baseline(c, vs)
    np.testing.assert_array_equal(r.voxel_coords, ref_vox.astype(np.int32))
    np.testing.assert_array_equal(r.inverse, ref_inv)
    assert r.voxel_coords.dtype == np.int32 and r.inverse.dtype == np.int64
    # representative lies in its voxel, counts are the voxel populations
    np.testing.assert_array_equal(fl[r.point_index], r.voxel_coords)
    np.testing.assert_array_equal(r.counts, np.bincount(ref_inv))
    assert r.counts.sum() == len(c)


def test_hand_worked_example():
    c = np.array(
        [
            [0.01, 0.01, 0.01],
            [0.09, 0.02, 0.0],
            [-0.01, 0.0, 0.0],
            [0.15, 0.0, 0.0],
            [0.05, 0.05, 0.05],
        ],
        dtype=np.float32,
    )
    feats = np.array([[1.0], [3.0], [5.0], [7.0], [8.0]], dtype=np.float32)
    labels = np.array([2, 1, 0, 4, 1])
    r = voxelize(c, 0.1, mode="mean", feats=feats, labels=labels)
    # voxels sorted by (x, y, z): (-1,0,0) <- p2; (0,0,0) <- p0, p1, p4; (1,0,0) <- p3
    np.testing.assert_array_equal(r.voxel_coords, [[-1, 0, 0], [0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(r.inverse, [1, 1, 0, 2, 1])
    np.testing.assert_allclose(r.feats[:, 0], [5.0, 4.0, 7.0])
    np.testing.assert_array_equal(r.labels, [0, 1, 4])  # voxel 1: labels {2, 1, 1} -> 1
    np.testing.assert_array_equal(r.point_index, [2, 0, 3])
    t = voxelize(c, 0.1, mode="test", feats=feats, labels=labels)
    np.testing.assert_allclose(t.feats[:, 0], [5.0, 1.0, 7.0])  # first point of each voxel


def test_mean_mode_against_loop():
    c = _room(3000, seed=3)
    rng = np.random.default_rng(3)
    feats = rng.random((3000, 3)).astype(np.float32)
    labels = rng.integers(-1, 4, 3000)
    r = voxelize(c, 0.25, mode="mean", feats=feats, labels=labels)
    groups: dict[int, list[int]] = {}
    for i, v in enumerate(r.inverse):
        groups.setdefault(int(v), []).append(i)
    for v, members in groups.items():
        np.testing.assert_allclose(r.feats[v], feats[members].mean(axis=0), rtol=1e-5, atol=1e-6)
        votes = Counter(int(labels[i]) for i in members if labels[i] >= 0)
        if not votes:
            assert r.labels[v] == -1
        else:
            best = max(votes.values())
            assert r.labels[v] == min(k for k, n in votes.items() if n == best)


def test_majority_vote_ties_and_ignore():
    inv = np.array([0, 0, 1, 1, 1, 2, 2])
    lab = np.array([3, 1, -1, 2, 2, -1, -1])
    np.testing.assert_array_equal(majority_vote(inv, lab, 4), [1, 2, -1, -1])


def test_train_mode_keeps_labelled_points_and_is_seeded():
    c = _room(20000, seed=5)
    rng = np.random.default_rng(5)
    keep = np.sort(rng.choice(20000, 300, replace=False))
    labels = rng.integers(0, 5, 20000)
    r = voxelize(c, 0.2, mode="train", labels=labels, keep=keep, rng=7)
    reps = set(r.point_index.tolist())
    kept_vox = r.inverse[keep]
    # every voxel holding a kept point is represented by a kept point
    assert set(r.point_index[np.unique(kept_vox)].tolist()) <= set(keep.tolist())
    # kept points that share a voxel: exactly one survives per voxel; losses counted
    n_vox_with_keep = len(np.unique(kept_vox))
    assert sum(k in reps for k in keep.tolist()) == n_vox_with_keep
    assert r.keep_merged == len(keep) - n_vox_with_keep
    conflicts = sum(labels[k] != labels[r.point_index[r.inverse[k]]] for k in keep)
    assert r.keep_conflicts == conflicts
    np.testing.assert_array_equal(r.labels, labels[r.point_index])
    # bool mask form gives the same result
    mask = np.zeros(20000, bool)
    mask[keep] = True
    r_mask = voxelize(c, 0.2, mode="train", labels=labels, keep=mask, rng=7)
    np.testing.assert_array_equal(r_mask.point_index, r.point_index)
    # deterministic for a seed, different for another
    np.testing.assert_array_equal(
        voxelize(c, 0.2, "train", rng=11).point_index, voxelize(c, 0.2, "train", rng=11).point_index
    )
    assert not np.array_equal(
        voxelize(c, 0.2, "train", rng=11).point_index, voxelize(c, 0.2, "train", rng=12).point_index
    )


def test_train_mode_representative_is_uniform():
    # one voxel of 4 points: each point chosen about 1/4 of the time over seeds
    c = np.array([[0.01, 0, 0], [0.02, 0, 0], [0.03, 0, 0], [0.04, 0, 0]], dtype=np.float32)
    picks = [int(voxelize(c, 1.0, "train", rng=s).point_index[0]) for s in range(2000)]
    freq = np.bincount(picks, minlength=4) / 2000
    assert np.all(np.abs(freq - 0.25) < 0.04), freq


def test_no_kept_point_is_lost_when_one_per_voxel():
    c = _room(5000, seed=2)
    r0 = voxelize(c, 0.3, "test")
    keep = r0.point_index[::3]  # at most one kept point per voxel
    r = voxelize(c, 0.3, "train", keep=keep, rng=0)
    assert set(keep.tolist()) <= set(r.point_index.tolist())
    assert r.keep_merged == 0


def test_negative_and_large_lidar_range():
    rng = np.random.default_rng(9)
    c = rng.uniform(-80, 80, size=(50000, 3)).astype(np.float32)
    c[:, 2] = rng.uniform(-12, 3, 50000)
    c[:4] = [[-80, -80, -12], [80, 80, 3], [-79.999, 80, 0], [0, 0, 0]]
    r = voxelize(c, 0.05, "test")
    ref_vox, ref_inv = voxelize_baseline(c, 0.05)
    np.testing.assert_array_equal(r.voxel_coords, ref_vox)
    np.testing.assert_array_equal(r.inverse, ref_inv)
    assert r.voxel_coords.min() == -1600 and r.voxel_coords[:, :2].max() == 1600


def test_huge_range_uses_lexsort_fallback():
    # ranges too large for a packed int64 key (3 x 2^31 > 2^63): must still be correct
    c = np.array(
        [
            [-2.0e6, 2.0e6, -2.0e6],
            [2.0e6, -2.0e6, 2.0e6],
            [0.0, 0.0, 0.0],
            [0.0004, 0.0, 0.0],
            [2.0e6, -2.0e6, 2.0e6],
        ],
        dtype=np.float64,
    )
    r = voxelize(c, 0.001, "test")
    ref_vox, ref_inv = voxelize_baseline(c, 0.001)
    np.testing.assert_array_equal(r.voxel_coords, ref_vox)
    np.testing.assert_array_equal(r.inverse, ref_inv)
    with pytest.raises(ValueError, match="overflows int32"):
        voxelize(c, 1e-4, "test")


def test_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        voxelize(np.zeros((0, 3), np.float32), 0.1)
    c = _room(100)
    c[[7, 40]] = np.nan
    c[50, 1] = np.inf
    with pytest.raises(ValueError, match=r"3 point\(s\).*first at index 7"):
        voxelize(c, 0.1)
    c = _room(100)
    with pytest.raises(ValueError, match="feats has 99 rows but coords has 100"):
        voxelize(c, 0.1, feats=np.zeros((99, 3)))
    with pytest.raises(ValueError, match="labels has 101 rows"):
        voxelize(c, 0.1, labels=np.zeros(101, int))
    for bad in (0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="voxel_size"):
            voxelize(c, bad)
    with pytest.raises(ValueError, match="mode"):
        voxelize(c, 0.1, mode="median")
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        voxelize(c[:, :2], 0.1)
    with pytest.raises(ValueError, match="keep indices"):
        voxelize(c, 0.1, keep=np.array([0, 100]))


@pytest.mark.parametrize("max_label", [5, 100000])  # dense-histogram path and sort path
def test_majority_vote_bruteforce(max_label):
    rng = np.random.default_rng(max_label)
    n, m = 20000, 3000
    inv = rng.integers(0, m, n)
    lab = rng.integers(-1, 4, n)
    lab[lab == 3] = max_label - 1  # a few large ids force the sort path for max_label=100000
    got = majority_vote(inv, lab, m + 5)  # 5 empty groups at the end
    for gid in range(m + 5):
        votes = Counter(int(x) for x in lab[inv == gid] if x >= 0)
        if not votes:
            assert got[gid] == -1
        else:
            best = max(votes.values())
            assert got[gid] == min(k for k, c in votes.items() if c == best), gid
