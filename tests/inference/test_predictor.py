"""pcseg.inference.predictor: the logits of a Predictor are the network on the input features
of pcseg.data.dataset.input_features (the same function the training data uses)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers.paths import REAL_DATA
from helpers.sparse import perturb_batch_norms

from pcseg.data.dataset import FEATURE_WIDTHS, input_features
from pcseg.models.inputs import sparse_input


def test_input_features_of_each_key():
    rng = np.random.default_rng(0)
    pts = rng.random((10, 3)).astype(np.float32) * np.array([4, 2, 1], np.float32)
    f = rng.random((10, 3)).astype(np.float32)
    out = input_features(("rgb", "remission", "xyz", "xyz_norm"), pts, f)
    assert out.dtype == np.float32 and out.shape == (10, sum(FEATURE_WIDTHS.values()))
    np.testing.assert_allclose(out[:, :3], f - 0.5)
    np.testing.assert_allclose(out[:, 3], f[:, 0])
    np.testing.assert_allclose(out[:, 4:7], pts - pts.mean(axis=0), atol=1e-6)
    lo, ext = pts.min(axis=0), (pts.max(axis=0) - pts.min(axis=0)).max()
    np.testing.assert_allclose(out[:, 7:10], (pts - lo) / ext, atol=1e-6)
    assert out[:, 7:10].max() <= 1 + 1e-6 and out[:, 7:10].min() >= 0


def test_logits_are_the_network_on_the_voxels(tiny):
    rng = np.random.default_rng(1)
    vox = np.unique(rng.integers(0, 40, (300, 3)), axis=0).astype(np.int32)
    pts = vox.astype(np.float32) * tiny.voxel_size
    feats = rng.random((len(vox), 1)).astype(np.float32)
    got = tiny.logits(vox, pts, feats)
    coords = torch.zeros((len(vox), 4), dtype=torch.int32)
    coords[:, 1:] = torch.from_numpy(vox)
    with torch.no_grad():
        ref, _ = tiny.model(sparse_input({"coords": coords, "feats": torch.from_numpy(feats)}))
    assert got.shape == (len(vox), len(tiny.class_names)) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref.float())


ASPRS_2_3 = {
    "names": ["ground", "low_vegetation"],
    "label_field": "classification",
    "map": {2: "ground", 3: "low_vegetation"},
    "ignore": [0, 1],
    "features": ["intensity"],
    "voxel_size": 0.5,
}


def _spec(**over):
    from pcseg.readers.custom import classes_from_dict

    return classes_from_dict({**ASPRS_2_3, **over})


def test_a_class_file_given_to_predict_must_be_the_training_one():
    import pytest

    from pcseg.inference.predictor import PredictError, check_given_classes
    from pcseg.readers.custom import classes_fingerprint

    trained = _spec()
    new_meta = {"fingerprint": {"classes": classes_fingerprint(trained)}}
    old_meta = {"classes": trained.model_dump(mode="json")}  # a checkpoint before fingerprints
    for meta in (new_meta, old_meta):
        check_given_classes(trained, meta, "the checkpoint", "run.pt", "c.yaml")
        # what describes the files or the scoring may differ
        other_files = _spec(units="foot", columns=["x", "y", "z", "i"], ignore=[0])
        check_given_classes(other_files, meta, "the checkpoint", "run.pt", "c.yaml")
        swapped = _spec(map={2: "low_vegetation", 3: "ground"})
        with pytest.raises(PredictError) as e:
            check_given_classes(swapped, meta, "the checkpoint", "run.pt", "c.yaml")
        assert str(e.value) == (
            "c.yaml is not the class file checkpoint run.pt was trained with: map: "
            "2->ground became 2->low_vegetation, 3->low_vegetation became 3->ground; pass "
            "that file, or leave out --classes (the checkpoint keeps a copy)"
        )
        with pytest.raises(PredictError, match=r"features: \[intensity\] became \[intensity, "):
            feats = _spec(features=["intensity", "return_number"])
            check_given_classes(feats, meta, "the checkpoint", "run.pt", "c.yaml")
    # a benchmark checkpoint keeps no class file: nothing to compare (names are checked apart)
    check_given_classes(_spec(map={2: "low_vegetation", 3: "ground"}), {}, "", "run.pt", "c")


def _pair(planes: int = 8):
    """(unfused, fused) predictors of one randomly initialised network whose batch norms
    carry non-trivial statistics."""
    from pcseg.benchmarks.predict import tiny_predictor
    from pcseg.models.minkunet import fused_for_inference

    torch.manual_seed(0)
    plain = tiny_predictor(0.5, planes=planes, fuse=False)
    perturb_batch_norms(plain.model, seed=3)
    return plain, dataclasses.replace(plain, model=fused_for_inference(plain.model))


def _check_fused_equals_unfused(vox, pts, feats) -> None:
    plain, fused = _pair()
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.model.modules())
    want, got = plain.logits(vox, pts, feats), fused.logits(vox, pts, feats)
    assert want.std() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_fused_predictor_equals_unfused_on_a_synthetic_scene():
    from pcseg.benchmarks.predict import synthetic_outdoor

    d = synthetic_outdoor(6000, seed=2)
    vox, first = np.unique(np.floor(d["xyz"] / 0.5).astype(np.int32), axis=0, return_index=True)
    feats = (d["intensity"][first, None] / 4096.0).astype(np.float32)
    _check_fused_equals_unfused(vox, d["xyz"][first].astype(np.float32), feats)


def test_fused_predictor_equals_unfused_on_the_real_scan():
    from pcseg.benchmarks.scenes import KITTI_SCAN
    from pcseg.data.voxelize import voxelize
    from pcseg.readers.semantickitti import read_bin

    path = REAL_DATA / KITTI_SCAN
    if not path.is_file():
        pytest.skip(f"real scan {path} absent")
    scan = read_bin(path)
    v = voxelize(scan[:, :3], 0.5, "test", feats=scan[:, 3:4])
    assert v.feats is not None and len(v.voxel_coords) > 10_000
    pts = scan[v.point_index, :3]
    _check_fused_equals_unfused(v.voxel_coords.astype(np.int32), pts, v.feats)


def test_bf16_precision_checked_against_the_cpu():
    from pcseg.inference.predictor import PredictError, bf16_supported, check_precision

    check_precision("fp32", torch.device("cpu"))
    with pytest.raises(PredictError, match="precision must be"):
        check_precision("fp16", torch.device("cpu"))
    if bf16_supported():
        check_precision("bf16", torch.device("cpu"))
    else:
        with pytest.raises(PredictError, match="no native bfloat16"):
            check_precision("bf16", torch.device("cpu"))
