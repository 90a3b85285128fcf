"""Image panels: class colours, dimmed unlabelled pixels, error colours, the panel layout."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.viz.colors import DARK_COLOR, RIGHT_COLOR, WRONG_COLOR
from pcseg.viz.errors import ViewError
from pcseg.viz.image_panels import label_colours, mode_tile, render_image_panel

PALETTE = np.array([[10, 20, 30], [200, 0, 0], [0, 200, 0]], dtype=np.uint8)


def test_label_colours_and_dimmed_image():
    labels = np.array([[0, -1], [2, 1]])
    np.testing.assert_array_equal(label_colours(labels, PALETTE)[0, 1], DARK_COLOR)
    under = np.full((2, 2, 3), 90, dtype=np.uint8)
    out = label_colours(labels, PALETTE, under)
    np.testing.assert_array_equal(out[0, 1], [30, 30, 30])
    np.testing.assert_array_equal(out[1, 0], PALETTE[2])


def test_error_tile():
    arrays = {"pred": np.array([[0, 1, 2]]), "gt": np.array([[0, 2, -1]])}
    tile = mode_tile("error", arrays, PALETTE)
    np.testing.assert_array_equal(tile[0], [RIGHT_COLOR, WRONG_COLOR, DARK_COLOR])
    with pytest.raises(ViewError, match="no pseudo"):
        mode_tile("pseudo", {"pseudo": None}, PALETTE)


def test_panel_layout(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.integers(0, 256, size=(8, 10, 3), dtype=np.uint8),
        "gt": rng.integers(-1, 3, size=(8, 10)),
        "pred": rng.integers(0, 3, size=(8, 10)),
    }
    panel = render_image_panel(
        arrays, ["image", "gt", "error"], ["a", "b", "c"], PALETTE, tmp_path / "p.png", tile=40
    )
    # tiles scaled x4 (40 // 10), three tiles and four 6-px gaps
    assert panel.shape[1] == 3 * 40 + 4 * 6
    assert (tmp_path / "p.png").is_file()
    # the first tile is the image scaled by 4 (nearest neighbour), below the caption
    top = 22
    np.testing.assert_array_equal(
        panel[top : top + 4, 6 : 6 + 4], np.broadcast_to(arrays["image"][0, 0], (4, 4, 3))
    )
    with pytest.raises(ViewError, match="choose from"):
        render_image_panel(arrays, ["depth"], ["a"], PALETTE)
