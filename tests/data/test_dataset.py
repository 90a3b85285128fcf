"""SegmentationDataset, collate and transforms, checked against brute-force references."""

from __future__ import annotations

import math
import pickle
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from pcseg.data import processed
from pcseg.data import transforms as T
from pcseg.data.classes import S3DIS_CLASSES
from pcseg.data.dataset import SegmentationDataset, build_dataloader, collate
from pcseg.data.scene import Scene
from pcseg.data.weak_labels import sample_weak_labels

VS = 0.1
NAMES = ["Area_1_a", "Area_1_b", "Area_5_c"]


def _scene(name: str, seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    n = 4000 + 500 * seed
    coords = (rng.random((n, 3)) * [3.0, 2.0, 1.5] - [1.0, 0.5, 0.0]).astype(np.float32)
    sem = (coords[:, 0] * 3).astype(np.int64) % 13
    sem[rng.random(n) < 0.1] = -1
    return Scene(
        name=name,
        dataset="s3dis",
        coords=coords,
        feats=rng.random((n, 3)).astype(np.float32),
        semantic=sem,
        instance=np.full(n, -1),
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("processed")
    for i, name in enumerate(NAMES):
        sc = _scene(name, i)
        processed.write_scene(out, sc)
        for spec in ("1%", "1pt"):
            processed.write_labels(out, spec, name, sample_weak_labels(sc, spec, 0, VS))
    processed.write_meta(
        out,
        {
            "dataset": "s3dis",
            "class_names": list(S3DIS_CLASSES),
            "voxel_size": VS,
            "splits": {"train": NAMES[:2], "val": NAMES[2:]},
            "label_specs": ["1%", "1pt"],
            "seed": 0,
        },
    )
    return out


def _floor(c: np.ndarray) -> np.ndarray:
    return np.floor(c.astype(np.float64) / VS).astype(np.int64)


def _voxel_members(coords: np.ndarray) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, v in enumerate(map(tuple, _floor(coords))):
        groups[v].append(i)
    return groups


def test_train_sample_weak_mask_and_labels(root):
    ds = SegmentationDataset(root, "train", "1%", VS, mode="train")
    assert len(ds) == 2 and ds.in_channels == 3
    s = ds.get_sample(0, np.random.default_rng(0))
    sc = processed.read_scene(root, "Area_1_a")
    weak = processed.read_labels(root, "1%", "Area_1_a")
    groups = _voxel_members(sc.coords)
    m = len(groups)
    assert s["coords"].shape == (m, 3) and s["coords"].dtype == np.int32
    assert s["feats"].shape == (m, 3) and s["feats"].dtype == np.float32
    assert s["labels"].dtype == np.int64 and s["weak_labels"].dtype == np.int64
    assert {tuple(v) for v in s["coords"].tolist()} == set(groups)
    weak_set = set(weak.tolist())
    weak_vox = {tuple(v) for v in _floor(sc.coords[weak]).tolist()}
    n_weak_rows = 0
    for row, v in enumerate(map(tuple, s["coords"].tolist())):
        members = groups[v]
        # the voxel's representative is one of its points: its feats / label come from one member
        cand = [i for i in members if np.allclose(sc.feats[i] - 0.5, s["feats"][row])]
        assert cand, row
        assert s["labels"][row] in {int(sc.semantic[i]) for i in cand}
        if v in weak_vox:  # represented by its weakly labelled point
            w = [i for i in cand if i in weak_set]
            assert w and s["weak_labels"][row] == sc.semantic[w[0]]
            n_weak_rows += 1
        else:
            assert s["weak_labels"][row] == -1
    assert n_weak_rows == len(weak_vox) == int((s["weak_labels"] >= 0).sum())
    assert np.all(s["feats"] >= -0.5) and np.all(s["feats"] <= 0.5)


def test_crop_keeps_max_voxels_and_a_labelled_voxel(root):
    ds = SegmentationDataset(root, "train", "1pt", VS, mode="train", max_voxels=60)
    full = SegmentationDataset(root, "train", "1pt", VS, mode="train")
    for seed in range(5):
        s = ds.get_sample(1, np.random.default_rng(seed))
        assert len(s["coords"]) == 60 and (s["weak_labels"] >= 0).sum() >= 1
        # the crop is a ball: every kept voxel is nearer the centre than every dropped one
        allv = full.get_sample(1, np.random.default_rng(seed))["coords"].astype(np.int64)
        kept = s["coords"].astype(np.int64)
        kept_set = {tuple(v) for v in kept.tolist()}
        dropped = np.array([v for v in allv.tolist() if tuple(v) not in kept_set])
        best = None
        for c in kept:  # some kept voxel is a valid centre
            dk = ((kept - c) ** 2).sum(1).max()
            dd = ((dropped - c) ** 2).sum(1).min()
            if dk <= dd:
                best = c
                break
        assert best is not None


def test_val_sample_inverse_and_majority(root):
    ds = SegmentationDataset(root, "val", "1%", None, mode="val", feature_keys=("rgb", "xyz"))
    assert ds.voxel_size == VS and ds.in_channels == 6 and len(ds) == 1
    s = ds[0]
    sc = processed.read_scene(root, "Area_5_c")
    weak = processed.read_labels(root, "1%", "Area_5_c")
    np.testing.assert_array_equal(s["coords"][s["inverse"]], _floor(sc.coords))
    np.testing.assert_array_equal(s["point_labels"], sc.semantic)
    groups = _voxel_members(sc.coords)
    weak_set = set(weak.tolist())
    for row, v in enumerate(map(tuple, s["coords"].tolist())):
        members = groups[v]
        votes = Counter(int(sc.semantic[i]) for i in members if sc.semantic[i] >= 0)
        exp = -1 if not votes else min(k for k, c in votes.items() if c == max(votes.values()))
        assert s["labels"][row] == exp
        wl = [int(sc.semantic[i]) for i in members if i in weak_set]
        assert s["weak_labels"][row] == (Counter(wl).most_common(1)[0][0] if wl else -1)
        np.testing.assert_allclose(s["feats"][row, :3], sc.feats[members[0]] - 0.5)  # first point
    np.testing.assert_allclose(s["feats"][:, 3:].mean(0), 0, atol=1e-5)


def test_collate_offsets(root):
    ds = SegmentationDataset(root, "all", "1%", VS, mode="test")
    samples = [ds[i] for i in range(3)]
    b = collate(samples)
    m = [len(s["coords"]) for s in samples]
    p = [len(s["inverse"]) for s in samples]
    assert b["coords"].dtype == torch.int32 and b["coords"].shape == (sum(m), 4)
    assert b["feats"].dtype == torch.float32 and b["labels"].dtype == torch.int64
    assert b["weak_labels"].dtype == torch.int64 and b["inverse"].dtype == torch.int64
    np.testing.assert_array_equal(b["coords"][:, 0].numpy(), np.repeat([0, 1, 2], m))
    assert b["point_offsets"].tolist() == [0, p[0], p[0] + p[1], sum(p)]
    assert b["scene_names"] == NAMES
    for i, name in enumerate(NAMES):
        sc = processed.read_scene(root, name)
        lo, hi = b["point_offsets"][i].item(), b["point_offsets"][i + 1].item()
        rows = b["inverse"][lo:hi].numpy()
        assert np.all(b["coords"][rows, 0].numpy() == i)
        np.testing.assert_array_equal(b["coords"][rows, 1:].numpy(), _floor(sc.coords))
        np.testing.assert_array_equal(b["point_labels"][lo:hi].numpy(), sc.semantic)
    tb = collate(
        [SegmentationDataset(root, "train", "1%", VS).get_sample(0, np.random.default_rng(0))]
    )
    assert tb["inverse"].numel() == 0 and tb["point_offsets"].tolist() == [0, 0]
    with pytest.raises(ValueError, match="mix"):
        collate(
            [
                samples[0],
                ds.__class__(root, "train", "1%", VS).get_sample(0, np.random.default_rng(0)),
            ]
        )


def test_augmented_samples_deterministic(root):
    aug = T.default_train_transforms("rgb", elastic=True)
    ds = SegmentationDataset(root, "train", "1%", VS, transforms=aug, max_voxels=300)
    a = ds.get_sample(0, np.random.default_rng(3))
    b = ds.get_sample(0, np.random.default_rng(3))
    c = ds.get_sample(0, np.random.default_rng(4))
    for k in ("coords", "feats", "labels", "weak_labels"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["feats"], c["feats"])
    # the loader: picklable dataset, seeded workers -> two runs give identical batches
    pickle.loads(pickle.dumps(ds))

    def run():
        torch.manual_seed(0)
        loader = build_dataloader(ds, batch_size=2, shuffle=True, num_workers=2, seed=1)
        return [bt for _ in range(2) for bt in loader]

    r1, r2 = run(), run()
    for x, y in zip(r1, r2):
        assert torch.equal(x["coords"], y["coords"]) and torch.equal(x["feats"], y["feats"])
    assert not torch.equal(r1[0]["feats"], r1[1]["feats"])  # epochs differ


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "coords": (rng.random((n, 3)) * 4).astype(np.float32),
        "feats": rng.random((n, 3)).astype(np.float32),
        "semantic": np.arange(n),
    }


def test_geometric_transforms_against_hand_computation():
    d = _data()
    c = d["coords"].astype(np.float64)
    ctr = np.array([c[:, 0].mean(), c[:, 1].mean(), 0.0])
    out = T.RandomRotateZ()(d, np.random.default_rng(5))
    a = np.random.default_rng(5).uniform(-math.pi, math.pi)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    np.testing.assert_allclose(out["coords"], (c - ctr) @ rot.T + ctr, atol=1e-5)
    out = T.RandomRotateZ(max_angle=0.1)(d, np.random.default_rng(5))
    ang = np.arctan2(*(out["coords"][:, :2] - ctr[:2])[0][::-1]) - np.arctan2(
        *(c[:, :2] - ctr[:2])[0][::-1]
    )
    assert abs((ang + np.pi) % (2 * np.pi) - np.pi) <= 0.1 + 1e-6
    s = np.random.default_rng(6).uniform(0.8, 1.2, size=1)
    np.testing.assert_allclose(
        T.RandomScale(0.8, 1.2)(d, np.random.default_rng(6))["coords"],
        (c - ctr) * s + ctr,
        atol=1e-5,
    )
    f = T.RandomFlip(("x",), p=1.0)(d, np.random.default_rng(0))["coords"]
    np.testing.assert_allclose(f[:, 0], 2 * ctr[0] - c[:, 0], atol=1e-5)
    np.testing.assert_array_equal(f[:, 1:], d["coords"][:, 1:])
    j = T.RandomJitter(sigma=0.01, clip=0.02)(d, np.random.default_rng(0))["coords"]
    assert 0 < np.abs(j - d["coords"]).max() <= 0.02 + 1e-6
    e = T.ElasticDistortion(p=1.0)(d, np.random.default_rng(0))["coords"]
    assert np.abs(e - d["coords"]).max() > 1e-3
    assert d["coords"].dtype == np.float32 and np.array_equal(
        d["coords"], _data()["coords"]
    )  # input untouched


def test_colour_transforms():
    d = _data()
    f = d["feats"]
    assert np.all(T.RandomDropColor(p=1.0)(d, np.random.default_rng(0))["feats"] == 0)
    shift = np.random.default_rng(1)
    shift.random()
    exp = np.clip(f + shift.uniform(-0.05, 0.05, size=3), 0, 1)
    np.testing.assert_allclose(
        T.ChromaticTranslation(p=1.0)(d, np.random.default_rng(1))["feats"], exp, atol=1e-6
    )
    ac = T.ChromaticAutoContrast(p=1.0, blend_factor=1.0)(d, np.random.default_rng(0))["feats"]
    np.testing.assert_allclose(ac.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(ac.max(0), 1, atol=1e-6)
    cj = T.ChromaticJitter(p=1.0, std=0.5)(d, np.random.default_rng(0))["feats"]
    assert cj.min() >= 0 and cj.max() <= 1
    with pytest.raises(ValueError, match="RGB"):
        T.ChromaticJitter()({"coords": d["coords"], "feats": f[:, :1]}, np.random.default_rng(0))
    comp = T.build_transforms(["rotate_z", {"name": "scale", "low": 0.5, "high": 0.6}])
    assert len(comp.transforms) == 2
    with pytest.raises(ValueError, match="unknown transform"):
        T.build_transforms(["spin"])


def test_dataset_errors(root):
    with pytest.raises(ValueError, match="split 'nosuch'"):
        SegmentationDataset(root, "nosuch", "1%", VS)
    with pytest.raises(ValueError, match="labels/0.1pct/.*does not exist"):
        SegmentationDataset(root, "train", "0.1%", VS)[0]
    with pytest.raises(ValueError, match="remission"):
        SegmentationDataset(root, "train", "1%", VS, feature_keys=("remission",))
    with pytest.raises(ValueError, match="mode"):
        SegmentationDataset(root, "train", "1%", VS, mode="eval")


def test_sparse_input_is_built_once_per_batch_with_the_model_dtypes():
    from pcseg.models.inputs import SPARSE_INPUT_KEY, sparse_input

    batch = {
        "coords": torch.tensor([[0, 1, 2, 3], [0, 1, 2, 4], [1, 0, 0, 0]], dtype=torch.int64),
        "feats": torch.rand(3, 2, dtype=torch.float64),
    }
    x = sparse_input(batch)
    assert x.coords.dtype == torch.int32 and x.feats.dtype == torch.float32
    torch.testing.assert_close(x.feats, batch["feats"].float())
    assert batch[SPARSE_INPUT_KEY] is x and sparse_input(batch, "cpu") is x
    with pytest.raises(KeyError, match="batch has no 'coords'"):
        sparse_input({"feats": batch["feats"]})
