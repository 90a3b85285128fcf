"""Full-resolution evaluation of image checkpoints: sliding windows agree with the whole image
for a context-free network, metrics.json equals a confusion matrix recomputed from the saved
PNGs and the masks, pseudo-label maps of a method that has them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.image_runs import image_config, make_synthetic_processed
from PIL import Image
from torch import nn

from pcseg.engine.evaluate import evaluate
from pcseg.engine.evaluate_images import entropy_map, predict_image
from pcseg.engine.trainer import train
from pcseg.images import processed
from pcseg.images.transforms import ImageOptions
from pcseg.methods import build_method
from pcseg.models.dense import PixelRows


class _Pointwise(nn.Module):
    """A 1x1-conv network: every pixel's output depends on that pixel alone."""

    feature_dim, num_classes = 4, 3

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Conv2d(3, 4, 1)
        self.c = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        f = torch.tanh(self.f(x))
        return self.c(f), f


@pytest.mark.parametrize("size", [(40, 52), (20, 25)])
def test_sliding_windows_equal_the_whole_image_for_a_pointwise_network(size):
    model = PixelRows(_Pointwise()).eval()
    method = build_method("supervised", 3, 4).eval()
    image = torch.randn(3, *size)
    whole, p1 = predict_image(model, method, image, ImageOptions(), _nothing)
    slide, p2 = predict_image(
        model, method, image, ImageOptions(test_mode="sliding", window=24, stride=10), _nothing
    )
    assert whole.shape == (3, *size)
    np.testing.assert_allclose(slide, whole, atol=1e-6)
    np.testing.assert_allclose(whole.sum(0), 1.0, atol=1e-5)
    assert (p1 == -1).all() and (p2 == -1).all()


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def test_entropy_map():
    p = np.array([[[0.5]], [[0.5]], [[0.0]]])
    np.testing.assert_allclose(entropy_map(p), [[np.log(2)]], rtol=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("images")
    make_synthetic_processed(tmp / "p", train=4, val=1, test=2, size=24)
    processed.ensure_weak_labels(tmp / "p", "1%")
    cfg = image_config(
        tmp / "p",
        tmp / "run",
        {"name": "u2pl", "queue_capacity": 64, "rep_dim": 8, "num_anchors": 16},
        data={"label_spec": "1%"},
        train={"iterations": 3},
    )
    train(cfg)
    return cfg, tmp


def test_metrics_equal_a_confusion_of_the_saved_pngs(trained):
    cfg, tmp = trained
    metrics = evaluate(cfg, tmp / "run" / "checkpoints" / "best.pt", progress=False)
    k = len(metrics["class_names"])
    conf = np.zeros((k, k), dtype=np.int64)
    for name in ("test_000", "test_001"):
        pred = np.asarray(Image.open(tmp / "run" / "test" / "predictions" / f"{name}.png"))
        mask = processed.load_mask(tmp / "p", name)
        keep = mask != 255
        np.add.at(conf, (mask[keep].astype(int), pred[keep].astype(int)), 1)
        npz = np.load(tmp / "run" / "test" / "predictions" / f"{name}.npz")
        np.testing.assert_array_equal(npz["pred"], pred)
        assert npz["pseudo"].shape == pred.shape and (npz["pseudo"] >= 0).all()
        assert (npz["confidence"] > 0).all() and (npz["entropy"] >= 0).all()
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    miou = float(np.mean(inter[present] / union[present]))
    saved = json.loads((tmp / "run" / "test" / "metrics.json").read_text())
    assert saved["miou"] == pytest.approx(miou, abs=1e-9)
    assert saved["oa"] == pytest.approx(inter.sum() / conf.sum(), abs=1e-9)
    assert saved["num_points"] == conf.sum() and saved["scenes"] == ["test_000", "test_001"]


def test_sliding_test_mode_and_unlabelled_score(trained):
    cfg, tmp = trained
    cfg = cfg.model_copy(deep=True)
    cfg.data.images.test_mode = "sliding"
    cfg.data.images.window = 16
    cfg.test.score = "unlabelled"
    m = evaluate(
        cfg,
        tmp / "run" / "checkpoints" / "best.pt",
        split="train",
        out_dir=tmp / "t2",
        progress=False,
    )
    weak = sum(
        int((processed.load_weak_mask(tmp / "p", "1%", n) != 255).sum())
        for n in processed.read_meta(tmp / "p").splits["train"]
    )
    labelled = sum(
        int((processed.load_mask(tmp / "p", n) != 255).sum())
        for n in processed.read_meta(tmp / "p").splits["train"]
    )
    assert m["num_points"] == labelled - weak and m["test_mode"] == "sliding"
