"""pcseg.inference.predictor: the logits of a Predictor are the network on the input features
of pcseg.data.dataset.input_features (the same function the training data uses)."""

from __future__ import annotations

import numpy as np
import torch

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
