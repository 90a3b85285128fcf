"""The browser front end driven as a person would: ``pcseg annotate`` in a subprocess, headless
Chromium (WebGL on SwiftShader) clicking at the screen positions of known points, keys for
class / tool / accept / undo; the saved label file is checked, then trains (``pcseg train``,
2 iterations, data.label_spec=import:annotate) on an unlabelled scan (ground truth all -1).
The screenshot of the tool in use goes to docs/images/annotate.png when that is missing or
PCSEG_UPDATE_SCREENSHOTS=1.

The screen position of a point comes from the camera the browser reports to the server
(position, orientation, field of view, image size; written by the hidden --debug-json hook).
Skips when viser, selenium, chromium or chromedriver is missing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.paths import REPO

from pcseg.data import processed
from pcseg.data.classes import S3DIS_CLASSES
from pcseg.data.scene import Scene

pytest.importorskip("viser", reason="viser not installed (pip install 'pcseg[annotate]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = [pytest.mark.timeout(240)]
FLOOR, WALL, TABLE, CHAIR = 1, 2, 7, 8
IMAGE = REPO / "docs" / "images" / "annotate.png"


def _room() -> Scene:
    """A 4 m x 3 m floor, a wall at y = 3 and a table top at z = 0.75 (0.05 m grid), colours
    per surface, and no ground truth at all (semantic -1): an unlabelled scan."""
    rng = np.random.default_rng(0)
    s = 0.05
    fx, fy = np.meshgrid(np.arange(0, 4, s), np.arange(0, 3, s), indexing="ij")
    floor = np.stack([fx.ravel(), fy.ravel(), np.zeros(fx.size)], 1)
    wx, wz = np.meshgrid(np.arange(0, 4, s), np.arange(s, 2.5, s), indexing="ij")
    wall = np.stack([wx.ravel(), np.full(wx.size, 3.0), wz.ravel()], 1)
    tx, ty = np.meshgrid(np.arange(1.5, 2.5, s), np.arange(1.0, 1.8, s), indexing="ij")
    table = np.stack([tx.ravel(), ty.ravel(), np.full(tx.size, 0.75)], 1)
    coords = np.concatenate([floor, wall, table])
    cols = [
        np.tile(c, (len(p), 1))
        for c, p in (
            ([0.6, 0.45, 0.3], floor),
            ([0.85, 0.85, 0.8], wall),
            ([0.2, 0.3, 0.75], table),
        )
    ]
    feats = np.clip(np.concatenate(cols) + rng.normal(0, 0.02, (len(coords), 3)), 0, 1)
    n = len(coords)
    sc = Scene(
        name="Area_1_scan",
        dataset="s3dis",
        coords=coords.astype(np.float32),
        feats=feats.astype(np.float32),
        semantic=np.full(n, -1, np.int64),
        instance=np.full(n, -1, np.int64),
    )
    sc.extra["parts"] = [len(floor), len(wall), len(table)]
    return sc


def _write_room(tmp_path: Path) -> tuple[Path, Scene, Path]:
    root = tmp_path / "processed"
    sc = _room()
    processed.write_scene(root, sc, class_names=S3DIS_CLASSES)
    processed.write_meta(
        root,
        {
            "dataset": "s3dis",
            "class_names": list(S3DIS_CLASSES),
            "voxel_size": 0.05,
            "splits": {"Area_1": [sc.name]},
            "label_specs": [],
            "seed": 0,
        },
    )
    classes = tmp_path / "classes.yaml"
    classes.write_text(
        yaml.safe_dump({"names": list(S3DIS_CLASSES), "colors": {"table": [40, 200, 60]}})
    )
    return root, sc, classes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEBUG: list[Path] = []


def _wait(cond, timeout: float, what: str, step: float = 0.2):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(step)
    last = {k: v for k, v in _read_json(DEBUG[-1]).items() if k != "cameras"} if DEBUG else {}
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (server: {last})")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _rotation(wxyz) -> np.ndarray:
    w, x, y, z = wxyz
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


class Camera:
    """The browser's camera (viser: OpenCV frame, x right, y down, z forward; vertical fov)."""

    def __init__(self, cam: dict):
        self.pos = np.asarray(cam["position"])
        self.R = _rotation(cam["wxyz"])
        self.w, self.h = cam["image_width"], cam["image_height"]
        self.f = 0.5 * self.h / math.tan(0.5 * cam["fov"])
        self.fov = cam["fov"]

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pc = (pts - self.pos) @ self.R
        return np.stack(
            [self.w / 2 + self.f * pc[:, 0] / pc[:, 2], self.h / 2 + self.f * pc[:, 1] / pc[:, 2]],
            1,
        ), pc[:, 2]

    def ray(self, px: float, py: float) -> np.ndarray:
        return self.R @ np.array([(px - self.w / 2) / self.f, (py - self.h / 2) / self.f, 1.0])


def _clickable(cam: Camera, coords: np.ndarray, subset: np.ndarray, box, tol: float):
    """A point of ``subset`` and the integer pixel where a click picks exactly it (also at
    +-1 px), inside ``box`` = (x0, y0, x1, y1) of the canvas."""
    from pcseg.annotate.state import pick_point

    uv, depth = cam.project(coords[subset])
    ok = (
        (depth > 0)
        & (uv[:, 0] > box[0])
        & (uv[:, 0] < box[2])
        & (uv[:, 1] > box[1])
        & (uv[:, 1] < box[3])
    )
    rng = np.random.default_rng(1)
    for j in rng.permutation(np.flatnonzero(ok))[:200]:
        px, py = round(uv[j, 0]), round(uv[j, 1])
        if all(
            pick_point(coords, cam.pos, cam.ray(px + dx, py + dy), tol) == subset[j]
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
        ):
            return int(subset[j]), (px, py)
    raise AssertionError("no clickable point in the box")


@pytest.fixture
def annotated(tmp_path):
    """Run the tool in a browser; returns (processed folder, scene, expected labels)."""
    pytest.importorskip("selenium", reason="selenium not installed (pip install 'pcseg[dev]')")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("chromium / chromedriver not installed (tools/install_system_deps.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    from pcseg.annotate.state import AnnotationState, ClassList

    root, sc, classes = _write_room(tmp_path)
    dbg = tmp_path / "debug.json"
    DEBUG.append(dbg)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pcseg",
            "annotate",
            str(root / "scenes" / f"{sc.name}.npz"),
            "--classes",
            str(classes),
            "--port",
            str(port),
            "--exit-after",
            "200",
            "--debug-json",
            str(dbg),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--use-gl=angle",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1000,700",
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
    ):
        opts.add_argument(a)
    driver = None
    try:
        _wait(lambda: _read_json(dbg).get("ready") or server.poll() is not None, 60, "server")
        assert server.poll() is None, server.stdout.read()
        driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
        driver.set_page_load_timeout(30)
        driver.get(f"http://127.0.0.1:{port}")
        _wait(lambda: _read_json(dbg).get("cameras"), 60, "the browser's camera")
        time.sleep(3)  # let the first frames render
        driver.execute_script(  # dismiss the "software WebGL" notification (screenshot)
            "document.querySelectorAll('[class*=Notification] button').forEach(b => b.click())"
        )
        info = _read_json(dbg)
        cam = Camera(next(iter(info["cameras"].values())))
        rect = driver.execute_script(
            "const c = Array.from(document.querySelectorAll('canvas')).find(c => c.width > 0);"
            "const r = c.getBoundingClientRect(); return [r.left, r.top, r.width, r.height];"
        )
        assert abs(rect[2] - cam.w) <= 1 and abs(rect[3] - cam.h) <= 1, (rect, cam.w, cam.h)
        tol = 8.0 * cam.fov / cam.h  # --pick-px default
        n_floor, n_wall, _ = sc.extra["parts"]
        floor = np.arange(n_floor)
        wall = np.arange(n_floor, n_floor + n_wall)
        table = np.arange(n_floor + n_wall, len(sc.coords))
        # stay clear of the notification (top left) and the control panel (right)
        box = (0.33 * cam.w, 0.3 * cam.h, 0.62 * cam.w, 0.95 * cam.h)

        def key(k: str) -> None:
            ActionChains(driver).send_keys(k).perform()
            time.sleep(0.4)

        def click(pix) -> None:
            ab = ActionBuilder(driver)
            ab.pointer_action.move_to_location(int(rect[0] + pix[0]), int(rect[1] + pix[1]))
            ab.pointer_action.click()
            ab.perform()

        def labelled() -> np.ndarray:
            return np.asarray(_read_json(dbg).get("labelled", -1))

        st = AnnotationState(
            sc.coords, ClassList(list(S3DIS_CLASSES), np.zeros((13, 3), np.uint8)), sc.feats
        )
        # 1) point tool, class floor (key 1)
        p_floor, pix = _clickable(cam, sc.coords, floor, box, tol)
        key("1")
        click(pix)
        _wait(lambda: labelled() == 1, 20, "the floor click")
        st.add([p_floor], FLOOR)
        # 2) brush (key b), class wall (key 2)
        p_wall, pix = _clickable(cam, sc.coords, wall, box, tol)
        key("b")
        key("2")
        click(pix)
        brushed = st.brush(p_wall, 0.15)  # the default brush: 3 x the 0.05 m grid
        st.add(brushed, WALL)
        _wait(lambda: labelled() == st.num_labelled, 20, "the wall brush")
        # 3) region growing (key r) on the table, class table (key 7): preview, then Enter
        p_table, pix = _clickable(cam, sc.coords, table, box, tol)
        key("r")
        key("7")
        click(pix)
        _wait(lambda: "region of" in _read_json(dbg).get("message", ""), 20, "the preview")
        time.sleep(1.5)
        shot = tmp_path / "annotate.png"
        _save_small_png(driver.get_screenshot_as_png(), shot)
        if not IMAGE.is_file() or os.environ.get("PCSEG_UPDATE_SCREENSHOTS") == "1":
            IMAGE.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, IMAGE)
        key("\ue007")  # Enter: accept
        region = st.grow_region(
            p_table, radius=_grow_radius(sc.coords), color_tol=0.15, normal_deg=30
        )
        st.add(region, TABLE)
        _wait(lambda: labelled() == st.num_labelled, 20, "the accepted region")
        # 4) a wrong click, undone with z
        _, pix = _clickable(cam, sc.coords, np.setdiff1d(floor, [p_floor]), box, tol)
        key("p")
        key("8")
        click(pix)
        _wait(lambda: labelled() == st.num_labelled + 1, 20, "the chair click")
        key("z")
        _wait(lambda: labelled() == st.num_labelled, 20, "undo")
        return root, sc, st.labels.copy(), (p_floor, p_wall, p_table, region)
    finally:
        if driver is not None:
            driver.quit()
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()


def _grow_radius(coords: np.ndarray) -> float:
    """The region tool's default step radius (as the web front end computes it)."""
    from pcseg.annotate.web import default_point_size

    return round(max(2.5 * default_point_size(coords) / 1.5, 0.01), 3)


def _save_small_png(png: bytes, out: Path) -> None:
    """The screenshot as a palette PNG (< 300 KB)."""
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    assert out.stat().st_size < 300_000


@pytest.mark.integration
def test_browser_clicks_are_saved_and_train(annotated, tmp_path):
    root, sc, expected, (p_floor, p_wall, p_table, region) = annotated
    arr = np.load(processed.labels_path(root, "import:annotate", sc.name))
    assert arr.dtype == np.int64 and arr.ndim == 2 and arr.shape[1] == 2
    got = np.full(len(sc.coords), -1, np.int64)
    got[arr[:, 0]] = arr[:, 1]
    np.testing.assert_array_equal(got, expected)
    assert got[p_floor] == FLOOR and got[p_wall] == WALL and got[p_table] == TABLE
    n_floor, n_wall, _ = sc.extra["parts"]
    assert set(region.tolist()) == set(range(n_floor + n_wall, len(sc.coords)))  # whole top
    assert (got == CHAIR).sum() == 0  # undone
    shot = tmp_path / "annotate.png"  # also docs/images/annotate.png (PCSEG_UPDATE_SCREENSHOTS=1)
    assert shot.is_file() and shot.stat().st_size < 300_000
    # the saved labels train: 2 iterations on the unlabelled scan
    cfg = {
        "data": {
            "dataset": "s3dis",
            "root": str(root),
            "label_spec": "import:annotate",
            "voxel_size": 0.05,
            "max_voxels": 2000,
            "batch_size": 1,
            "train_split": "Area_1",
            "val_split": None,
            "test_split": "Area_1",
        },
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "method": {"name": "supervised"},
        "train": {
            "iterations": 2,
            "optimizer": "adamw",
            "lr": 0.01,
            "scheduler": "constant",
            "log_every": 1,
            "progress": False,
            "device": "cpu",
        },
        "run_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "pcseg", "train", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["finished"] and summary["iterations"] == 2


def test_front_end_with_a_run(tmp_path):
    """The front end in-process (no browser): a run's predictions give the colour modes and
    suggestions that land in the region whose predictions were corrupted; the tools act on
    the state the same way a click does."""
    from pcseg.annotate.session import open_session
    from pcseg.annotate.web import WebAnnotator

    root, sc, classes = _write_room(tmp_path)
    n = len(sc.coords)
    n_floor, _, _ = sc.extra["parts"]
    pred = np.full(n, FLOOR, np.int64)
    pred[n_floor:] = WALL
    entropy = np.full(n, 0.05, np.float32)
    bad = np.flatnonzero((sc.coords[:, 0] < 0.6) & (sc.coords[:, 2] == 0))  # floor corner
    entropy[bad] = 2.0
    pred[bad] = CHAIR
    run = tmp_path / "run"
    (run / "test" / "predictions").mkdir(parents=True)
    np.savez(
        run / "test" / "predictions" / f"{sc.name}.npz",
        pred=pred,
        pseudo=np.where(np.isin(np.arange(n), bad), FLOOR, pred),
        confidence=(1 - entropy / 3).astype(np.float32),
        entropy=entropy,
    )
    session = open_session(root, classes, scene_id=sc.name, run=run)
    app = WebAnnotator(session, port=_free_port())
    try:
        for mode in app.g_mode.options:
            app.g_mode.value = mode
            assert app._colors().shape == (n, 3)
        assert {"pred", "pseudo", "entropy", "confidence"} <= set(app.g_mode.options)
        app.g_k.value = 3
        app.suggest()
        assert len(app.spots) == 3 and all(s.point in set(bad.tolist()) for s in app.spots)
        app.next_spot()
        app.set_class(CHAIR)
        app.set_tool("brush")
        app.click_point(app.spots[0].point)
        assert app.g_brush.value == 0.15  # 3 point spacings of the 0.05 m grid
        assert session.state.counts()[CHAIR] == len(session.state.brush(app.spots[0].point, 0.15))
        app.set_tool("erase")
        app.click_point(app.spots[0].point)
        assert session.state.num_labelled == 0
        app.set_tool("region")
        app.click_point(0)
        assert app.preview is not None and app.preview.max() < n_floor  # floor only
        assert len(app.preview) > 0.95 * n_floor  # (tilted normals where it meets the wall)
        app.reject()
        assert session.state.num_labelled == 0 and app.preview is None
        app.undo()
        assert session.state.counts()[CHAIR] > 0  # the erase is undone
        app.set_class(13)  # a number key outside the list: a message, nothing changes
        assert "class 13 is outside the class list of" in app.last_message
        assert "classes.yaml: expected 0..12" in app.last_message
        assert app.current_class == CHAIR
    finally:
        app.server.stop()
    saved = np.load(session.label_path)
    assert (saved[:, 1] == CHAIR).all() and len(saved) == session.state.num_labelled


def test_superpoint_tool_shows_what_a_click_spreads_to(tmp_path):
    """The superpoint tool previews the points a label on the clicked point reaches when
    training with data.superpoints (the same over-segmentation and propagation), and Accept
    labels exactly those."""
    from pcseg.annotate.session import open_session
    from pcseg.annotate.web import WebAnnotator
    from pcseg.data.superpoints import SuperpointOptions, propagate_labels, superpoints

    root, sc, classes = _write_room(tmp_path)
    n_floor, _, _ = sc.extra["parts"]
    session = open_session(root, classes, scene_id=sc.name)
    app = WebAnnotator(session, port=_free_port())
    try:
        app.set_class(FLOOR)
        app.set_tool("superpoint")
        app.click_point(0)
        sp = superpoints(sc.coords, sc.feats, SuperpointOptions(voxel_size=0.05))
        spread = propagate_labels(sp, np.array([0]), np.array([FLOOR]))
        np.testing.assert_array_equal(app.preview, np.flatnonzero(spread >= 0))
        assert 1 < len(app.preview) and app.preview.max() < n_floor  # a piece of the floor
        assert "superpoint of" in app.last_message and session.state.num_labelled == 0
        app.accept()
        assert session.state.counts()[FLOOR] == len(spread[spread >= 0])
    finally:
        app.server.stop()
