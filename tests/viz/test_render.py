"""pcseg.viz.render: headless renders (panels, side views, the render_modes API), the camera
and hidden mask, the legend extras and the private runtime dir.

Open3D rendering runs in subprocesses with timeouts (a GL hang must not hang pytest).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import REPO
from helpers.viz import (
    CLS,
    PRESENT_TOP,
    PY,
    _count,
    _headless_env,
    _read_png,
    _run_tool,
)

from pcseg.data.classes import S3DIS_CLASSES
from pcseg.viz import colors as C
from pcseg.viz import palettes as P
from pcseg.viz.data import load_view_data


# ----------------------------------------------------------------------------- rendering
@pytest.mark.timeout(200)
def test_headless_render_panel_colours(room: dict, tmp_path: Path):
    from pcseg.viz.render import TITLE_HEIGHT

    out = tmp_path / "panel.png"
    w, h = 320, 240
    r = _run_tool(
        [
            room["run"],
            "--scene",
            "room_1",
            "--render",
            out,
            "--modes",
            "gt,pred,error",
            "--view",
            "top",
            "--width",
            w,
            "--height",
            h,
            "--point-size",
            4,
            "--no-legend",
        ],
        env=_headless_env(),
        timeout=150,
    )
    assert r.returncode == 0, r.stderr
    img = _read_png(out)
    assert img.shape == (TITLE_HEIGHT + h, 3 * w, 3)
    pal = P.get_palette("s3dis")
    tiles = [
        img[TITLE_HEIGHT:, i * w + 1 : (i + 1) * w] for i in range(3)
    ]  # skip the 1-px separators
    gt, pred, err = tiles
    for name in PRESENT_TOP:
        assert _count(gt, pal[CLS[name]]) >= 20, name
    absent = [
        n for n in S3DIS_CLASSES if n not in PRESENT_TOP
    ]  # incl. ceiling: hidden from the top
    for name in absent:
        assert _count(gt, pal[CLS[name]]) == 0, name
    # unlit points: every pixel is the background or one of the present class colours exactly
    allowed = [pal[CLS[n]] for n in PRESENT_TOP] + [(255, 255, 255)]
    near = np.zeros(gt.shape[:2], bool)
    for c in allowed:
        near |= np.abs(gt.astype(int) - np.asarray(c, int)).max(-1) <= 3
    assert near.mean() > 0.999
    assert _count(pred, pal[CLS["sofa"]]) >= 20 and _count(pred, pal[CLS["chair"]]) == 0
    assert _count(err, C.WRONG_COLOR) >= 20 and _count(err, C.RIGHT_COLOR) >= 100
    assert all(_count(err, pal[CLS[n]]) == 0 for n in PRESENT_TOP)
    # the wrong (red) pixels sit where the chair is in the gt tile
    ys, xs = np.nonzero(np.abs(err.astype(int) - np.asarray(C.WRONG_COLOR)).max(-1) <= 3)
    yc, xc = np.nonzero(np.abs(gt.astype(int) - pal[CLS["chair"]].astype(int)).max(-1) <= 3)
    assert abs(ys.mean() - yc.mean()) < 3 and abs(xs.mean() - xc.mean()) < 3
    # title region: dark text in every tile, no class colours
    titles = img[:TITLE_HEIGHT]
    for i in range(3):
        assert (titles[:, i * w : (i + 1) * w].max(-1) < 100).sum() > 30
    assert all(_count(titles, pal[CLS[n]], 0) == 0 for n in PRESENT_TOP)


@pytest.mark.timeout(200)
def test_render_side_view_keeps_ceiling_and_legend(room: dict, tmp_path: Path):
    from pcseg.viz.render import LEGEND_ROW_HEIGHT, TITLE_HEIGHT

    out = tmp_path / "side.png"
    w, h = 300, 200
    r = _run_tool(
        [
            room["proc"],
            "--scene",
            "room_1",
            "--render",
            out,
            "--modes",
            "gt",
            "--view",
            "side",
            "--width",
            w,
            "--height",
            h,
            "--point-size",
            3,
        ],
        env=_headless_env(),
        timeout=150,
    )
    assert r.returncode == 0, r.stderr
    img = _read_png(out)
    pal = P.get_palette("s3dis")
    present = sorted(CLS[n] for n in PRESENT_TOP + ("ceiling",))
    legend = P.legend_image(
        S3DIS_CLASSES, pal, width=w, present=present, row_height=LEGEND_ROW_HEIGHT, header="x"
    )
    assert img.shape == (TITLE_HEIGHT + h + legend.shape[0], w, 3)
    tile = img[TITLE_HEIGHT : TITLE_HEIGHT + h]
    assert _count(tile, pal[CLS["ceiling"]]) >= 20
    strip = img[TITLE_HEIGHT + h :]
    for c in present:
        assert _count(strip, pal[c], 0) >= 20
    assert _count(strip, pal[CLS["sofa"]], 0) == 0


_API_SCRIPT = r"""
import sys, numpy as np
from pcseg.viz.data import load_view_data
from pcseg.viz.render import render_modes
v = load_view_data(sys.argv[1], scene="room_1")
panel = render_modes(v, ["weak", "confidence"], sys.argv[2], view="top", width=200, height=150,
                     point_size=2, titles=False, legend=False)
np.save(sys.argv[3], panel)
"""


@pytest.mark.timeout(200)
def test_render_modes_api_weak_markers(room: dict, tmp_path: Path):
    out, arr = tmp_path / "api.png", tmp_path / "api.npy"
    r = subprocess.run(
        [PY, "-c", _API_SCRIPT, str(room["run"]), str(out), str(arr)],
        capture_output=True,
        text=True,
        timeout=150,
        env=_headless_env(),
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    panel = np.load(arr)
    assert panel.shape == (150, 400, 3)
    np.testing.assert_array_equal(_read_png(out), panel)
    weak, conf = panel[:, :200], panel[:, 200:]
    pal = P.get_palette("s3dis")
    assert _count(weak, P.UNLABELLED_COLOR) > 500
    for name in ("floor", "wall", "table"):  # markers at the labelled points, in class colours
        assert _count(weak, pal[CLS[name]]) >= 10, name
    from matplotlib import colormaps

    lo = np.asarray(colormaps[C.CONFIDENCE_CMAP](0.2, bytes=True)[:3])
    hi = np.asarray(colormaps[C.CONFIDENCE_CMAP](0.9, bytes=True)[:3])
    assert _count(conf, lo) >= 10 and _count(conf, hi) > 500


@pytest.mark.timeout(60)
def test_fit_camera_and_hidden_mask(room: dict):
    from pcseg.viz.render import _half_height_needed, fit_camera, hidden_mask

    v = load_view_data(room["run"], scene="room_1")
    top = hidden_mask(v, "top")
    assert top[v.semantic == CLS["ceiling"]].all()
    assert not top[v.semantic == CLS["floor"]].any() and not top[v.semantic == CLS["table"]].any()
    z_lo, z_hi = np.percentile(v.coords[:, 2], [0.5, 99.5])
    wall = v.semantic == CLS["wall"]
    np.testing.assert_array_equal(top[wall], v.coords[wall, 2] > z_lo + 0.9 * (z_hi - z_lo))
    assert not hidden_mask(v, "side").any()
    np.testing.assert_array_equal(hidden_mask(v, "side", ["table"]), v.semantic == CLS["table"])
    with pytest.raises(ValueError, match="unknown class 'robot'"):
        hidden_mask(v, "side", ["robot"])
    cam = fit_camera(v.coords, "top", 400, 300, margin=1.0)
    # top: 4 x 3 m box in a 4:3 window -> half-height 1.5 m
    assert cam["ortho"] and abs(cam["view_ratio"] - 1.5) < 0.05
    np.testing.assert_allclose(cam["lookat"][:2], [2.0, 1.5], atol=0.05)
    # perspective fit: brute-force check that every corner projects inside the window
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-2, 2) for z in (-0.5, 0.5)], float)
    f = np.array([0.0, -0.6, 0.8])
    u = np.array([0.0, 0.8, 0.6])
    r = np.cross(u, f)
    vr = _half_height_needed(corners, r, u, f, 1.5, 40.0)
    dist = vr / np.tan(np.radians(20))
    s = dist / (dist - corners @ f)
    assert (np.abs(corners @ u) * s).max() <= vr * (1 + 1e-6)
    assert (np.abs(corners @ r) * s).max() <= 1.5 * vr * (1 + 1e-6)
    assert (
        max((np.abs(corners @ u) * s).max() / vr, (np.abs(corners @ r) * s).max() / (1.5 * vr))
        > 0.999
    )


def test_legend_shows_unlabelled_and_ignored_greys():
    from types import SimpleNamespace

    from pcseg.viz.render import legend_extras

    sem = np.array([0, 1, -1, 2])
    view = SimpleNamespace(
        semantic=sem,
        pred=np.array([0, 2, 1, 2]),
        pseudo=None,
        labelled=np.array([True, False, False, False]),
    )
    vis = np.ones(4, bool)
    extras = legend_extras(view, ["gt", "weak", "error"], vis)
    names = [n for n, _ in extras]
    assert names[:2] == ["unlabelled", "ignored (no label)"] and "wrong" in names
    assert legend_extras(view, ["gt"], np.array([True, True, False, True])) == []
    pal = P.get_palette("s3dis")
    img = P.legend_image(S3DIS_CLASSES, pal, width=700, present=[0], extra=extras)
    for rgb in (P.UNLABELLED_COLOR, P.IGNORE_COLOR, P.ERROR_COLOR, C.DARK_COLOR):
        assert _count(img, rgb, 0) >= 20, rgb


def test_private_runtime_dir(monkeypatch, tmp_path):
    from pcseg.viz.render import private_runtime_dir

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    d = Path(private_runtime_dir())
    assert os.environ["XDG_RUNTIME_DIR"] == str(d) and d.is_dir()
    assert (d.stat().st_mode & 0o777) == 0o700
    bad = tmp_path / "open"
    bad.mkdir(mode=0o755)
    bad.chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(bad))
    assert private_runtime_dir() != str(bad)


@pytest.mark.timeout(200)
def test_render_prints_no_runtime_dir_error(room: dict, tmp_path: Path):
    """A successful render says nothing about XDG_RUNTIME_DIR (Mesa's EGL complained)."""
    env = _headless_env()
    env.pop("XDG_RUNTIME_DIR", None)
    out = tmp_path / "r.png"
    r = _run_tool(
        [
            room["proc"],
            "--scene",
            "room_1",
            "--render",
            out,
            "--modes",
            "gt,weak",
            "--view",
            "top",
            "--width",
            160,
            "--height",
            120,
        ],
        env=env,
        timeout=150,
    )
    assert r.returncode == 0, r.stderr
    assert "XDG_RUNTIME_DIR" not in r.stderr + r.stdout, r.stderr
    strip = _read_png(out)[-60:]
    assert _count(strip, P.UNLABELLED_COLOR, 0) >= 20  # the legend lists the weak mode's grey


# ----------------------------------------------------------------------------- layout
def test_panels_hold_at_most_three_tiles_a_row():
    """Issue 24 item 8: six modes were one row of six (3840 x 568 at the default size)."""
    from pcseg.viz.render import TITLE_HEIGHT, compose_panel, grid_shape, tile_grid

    assert [grid_shape(n) for n in (1, 2, 3, 4, 6, 7)] == [
        (1, 1), (1, 2), (1, 3), (2, 3), (2, 3), (3, 3)
    ]  # fmt: skip
    h, w = 30, 40
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (0, 200, 200), (90, 0, 90)]
    tiles = [np.full((h, w, 3), c, np.uint8) for c in colours]
    for n in (2, 4, 6):
        panel = compose_panel(tiles[:n], [f"t{i}" for i in range(n)])
        rows, cols = -(-n // 3), min(n, 3)
        assert panel.shape == (rows * (TITLE_HEIGHT + h), cols * w, 3)
        for i in range(n):  # tile i sits in row i // 3, column i % 3, under its title
            r, c = divmod(i, 3)
            y, x = r * (TITLE_HEIGHT + h) + TITLE_HEIGHT + h // 2, c * w + w // 2
            assert tuple(panel[y, x]) == colours[i], (n, i)
            title = panel[r * (TITLE_HEIGHT + h) : r * (TITLE_HEIGHT + h) + TITLE_HEIGHT,
                          c * w + 2 : (c + 1) * w]  # fmt: skip
            assert (title.max(-1) < 100).sum() > 5  # its title's dark text
        if n == 4:  # the empty cells of the last row stay white
            assert (panel[TITLE_HEIGHT + h :, w + 1 :] == 255).all()
    bare = tile_grid(tiles[:5])
    assert bare.shape == (2 * h, 3 * w, 3) and tuple(bare[h + 1, 2 * w + 1]) == (255, 255, 255)
    with pytest.raises(ValueError, match="legend width 240 != panel width 120"):
        compose_panel(tiles, ["t"] * 6, legend=np.zeros((10, 240, 3), np.uint8))


@pytest.mark.timeout(200)
def test_default_six_mode_render_is_two_rows_of_three(room: dict, tmp_path: Path):
    from pcseg.viz.render import TITLE_HEIGHT

    out = tmp_path / "six.png"
    w, h = 200, 150
    args = [room["run"], "--scene", "room_1", "--render", out, "--view", "top"]
    r = _run_tool(
        [*args, "--width", w, "--height", h, "--point-size", 3, "--no-legend"],
        env=_headless_env(),
        timeout=150,
    )
    assert r.returncode == 0, r.stderr
    assert "modes rgb,gt,weak,pseudo,pred,error" in r.stdout
    img = _read_png(out)
    cell = TITLE_HEIGHT + h
    assert img.shape == (2 * cell, 3 * w, 3)
    pal = P.get_palette("s3dis")

    def tile(r_, c_):
        return img[r_ * cell + TITLE_HEIGHT : (r_ + 1) * cell, c_ * w + 1 : (c_ + 1) * w]

    gt, pred, err = tile(0, 1), tile(1, 1), tile(1, 2)
    assert _count(gt, pal[CLS["chair"]]) >= 20 and _count(gt, pal[CLS["sofa"]]) == 0
    assert _count(pred, pal[CLS["sofa"]]) >= 20 and _count(pred, pal[CLS["chair"]]) == 0
    assert _count(err, C.WRONG_COLOR) >= 20 and _count(tile(0, 2), C.WRONG_COLOR) == 0
