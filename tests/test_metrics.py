"""Confusion matrix / IoU / OA / mAcc against brute-force loops and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pcseg.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    format_table,
    iou_per_class,
    metrics_from_confusion,
)


def _brute(pred, gt, k):
    conf = np.zeros((k, k), dtype=np.int64)
    gtc = np.zeros(k, dtype=np.int64)
    for p, g in zip(pred.tolist(), gt.tolist()):
        if not 0 <= g < k:
            continue
        gtc[g] += 1
        if 0 <= p < k:
            conf[g, p] += 1
    iou = []
    for c in range(k):
        tp = conf[c, c]
        fp = sum(conf[r, c] for r in range(k)) - tp
        fn = gtc[c] - tp
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    return conf, gtc, iou


def test_random_against_brute_force():
    rng = np.random.default_rng(0)
    k = 7
    gt = rng.integers(-1, k, size=5000)
    pred = rng.integers(-2, k + 2, size=5000)  # includes out-of-range predictions
    agree = rng.random(5000) < 0.5  # half the points predicted correctly
    pred[agree] = gt[agree]
    conf, gtc = confusion_matrix(pred, gt, k)
    bconf, bgtc, biou = _brute(pred, gt, k)
    np.testing.assert_array_equal(conf, bconf)
    np.testing.assert_array_equal(gtc, bgtc)
    m = metrics_from_confusion(conf, gtc)
    np.testing.assert_allclose(m["iou"], biou)
    assert m["miou"] == pytest.approx(np.nanmean(biou))
    valid = gt >= 0
    assert m["oa"] == pytest.approx(np.mean(pred[valid] == gt[valid]))
    accs = [np.mean(pred[gt == c] == c) for c in range(k) if (gt == c).any()]
    assert m["macc"] == pytest.approx(np.mean(accs))
    assert m["num_points"] == int(valid.sum())


def test_accumulation_matches_single_pass_and_torch_inputs():
    rng = np.random.default_rng(1)
    k = 5
    gt = rng.integers(-1, k, size=3000)
    pred = np.where(rng.random(3000) < 0.7, gt, rng.integers(0, k, size=3000))
    acc = ConfusionMatrix(k)
    for s in range(0, 3000, 700):
        acc.update(torch.from_numpy(pred[s : s + 700]), torch.from_numpy(gt[s : s + 700]))
    conf, gtc = confusion_matrix(pred, gt, k)
    np.testing.assert_array_equal(acc.matrix, conf)
    np.testing.assert_array_equal(acc.gt_count, gtc)


def test_hand_worked_example_ignore_and_misses():
    # classes 0,1,2 ; gt -1 ignored; pred 7 on a class-0 point is a miss (FN of class 0)
    gt = np.array([0, 0, 0, 1, 1, -1, -1, 0])
    pred = np.array([0, 0, 1, 1, 0, 2, 5, 7])
    conf, gtc = confusion_matrix(pred, gt, 3)
    np.testing.assert_array_equal(conf, [[2, 1, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(gtc, [4, 2, 0])
    m = metrics_from_confusion(conf, gtc, ["a", "b", "c"])
    # class a: TP 2, FP 1, FN 2 -> 2/5 ; class b: TP 1, FP 1, FN 1 -> 1/3 ; class c absent -> NaN
    assert m["iou"][0] == pytest.approx(2 / 5)
    assert m["iou"][1] == pytest.approx(1 / 3)
    assert math.isnan(m["iou"][2]) and m["per_class_iou"]["c"] is None
    assert m["miou"] == pytest.approx((2 / 5 + 1 / 3) / 2)
    assert m["oa"] == pytest.approx(3 / 6)
    assert m["macc"] == pytest.approx((2 / 4 + 1 / 2) / 2)
    assert "n/a" in format_table(m) and "mIoU" in format_table(m)


def test_predicted_but_absent_class_counts_zero():
    gt = np.array([0, 0, 1])
    pred = np.array([0, 2, 1])
    m = metrics_from_confusion(*confusion_matrix(pred, gt, 3))
    assert m["iou"] == [pytest.approx(0.5), 1.0, 0.0]
    assert m["miou"] == pytest.approx(0.5)


def test_empty_is_nan_not_error():
    m = metrics_from_confusion(np.zeros((3, 3), dtype=np.int64))
    assert math.isnan(m["miou"]) and math.isnan(m["oa"]) and math.isnan(m["macc"])
    assert all(math.isnan(v) for v in iou_per_class(np.zeros((3, 3))))


def test_shape_errors():
    with pytest.raises(ValueError, match="entries"):
        confusion_matrix(np.zeros(3), np.zeros(4), 2)
    with pytest.raises(ValueError, match="class names"):
        metrics_from_confusion(np.zeros((2, 2)), class_names=["a"])
