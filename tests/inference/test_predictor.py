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
