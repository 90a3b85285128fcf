"""pcseg.viz: palettes, colour modes, loading, headless renders, PLY, curves, viewer.

Open3D rendering runs in subprocesses with timeouts (a GL hang must not hang pytest). The
synthetic room is built here: regular grids on a floor, a ceiling, two walls, a table top and
a chair seat with known S3DIS classes.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pcseg.data.classes import S3DIS_CLASSES, SCANNET_CLASSES, SEMANTICKITTI_CLASSES
from pcseg.io.atomic import atomic_save_npy, atomic_save_npz, atomic_write_json
from pcseg.viz import colors as C
from pcseg.viz import palettes as P
from pcseg.viz.data import ViewData, load_view_data, open_source

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
VIEW = ["-m", "pcseg", "view"]  # the `pcseg view` command, run as a child process
CLS = {n: i for i, n in enumerate(S3DIS_CLASSES)}
PRESENT_TOP = ("floor", "wall", "table", "chair")  # ceiling is hidden in top views


# ----------------------------------------------------------------------------- fixtures
def _grid(
    a: tuple[float, float], b: tuple[float, float], step: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(
        np.arange(a[0], a[1] + 1e-9, step), np.arange(b[0], b[1] + 1e-9, step), indexing="ij"
    )
    return u.ravel(), v.ravel()


def _room(with_chair: bool = True) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    x, y = _grid((0, 4), (0, 3))
    parts.append((np.stack([x, y, np.zeros_like(x)], 1), "floor"))
    parts.append((np.stack([x, y, np.full_like(x, 2.8)], 1), "ceiling"))
    y2, z2 = _grid((0, 3), (0.05, 2.75))
    parts.append((np.stack([np.zeros_like(y2), y2, z2], 1), "wall"))
    x3, z3 = _grid((0.05, 4), (0.05, 2.75))
    parts.append((np.stack([x3, np.full_like(x3, 3.0), z3], 1), "wall"))
    x4, y4 = _grid((1.5, 2.5), (1.0, 2.0), 0.04)
    parts.append((np.stack([x4, y4, np.full_like(x4, 0.75)], 1), "table"))
    if with_chair:
        x5, y5 = _grid((0.5, 0.9), (0.5, 0.9), 0.03)
        parts.append((np.stack([x5, y5, np.full_like(x5, 0.45)], 1), "chair"))
    coords = np.concatenate([p for p, _ in parts]).astype(np.float32)
    sem = np.concatenate([np.full(len(p), CLS[c]) for p, c in parts]).astype(np.int64)
    return coords, sem


@pytest.fixture
def room(tmp_path: Path) -> dict:
    """processed folder tmp/proc (2 scenes, spec 1%) + run folder tmp/run with predictions."""
    proc, run = tmp_path / "proc", tmp_path / "run"
    rng = np.random.default_rng(0)
    info = {}
    for name, chair in (("room_1", True), ("room_2", False)):
        coords, sem = _room(chair)
        n = len(coords)
        feats = rng.uniform(0, 1, (n, 3)).astype(np.float32)
        atomic_save_npz(
            proc / "scenes" / f"{name}.npz",
            coords=coords,
            feats=feats,
            semantic=sem,
            instance=np.full(n, -1, np.int64),
        )
        atomic_write_json(
            proc / "scenes" / f"{name}.json",
            {
                "name": name,
                "dataset": "s3dis",
                "class_names": list(S3DIS_CLASSES),
                "source": "test",
                "num_points": n,
                "feat_kind": "rgb",
                "class_counts": np.bincount(sem, minlength=13).tolist(),
                "extra": {},
            },
        )
        idx = np.arange(0, n, 50, dtype=np.int64)
        atomic_save_npy(proc / "labels" / "1pct" / f"{name}.npy", idx)
        pred = sem.copy()
        pred[sem == CLS["chair"]] = CLS["sofa"]
        pseudo = np.where(sem == CLS["floor"], sem, -1)
        conf = np.where(sem == CLS["chair"], 0.2, 0.9).astype(np.float32)
        ent = np.where(sem == CLS["chair"], 2.0, 0.1).astype(np.float32)
        atomic_save_npz(
            run / "test" / "predictions" / f"{name}.npz",
            pred=pred,
            pseudo=pseudo,
            confidence=conf,
            entropy=ent,
        )
        info[name] = dict(
            coords=coords,
            sem=sem,
            feats=feats,
            idx=idx,
            pred=pred,
            pseudo=pseudo,
            conf=conf,
            ent=ent,
        )
    atomic_write_json(
        proc / "meta.json",
        {
            "dataset": "s3dis",
            "class_names": list(S3DIS_CLASSES),
            "voxel_size": 0.05,
            "splits": {"val": ["room_1", "room_2"]},
            "label_specs": ["1%"],
            "seed": 0,
        },
    )
    run.mkdir(parents=True, exist_ok=True)
    # relative root: resolved against the run folder's parent
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"root": "proc", "label_spec": "1%"}}))
    return {"proc": proc, "run": run, "scenes": info}


def _run_tool(
    args: list[str], timeout: float = 120, env: dict | None = None
) -> subprocess.CompletedProcess:
    e = dict(os.environ if env is None else env)
    e.setdefault("PYTHONPATH", str(REPO))
    return subprocess.run(
        [PY, *VIEW, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        cwd=REPO,
    )


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _count(img: np.ndarray, rgb, tol: int = 3) -> int:
    return int((np.abs(img.astype(int) - np.asarray(rgb, int)).max(-1) <= tol).sum())


def _headless_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(REPO)
    return env


# ----------------------------------------------------------------------------- palettes
@pytest.mark.timeout(60)
def test_palettes_distinct_and_sized():
    for dataset, names in (
        ("s3dis", S3DIS_CLASSES),
        ("scannet", SCANNET_CLASSES),
        ("semantickitti", SEMANTICKITTI_CLASSES),
    ):
        pal = P.get_palette(dataset)
        assert pal.shape == (len(names), 3) and pal.dtype == np.uint8
        assert len({tuple(c) for c in pal}) == len(names), f"{dataset}: duplicate class colours"
        for reserved in (P.IGNORE_COLOR, P.UNLABELLED_COLOR, (255, 255, 255)):
            assert tuple(reserved) not in {tuple(int(v) for v in c) for c in pal}
    gen = P.generic_palette(70)
    dist = np.abs(gen[:, None].astype(int) - gen[None].astype(int)).max(-1)
    assert (dist + 999 * np.eye(70, dtype=int)).min() >= 12
    assert all(
        np.abs(gen.astype(int) - np.asarray(r)).max(-1).min() >= 12 for r in P.RESERVED_COLORS
    )


@pytest.mark.timeout(60)
def test_palette_values_from_the_customary_tables():
    s3dis = {
        "ceiling": (0, 255, 0),
        "floor": (0, 0, 255),
        "wall": (0, 255, 255),
        "beam": (255, 255, 0),
        "column": (255, 0, 255),
        "window": (100, 100, 255),
        "door": (200, 200, 100),
        "table": (170, 120, 200),
        "chair": (255, 0, 0),
        "sofa": (200, 100, 100),
        "bookcase": (10, 200, 100),
        "board": (200, 200, 200),
        "clutter": (50, 50, 50),
    }
    scannet = {
        "wall": (174, 199, 232),
        "floor": (152, 223, 138),
        "cabinet": (31, 119, 180),
        "bed": (255, 187, 120),
        "chair": (188, 189, 34),
        "sofa": (140, 86, 75),
        "table": (255, 152, 150),
        "door": (214, 39, 40),
        "window": (197, 176, 213),
        "bookshelf": (148, 103, 189),
        "picture": (196, 156, 148),
        "counter": (23, 190, 207),
        "desk": (247, 182, 210),
        "curtain": (219, 219, 141),
        "refrigerator": (255, 127, 14),
        "shower curtain": (158, 218, 229),
        "toilet": (44, 160, 44),
        "sink": (112, 128, 144),
        "bathtub": (227, 119, 194),
        "otherfurniture": (82, 84, 163),
    }
    for dataset, table, names in (
        ("s3dis", s3dis, S3DIS_CLASSES),
        ("scannet", scannet, SCANNET_CLASSES),
    ):
        pal = P.get_palette(dataset)
        for i, n in enumerate(names):
            assert tuple(int(v) for v in pal[i]) == table[n], (dataset, n)
    # custom class list: known names keep their colour, new names get distinct new colours
    pal = P.get_palette("s3dis", ["floor", "robot", "chair", "plant"])
    assert tuple(pal[0]) == (0, 0, 255) and tuple(pal[2]) == (255, 0, 0)
    assert len({tuple(c) for c in pal}) == 4
    # explicit colours (a CLASSES.yaml's) win over the canonical and the generic ones
    pal2 = P.get_palette(
        "s3dis",
        ["floor", "robot", "chair", "plant"],
        colors={"floor": [1, 2, 3], "plant": [9, 8, 7]},
    )
    assert tuple(pal2[0]) == (1, 2, 3) and tuple(pal2[3]) == (9, 8, 7)
    np.testing.assert_array_equal(pal2[1:3], pal[1:3])
    with pytest.raises(ValueError, match=r"robot: expected \[r, g, b\] in 0..255"):
        P.get_palette("custom", ["robot"], colors={"robot": [300, 0, 0]})


@pytest.mark.timeout(60)
def test_semantickitti_palette_bgr_yaml(tmp_path: Path):
    # a yaml whose learning_map_inv points every learning id at a raw id with a known BGR colour
    cmap = {0: [0, 0, 0]}
    inv = {0: 0}
    expected = np.zeros((19, 3), np.uint8)
    for i in range(1, 20):
        raw = 100 + 3 * i
        b, g, r = i, 10 * i, 255 - i
        cmap[raw] = [b, g, r]
        inv[i] = raw
        expected[i - 1] = (r, g, b)
    y = tmp_path / "sk.yaml"
    y.write_text(yaml.safe_dump({"color_map": cmap, "learning_map_inv": inv}))
    np.testing.assert_array_equal(P.semantickitti_palette(y), expected)
    np.testing.assert_array_equal(P.get_palette("semantickitti", kitti_yaml=y), expected)
    del inv[7]
    y.write_text(yaml.safe_dump({"color_map": cmap, "learning_map_inv": inv}))
    with pytest.raises(ValueError, match="learning id 7"):
        P.semantickitti_palette(y)


@pytest.mark.timeout(60)
def test_semantickitti_fallback_equals_official_yaml(real_data: Path):
    y = real_data / "semantickitti" / "semantic-kitti.yaml"
    np.testing.assert_array_equal(P.semantickitti_palette(y), P.semantickitti_palette(None))
    # hand check: car raw 10 is BGR [245, 150, 100] in the yaml
    assert tuple(P.semantickitti_palette(y)[0]) == (100, 150, 245)


@pytest.mark.timeout(60)
def test_legend_text_and_image():
    pal = P.get_palette("s3dis")
    txt = P.legend_text(S3DIS_CLASSES, pal, counts=[5] + [0] * 12, only_present=True)
    assert txt.splitlines() == ["  0  ceiling   (  0, 255,   0)           5"]  # names padded to 8
    img = P.legend_image(S3DIS_CLASSES, pal, width=400, present=[1, 8], row_height=22, header="hdr")
    assert img.shape == (44, 400, 3)  # header row + one row of two entries
    assert _count(img, pal[1], 0) > 20 and _count(img, pal[8], 0) > 20
    assert _count(img, pal[0], 0) == 0


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


# ----------------------------------------------------------------------------- loading
@pytest.mark.timeout(60)
def test_load_view_data_sources(room: dict):
    ref = room["scenes"]["room_1"]
    n = len(ref["coords"])
    v = load_view_data(room["proc"])  # single spec in meta.json -> used
    assert v.name == "room_1" and v.num_points == n and v.label_spec == "1%"
    np.testing.assert_array_equal(np.flatnonzero(v.labelled), ref["idx"])
    assert v.pred is None
    v = load_view_data(room["proc"] / "scenes" / "room_2.npz")
    assert v.name == "room_2"
    v = load_view_data(room["run"], scene="room_1")
    np.testing.assert_array_equal(v.pred, ref["pred"])
    np.testing.assert_array_equal(v.pseudo, ref["pseudo"])
    np.testing.assert_allclose(v.confidence, ref["conf"])
    np.testing.assert_array_equal(v.semantic, ref["sem"])
    assert open_source(room["run"]).scenes == ["room_1", "room_2"]


@pytest.mark.timeout(60)
def test_viewer_takes_the_colours_of_the_class_spec(room: dict, tmp_path: Path):
    # a `pcseg prepare custom` folder keeps its CLASSES.yaml in meta.json; its colours are used
    proc = tmp_path / "proc_custom"
    shutil.copytree(room["proc"], proc)
    meta = json.loads((proc / "meta.json").read_text())
    first = meta["class_names"][0]
    meta["classes"] = {"colors": {first: [12, 34, 56]}}
    (proc / "meta.json").write_text(json.dumps(meta))
    v = load_view_data(proc)
    assert tuple(int(c) for c in v.palette[0]) == (12, 34, 56)
    np.testing.assert_array_equal(v.palette[1:], load_view_data(room["proc"]).palette[1:])


@pytest.mark.timeout(60)
def test_load_errors_name_the_files(room: dict):
    run, proc = room["run"], room["proc"]
    with pytest.raises(ValueError, match="room_9"):
        load_view_data(run, scene="room_9")
    with pytest.raises(FileNotFoundError, match="available: 1pct"):
        load_view_data(proc, label_spec="0.1%")
    atomic_save_npz(run / "test" / "predictions" / "room_2.npz", pred=np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"room_2\.npz: pred has shape \(5,\)"):
        load_view_data(run, scene="room_2")
    (proc / "labels" / "1pct" / "room_1.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"1pct/room_1\.npy"):
        load_view_data(run, scene="room_1")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"root": "nowhere"}}))
    with pytest.raises(FileNotFoundError, match="config.yaml: data.root 'nowhere'"):
        load_view_data(run)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {}}))
    with pytest.raises(ValueError, match="data.root"):
        load_view_data(run)


# ----------------------------------------------------------------------------- PLY
@pytest.mark.timeout(60)
def test_export_ply_round_trip(tmp_path: Path, room: dict):
    from plyfile import PlyData

    from pcseg.viz.ply import export_ply

    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    lab = rng.integers(-1, 13, 50)
    export_ply(tmp_path / "a.ply", xyz, rgb, lab)
    vert = PlyData.read(str(tmp_path / "a.ply"))["vertex"]
    assert [p.name for p in vert.properties] == ["x", "y", "z", "red", "green", "blue", "label"]
    np.testing.assert_array_equal(np.stack([vert["x"], vert["y"], vert["z"]], 1), xyz)
    np.testing.assert_array_equal(np.stack([vert["red"], vert["green"], vert["blue"]], 1), rgb)
    np.testing.assert_array_equal(vert["label"], lab)
    assert (
        vert["red"].dtype == np.uint8
        and vert["x"].dtype == np.float32
        and vert["label"].dtype == np.int32
    )
    export_ply(tmp_path / "b.ply", xyz, np.full((50, 3), 0.5), None, binary=False)
    vert = PlyData.read(str(tmp_path / "b.ply"))["vertex"]
    assert set(vert["red"]) == {128} and "label" not in [p.name for p in vert.properties]
    with pytest.raises(ValueError, match="colors must be"):
        export_ply(tmp_path / "c.ply", xyz, rgb[:3])
    # CLI: --export-ply --mode pred writes palette[pred] and the pred labels
    from pcseg.cli.main import main

    assert (
        main(
            [
                "view",
                str(room["run"]),
                "--scene",
                "room_1",
                "--export-ply",
                str(tmp_path / "p.ply"),
                "--mode",
                "pred",
            ]
        )
        == 0
    )
    vert = PlyData.read(str(tmp_path / "p.ply"))["vertex"]
    pred = room["scenes"]["room_1"]["pred"]
    np.testing.assert_array_equal(vert["label"], pred)
    np.testing.assert_array_equal(
        np.stack([vert["red"], vert["green"], vert["blue"]], 1), P.get_palette("s3dis")[pred]
    )
    assert (
        main(["view", str(room["proc"]), "--export-ply", str(tmp_path / "q.ply"), "--mode", "pred"])
        == 2
    )


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


# ----------------------------------------------------------------------------- curves
@pytest.mark.timeout(120)
def test_plot_curves_from_tensorboard(tmp_path: Path):
    from torch.utils.tensorboard import SummaryWriter

    from pcseg.viz.curves import curve_group, plot_curves, read_scalars

    run = tmp_path / "run"
    wr = SummaryWriter(str(run / "tb"))
    for s in range(10):
        wr.add_scalar("train/loss", 2.0 / (s + 1), s)
        wr.add_scalar("train/loss_erda", 0.5 - 0.01 * s, s)
        wr.add_scalar("train/pseudo_acc", 0.5 + 0.03 * s, s)
        wr.add_scalar("diag/mask_ratio", 0.1 * s, s)
        wr.add_scalar("train/lr", 0.01 * 0.9**s, s)
        wr.add_scalar("misc/ignored", 1.0, s)
    wr.close()
    wr = SummaryWriter(str(run / "tb" / "val"))  # a second events folder is merged in
    for s in (4, 9):
        wr.add_scalar("val/miou", 0.1 * s, s)
    wr.close()
    sc = read_scalars(run / "tb")
    np.testing.assert_array_equal(sc["val/miou"][0], [4, 9])
    np.testing.assert_allclose(sc["val/miou"][1], [0.4, 0.9], rtol=1e-6)
    np.testing.assert_allclose(sc["train/loss"][1], [2.0 / (s + 1) for s in range(10)], rtol=1e-6)
    assert [
        curve_group(t)
        for t in (
            "train/loss",
            "val/miou",
            "train/pseudo_acc",
            "diag/x",
            "train/diag/y",
            "train/lr",
            "misc/z",
        )
    ] == ["losses", "validation", "pseudo", "pseudo", "pseudo", "lr", None]
    out = tmp_path / "curves.png"
    groups = plot_curves(run, out, smooth=0.5)
    assert groups == {
        "losses": ["train/loss", "train/loss_erda"],
        "validation": ["val/miou"],
        "pseudo": ["diag/mask_ratio", "train/pseudo_acc"],
        "lr": ["train/lr"],
    }
    assert _read_png(out).shape == (int(3.8 * 2 * 110), int(6.0 * 2 * 110), 3)
    # CLI and errors
    r = _run_tool([run, "--curves", tmp_path / "c2.png"], env=_headless_env(), timeout=100)
    assert r.returncode == 0 and (tmp_path / "c2.png").is_file(), r.stderr
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="tb"):
        plot_curves(tmp_path / "empty", tmp_path / "x.png")


# ----------------------------------------------------------------------------- viewer
@pytest.mark.timeout(60)
def test_viewer_without_display_exits_cleanly(room: dict):
    from pcseg.viz.viewer import display_problem

    assert "unset" in display_problem({})
    assert "XWayland" in display_problem({"WAYLAND_DISPLAY": "wayland-0"})
    import ctypes.util

    if ctypes.util.find_library("X11"):
        assert "cannot open X display" in display_problem({"DISPLAY": ":987654"})
    t = time.monotonic()
    r = _run_tool([room["run"]], env=_headless_env(), timeout=50)
    assert r.returncode == 2
    assert "--render" in r.stderr and "DISPLAY" in r.stderr
    assert time.monotonic() - t < 50


def _wait_for(cond, timeout: float, what: str):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(180)
@pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")), reason="Xvfb and xdotool not installed"
)
def test_viewer_keys_under_xvfb(room: dict, tmp_path: Path):
    r_fd, w_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w_fd), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(w_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(w_fd)
    viewer = None
    try:
        num = b""
        t = time.monotonic()
        while not num.endswith(b"\n") and time.monotonic() - t < 30:
            if not select.select([r_fd], [], [], 1.0)[0]:
                continue
            chunk = os.read(r_fd, 16)
            if not chunk:
                break
            num += chunk
        if not num.strip():
            pytest.skip("Xvfb is installed but did not start (no display number reported)")
        env = _headless_env()
        env["DISPLAY"] = f":{int(num.strip())}"
        shots = tmp_path / "shots"
        log = open(tmp_path / "viewer.log", "w")
        viewer = subprocess.Popen(
            [
                PY,
                *VIEW,
                str(room["run"]),
                "--scene",
                "room_1",
                "--screenshot-dir",
                str(shots),
                "--exit-after",
                "90",
                "--point-size",
                "4",
            ],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def xdo(*args: str) -> str:
            return subprocess.run(
                ["xdotool", *args], env=env, capture_output=True, text=True, timeout=20
            ).stdout

        wid: list[str] = []

        def found() -> bool:
            assert viewer.poll() is None, (tmp_path / "viewer.log").read_text()
            wid[:] = xdo("search", "--name", "pcseg viewer").split()
            return bool(wid)

        _wait_for(found, 60, "the viewer window")
        xdo("windowfocus", "--sync", wid[0])

        def press(key: str, pattern: str, mode: str | None = None) -> Path:
            """Press ``mode`` (a direct mode key, idempotent) then ``key`` until a file
            matching ``pattern`` appears: on a loaded machine a key sent while the window
            is still busy can be lost, so the keys are sent again (up to 4 times)."""
            for _ in range(4):
                xdo("windowfocus", "--sync", wid[0])
                if mode is not None:
                    xdo("key", "--clearmodifiers", mode)
                xdo("key", "--clearmodifiers", key)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 10:
                    if any(shots.glob(pattern)):
                        return next(shots.glob(pattern))
                    time.sleep(0.1)
            raise AssertionError(f"timed out waiting for {pattern}")

        time.sleep(0.5)
        rgb_png = press("s", "room_1_rgb_*.png")
        gt_png = press("s", "room_1_gt_*.png", mode="2")  # -> gt mode
        a, b = _read_png(rgb_png), _read_png(gt_png)
        assert a.shape == b.shape and (a != b).any()
        pal = P.get_palette("s3dis")
        for name in ("floor", "wall", "ceiling"):  # the viewer shows the whole room
            assert _count(b, pal[CLS[name]]) >= 50, name
        assert _count(b, pal[CLS["sofa"]]) == 0
        pred_png = press("s", "room_1_pred_*.png", mode="4")  # -> pred: the chair is a sofa
        c = _read_png(pred_png)
        assert _count(c, pal[CLS["sofa"]]) >= 10 and _count(c, pal[CLS["chair"]]) == 0
        for _ in range(3):  # a key can be lost on a loaded machine: send q again
            xdo("key", "q")
            try:
                viewer.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        viewer.wait(timeout=30)
        assert viewer.returncode == 0
        text = (tmp_path / "viewer.log").read_text()
        assert "mode gt" in text and "mode pred" in text
    finally:
        for proc in (viewer, xvfb):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        os.close(r_fd)


# ----------------------------------------------------------------------------- hardening


def test_error_colour_is_in_no_palette():
    """Wrong points are drawn in a colour no class palette uses (red was SemanticKITTI's
    traffic-sign and S3DIS's chair)."""
    pals = {
        name: np.asarray(v)
        for name, v in vars(P).items()
        if isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[1] == 3
    }
    pals.update({f"get_palette({d})": P.get_palette(d) for d in P.DATASET_PALETTES})
    pals["generic_palette(80)"] = P.generic_palette(80)
    assert {"S3DIS_COLORS", "SCANNET_COLORS", "SEMANTICKITTI_COLORS"} <= set(pals)
    assert tuple(C.WRONG_COLOR) == tuple(P.ERROR_COLOR)
    for name, pal in pals.items():
        dist = np.sqrt(((pal.astype(float) - np.asarray(C.WRONG_COLOR, float)) ** 2).sum(1))
        assert dist.min() > 60, (name, pal[dist.argmin()])
    err = C.error_colors(np.array([0, 1, -1]), np.array([0, 2, 1]))
    assert tuple(err[1]) == tuple(P.ERROR_COLOR)


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


def test_weak_labels_are_read_by_the_processed_reader(tmp_path: Path):
    """The viewer reads label files with pcseg.data.processed.load_label_file: both forms,
    and the same refusals (another scene's indices, a class off the list, unsorted rows)."""
    from pcseg.viz.data import load_weak_labels

    folder = tmp_path / "labels" / "import_annotate"
    folder.mkdir(parents=True)
    atomic_save_npy(folder / "s.npy", np.array([[1, 2], [4, 0]], np.int64))
    mask, cls, path = load_weak_labels(tmp_path, "import:annotate", "s", 6, 3)
    assert path == folder / "s.npy" and mask.tolist() == [0, 1, 0, 0, 1, 0]
    assert cls.tolist() == [-1, 2, -1, -1, 0, -1]
    atomic_save_npy(folder / "s.npy", np.array([3, 5], np.int64))
    mask, cls, _ = load_weak_labels(tmp_path, "import:annotate", "s", 6, 3)
    assert mask.tolist() == [0, 0, 0, 1, 0, 1] and cls is None
    for rows, match in (
        ([[1, 0], [6, 1]], "out of range for a scene of 6 points"),
        ([[1, 3]], r"class column .*\[0, 2\]"),
        ([[4, 0], [1, 1]], "sorted, unique"),
    ):
        atomic_save_npy(folder / "s.npy", np.array(rows, np.int64))
        with pytest.raises(ValueError, match=match):
            load_weak_labels(tmp_path, "import:annotate", "s", 6, 3)
    with pytest.raises(FileNotFoundError, match="no label folder for spec '1pt'"):
        load_weak_labels(tmp_path, "1pt", "s", 6, 3)
