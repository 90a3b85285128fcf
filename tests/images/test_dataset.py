"""Image samples and batches: labels from the masks (255 -> -1), weak labels of a spec, the
row order of a batch, padding, class counts for official_raw weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.image_runs import make_synthetic_processed

from pcseg.images import processed
from pcseg.images.dataset import ImageDataset, collate_images
from pcseg.images.transforms import ImageOptions
from pcseg.methods.common import labelled_class_counts


@pytest.fixture
def folder(tmp_path):
    make_synthetic_processed(tmp_path, train=4, val=2, test=1, size=24)
    mask = processed.load_mask(tmp_path, "val_000").copy()
    mask[:3, :] = 255  # an ignored band
    processed.write_mask(tmp_path, "val_000", mask)
    return tmp_path


def test_val_sample_is_the_whole_image(folder):
    ds = ImageDataset(folder, "val", mode="val")
    s = ds.get_sample(0, np.random.default_rng(0))
    assert s["image"].shape == (3, 24, 24) and s["image"].dtype == np.float32
    mask = processed.load_mask(folder, "val_000")
    want = np.where(mask == 255, -1, mask.astype(np.int64))
    np.testing.assert_array_equal(s["labels"], want)
    assert (s["weak_labels"] == -1).all()
    assert ds.class_names == processed.read_meta(folder).classes


def test_train_samples_have_the_crop_and_the_weak_labels(folder):
    processed.ensure_weak_labels(folder, "1%")
    ds = ImageDataset(folder, "train", "1%", "train", ImageOptions(crop_size=16, jitter=0.0))
    s = ds.get_sample(1, np.random.default_rng(5))
    assert s["image"].shape == (3, 16, 16)
    weak = s["weak_labels"][s["weak_labels"] >= 0]
    np.testing.assert_array_equal(weak, s["labels"][s["weak_labels"] >= 0])
    full = ImageDataset(folder, "train", "1%", "val")
    w = full.weak_labels("train_000")
    raw = processed.load_weak_mask(folder, "1%", "train_000")
    np.testing.assert_array_equal(w >= 0, raw != 255)


def test_collate_rows_and_padding(folder):
    ds = ImageDataset(folder, "val", mode="val")
    a = ds.get_sample(0, np.random.default_rng(0))
    b = {**ds.get_sample(1, np.random.default_rng(0))}
    b = {
        **b,
        "image": b["image"][:, :20, :18],
        "labels": b["labels"][:20, :18],
        "weak_labels": b["weak_labels"][:20, :18],
    }
    batch = collate_images([a, b])
    assert batch["images"].shape == (2, 3, 24, 24)
    assert batch["sizes"].tolist() == [[24, 24], [20, 18]]
    lab = batch["labels"].reshape(2, 24, 24)
    np.testing.assert_array_equal(lab[0].numpy(), a["labels"])
    np.testing.assert_array_equal(lab[1, :20, :18].numpy(), b["labels"])
    assert (lab[1, 20:] == -1).all() and (lab[1, :, 18:] == -1).all()
    assert torch.equal(batch["images"][1, :, 20:], torch.zeros(3, 4, 24))
    assert batch["scene_names"] == ["val_000", "val_001"]


def test_labelled_class_counts_match_a_direct_count(folder):
    processed.ensure_weak_labels(folder, "5pt")
    ds = ImageDataset(folder, "train", "5pt", "train")
    want = np.zeros(ds.num_classes, dtype=np.int64)
    for name in ds.scene_names:
        m = processed.load_weak_mask(folder, "5pt", name)
        want += np.bincount(m[m != 255].astype(int), minlength=ds.num_classes)
    np.testing.assert_array_equal(labelled_class_counts(ds), want)


def test_joined_splits_and_unknown_split(folder):
    ds = ImageDataset(folder, "val+test", mode="val")
    assert ds.scene_names == ["val_000", "val_001", "test_000"]
    with pytest.raises(ValueError, match="no split 'nope'"):
        ImageDataset(folder, "nope", mode="val")
