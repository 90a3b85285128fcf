"""Image augmentation: labels move with the image (scale, crop, flip), padding carries no label,
colour jitter leaves labels alone, normalisation numbers, sliding windows cover the image."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.images.transforms import (
    ImageOptions,
    colour_jitter,
    normalise,
    random_crop,
    rescale,
    sliding_windows,
    train_transform,
)


def _coded(h: int = 20, w: int = 30, k: int = 4, seed: int = 0, block: int = 5) -> dict:
    """A sample whose red channel encodes the label (10 * class), in square blocks."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, k, size=(h // block, w // block))
    labels = np.kron(blocks, np.ones((block, block), dtype=np.int64))
    image = np.zeros((h, w, 3), dtype=np.float32)
    image[..., 0] = 10.0 * labels
    return {"image": image, "labels": labels, "weak_labels": labels.copy()}


def test_rescale_nearest_labels_follow_the_image():
    s = rescale(_coded(), 2.0)
    assert s["image"].shape == (40, 60, 3) and s["labels"].shape == (40, 60)
    np.testing.assert_array_equal(s["labels"], np.kron(_coded()["labels"], np.ones((2, 2))))
    half = rescale(_coded(), 0.5)
    np.testing.assert_array_equal(half["labels"], _coded()["labels"][1::2, 1::2])


def test_random_crop_pads_with_no_label():
    s = random_crop(_coded(10, 10), 16, np.random.default_rng(0))
    assert s["image"].shape == (16, 16, 3)
    assert (s["labels"][10:, :] == -1).all() and (s["labels"][:, 10:] == -1).all()
    assert (s["image"][10:, :] == 0).all()
    assert (s["labels"][:10, :10] >= 0).all()


@pytest.mark.parametrize("seed", range(5))
def test_train_transform_keeps_labels_on_their_pixels(seed):
    opts = ImageOptions(crop_size=16, scale=[0.5, 2.0], flip=True, jitter=0.0)
    s = train_transform(_coded(40, 60, block=10), opts, np.random.default_rng(seed))
    assert s["image"].shape == (16, 16, 3) and s["labels"].shape == (16, 16)
    lab, red = s["labels"], s["image"][..., 0]
    # away from block edges (a constant 5x5 label neighbourhood) the bilinear colour is the
    # colour of the nearest-neighbour label
    pad = np.pad(lab, 2, constant_values=-2)
    win = np.lib.stride_tricks.sliding_window_view(pad, (5, 5))
    interior = (win == lab[..., None, None]).all(axis=(-1, -2)) & (lab >= 0)
    assert interior.sum() >= 16
    np.testing.assert_allclose(red[interior], 10.0 * lab[interior], atol=0.05)
    np.testing.assert_array_equal(s["weak_labels"], s["labels"])


def test_train_transform_is_a_function_of_the_seed():
    opts = ImageOptions(crop_size=12)
    a = train_transform(_coded(), opts, np.random.default_rng(3))
    b = train_transform(_coded(), opts, np.random.default_rng(3))
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["labels"], b["labels"])


def test_colour_jitter_range_and_identity():
    img = np.random.default_rng(0).uniform(0, 255, size=(8, 8, 3)).astype(np.float32)
    out = colour_jitter(img, 0.5, np.random.default_rng(1))
    assert out.min() >= 0 and out.max() <= 255 and not np.allclose(out, img)
    np.testing.assert_allclose(colour_jitter(img, 0.0, np.random.default_rng(1)), img, atol=1e-3)


def test_normalise():
    img = np.full((2, 3, 3), 100.0, dtype=np.float32)
    opts = ImageOptions(mean=[100.0, 50.0, 0.0], std=[1.0, 2.0, 4.0])
    x = normalise(img, opts)
    assert x.shape == (3, 2, 3)
    np.testing.assert_allclose(x[:, 0, 0], [0.0, 25.0, 25.0])


@pytest.mark.parametrize(
    "h, w, win, stride", [(50, 70, 32, 21), (32, 32, 32, 10), (20, 90, 32, 16)]
)
def test_sliding_windows_cover_every_pixel(h, w, win, stride):
    cover = np.zeros((max(h, win), max(w, win)), dtype=int)
    corners = sliding_windows(h, w, win, stride)
    for y, x in corners:
        cover[y : y + win, x : x + win] += 1
        assert y + win <= max(h, win) and x + win <= max(w, win)
    assert (cover[:h, :w] >= 1).all()
    assert len(set(corners)) == len(corners)
