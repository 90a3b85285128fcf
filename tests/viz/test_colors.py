"""pcseg.viz.colors: the colour modes of a view, hand-computed."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.data.classes import S3DIS_CLASSES
from pcseg.viz import colors as C
from pcseg.viz import palettes as P
from pcseg.viz.data import ViewData


# ----------------------------------------------------------------------------- colour modes
def _view(sem, pal=None, **kw) -> ViewData:
    n = len(sem)
    return ViewData(
        name="v",
        dataset="s3dis",
        class_names=S3DIS_CLASSES,
        palette=P.get_palette("s3dis") if pal is None else pal,
        coords=np.zeros((n, 3), np.float32),
        feats=np.zeros((n, 3), np.float32),
        feat_kind="rgb",
        semantic=np.asarray(sem, np.int64),
        **kw,
    )


@pytest.mark.timeout(60)
def test_colour_functions_hand_computed():
    pal = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    ign = P.IGNORE_COLOR
    np.testing.assert_array_equal(
        C.label_colors(np.array([2, -1, 0]), pal), np.array([[70, 80, 90], ign, [10, 20, 30]])
    )
    with pytest.raises(ValueError, match="outside"):
        C.label_colors(np.array([3]), pal)
    np.testing.assert_array_equal(
        C.weak_colors(np.array([1, 2, -1, 0]), np.array([True, False, True, False]), pal),
        np.array([[40, 50, 60], P.UNLABELLED_COLOR, ign, P.UNLABELLED_COLOR]),
    )
    np.testing.assert_array_equal(
        C.error_colors(np.array([0, 1, 2, -1, 1]), np.array([0, 2, -1, 1, 1])),
        np.array([C.RIGHT_COLOR, C.WRONG_COLOR, C.DARK_COLOR, C.DARK_COLOR, C.RIGHT_COLOR]),
    )
    # matplotlib 'gray' LUT has 256 entries: value t -> index min(int(t * 256), 255)
    # -> grey level = index
    vals = np.array([-1.0, 0.0, 0.25, 0.5, 1.0, 7.0, np.nan])
    grey = [0, 0, 64, 128, 255, 255]
    np.testing.assert_array_equal(
        C.scalar_colors(vals, "gray", 0.0, 1.0), np.array([[g, g, g] for g in grey] + [list(ign)])
    )
    np.testing.assert_array_equal(
        C.scalar_colors(np.array([2.0, 4.0]), "gray", 2.0, 6.0),
        np.array([[0, 0, 0], [128, 128, 128]]),
    )
    np.testing.assert_array_equal(
        C.rgb_colors(np.array([[0.0, 0.5, 1.0], [1.2, -0.1, 0.2]])),
        np.array([[0, 128, 255], [255, 0, 51]]),
    )
    np.testing.assert_array_equal(
        C.rgb_colors(np.array([[0.0, 127.5, 255.0]])), np.array([[0, 128, 255]])
    )


@pytest.mark.timeout(60)
def test_mode_colors_and_summary_on_a_view():
    rng = np.random.default_rng(0)
    n = 200
    sem = rng.integers(-1, 13, n)
    pred = rng.integers(0, 13, n)
    pseudo = np.where(rng.random(n) < 0.4, rng.integers(0, 13, n), -1)
    lab = np.zeros(n, bool)
    lab[::10] = True
    v = _view(
        sem,
        labelled=lab,
        pred=pred,
        pseudo=pseudo,
        confidence=rng.random(n).astype(np.float32),
        entropy=rng.random(n).astype(np.float32),
    )
    pal = v.palette
    for i in range(n):  # brute-force reference, point by point
        exp_gt = pal[sem[i]] if sem[i] >= 0 else P.IGNORE_COLOR
        assert tuple(C.mode_colors(v, "gt")[i]) == tuple(int(c) for c in exp_gt)
        exp_w = (pal[sem[i]] if sem[i] >= 0 else P.IGNORE_COLOR) if lab[i] else P.UNLABELLED_COLOR
        assert tuple(C.mode_colors(v, "weak")[i]) == tuple(int(c) for c in exp_w)
        exp_e = (
            C.DARK_COLOR if sem[i] < 0 else (C.RIGHT_COLOR if pred[i] == sem[i] else C.WRONG_COLOR)
        )
        assert tuple(C.mode_colors(v, "error")[i]) == exp_e
    assert C.available_modes(v) == list(C.MODES)
    ok = sem >= 0
    acc = sum(int(pred[i] == sem[i]) for i in range(n) if ok[i]) / ok.sum()
    assert C.mode_summary(v, "pred") == f"acc {100 * acc:.1f}%"
    assert C.mode_summary(v, "weak") == f"{lab.sum()} labelled ({100 * lab.sum() / n:.2f}%)"
    bare = _view(sem)
    assert C.available_modes(bare) == ["rgb", "gt"]
    with pytest.raises(C.ModeUnavailable, match="no predictions"):
        C.mode_colors(bare, "pred")
    with pytest.raises(C.ModeUnavailable, match="pseudo-labels"):
        C.mode_colors(_view(sem, pred=pred, pseudo=np.full(n, -1)), "pseudo")
    with pytest.raises(ValueError, match="unknown colour mode"):
        C.mode_colors(bare, "bogus")


def test_a_prediction_without_ground_truth_is_summarised_by_its_class_shares():
    """A predicted file (no ground truth): the pred title gives its largest classes."""
    pred = np.array([2] * 6 + [0] * 3 + [7] + [5] * 2)  # 12 points
    v = _view(np.full(12, -1), pred=pred)
    assert C.mode_summary(v, "pred") == "wall 50.0%, ceiling 25.0%, window 16.7%"
    assert C.mode_summary(v, "pred", pred != 2) == "ceiling 50.0%, window 33.3%, table 16.7%"
    assert C.class_shares(np.full(3, -1), S3DIS_CLASSES) == ""
    assert C.available_modes(v) == ["rgb", "pred"]
    z = np.linspace(0.0, 9.0, 10).reshape(-1, 1)  # a predicted file's height as its colour
    np.testing.assert_array_equal(C.rgb_colors(z, "height"), C.scalar_colors(z[:, 0]))
