"""The annotation state (pcseg.annotate.state) on hand-made scenes, and the (M, 2) label file
([point index, class]) read by pcseg.data.processed and the training dataset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pcseg.annotate.state import (
    AnnotationError,
    AnnotationState,
    ClassList,
    load_classes,
    pick_point,
)
from pcseg.data import processed
from pcseg.data.scene import Scene


def _classes(k: int = 3) -> ClassList:
    return ClassList([f"c{i}" for i in range(k)], np.zeros((k, 3), np.uint8))


def _room():
    """A red floor (z=0, 0.1 m grid, 10x10), a grey wall (x=0, 10x10) and a green box 2 m away."""
    g = np.arange(10) * 0.1
    a, b = np.meshgrid(g, g, indexing="ij")
    floor = np.stack([a.ravel() + 0.1, b.ravel(), np.zeros(100)], 1)
    wall = np.stack([np.zeros(100), a.ravel(), b.ravel() + 0.1], 1)
    box = np.stack([a.ravel()[:20] * 0.3 + 3, b.ravel()[:20] * 0.3, np.full(20, 0.5)], 1)
    coords = np.concatenate([floor, wall, box]).astype(np.float32)
    feats = np.concatenate(
        [
            np.tile([0.9, 0.1, 0.1], (100, 1)),
            np.tile([0.5, 0.5, 0.5], (100, 1)),
            np.tile([0.1, 0.9, 0.1], (20, 1)),
        ]
    ).astype(np.float32)
    return coords, feats


def test_add_erase_counts_undo_redo():
    coords, feats = _room()
    st = AnnotationState(coords, _classes(), feats)
    assert st.add([1, 2, 3], 1) == 3
    assert st.add([3, 4], 2) == 2  # point 3 relabelled
    assert st.counts().tolist() == [0, 2, 2]
    assert st.num_labelled == 4 and st.labelled_fraction == pytest.approx(4 / 220)
    assert st.erase([1, 7]) == 1  # 7 was not labelled
    assert st.counts().tolist() == [0, 1, 2]
    assert st.undo() and st.counts().tolist() == [0, 2, 2]
    assert st.undo() and st.labels[3] == 1 and st.labels[4] == -1
    assert st.redo() and st.labels[3] == 2 and st.labels[4] == 2
    st.add([10], 0)  # a new edit drops the redo stack
    assert not st.redo()
    assert st.undo() and st.undo() and st.undo() and not st.undo()
    assert st.num_labelled == 0
    assert "0 / 220 points labelled" in st.summary()


def test_class_outside_list_and_bad_index():
    st = AnnotationState(_room()[0], _classes(3))
    with pytest.raises(AnnotationError, match=r"class 3 is outside the class list.*0\.\.2"):
        st.add([0], 3)
    with pytest.raises(AnnotationError, match="out of range for a scene of 220 points"):
        st.add([220], 0)


def test_brush_and_region_growing():
    coords, feats = _room()
    st = AnnotationState(coords, _classes(), feats)
    near = st.brush(55, 0.15)
    d = np.linalg.norm(coords - coords[55], axis=1)
    assert set(near.tolist()) == set(np.flatnonzero(d <= 0.15).tolist())
    assert st.brush(55, 0).tolist() == [55]
    # the red floor grows to the whole floor: the wall touches it (0.14 m) but is grey
    region = st.grow_region(55, radius=0.15, color_tol=0.2, normal_deg=None)
    assert region.tolist() == list(range(100))
    # same colour everywhere: the normal test alone separates floor from wall
    st2 = AnnotationState(coords, _classes(), np.full_like(feats, 0.5))
    # (PCA normals on the floor row touching the wall tilt: that row may stay out)
    by_normal = st2.grow_region(55, radius=0.15, color_tol=0.2, normal_deg=30)
    assert set(by_normal.tolist()) <= set(range(100)) and len(by_normal) >= 85
    assert len(st2.grow_region(55, radius=0.15, color_tol=0.2, normal_deg=None)) == 200
    # the box is not connected within the radius
    assert set(st.grow_region(205, radius=0.15, color_tol=0.2).tolist()) <= set(range(200, 220))
    assert len(st.grow_region(55, radius=0.15, color_tol=0.2, max_points=10)) == 10
    assert st.add(region, 2) == 100 and st.counts().tolist() == [0, 0, 100]


def test_pick_point_front_most():
    coords = np.array([[0, 0, 5], [0, 0, 2], [0.5, 0, 1], [0.01, 0, 3]], np.float32)
    assert pick_point(coords, [0, 0, 0], [0, 0, 1], 0.01) == 1
    assert pick_point(coords, [0, 0, 0], [0, 0, -1], 0.01) is None
    assert pick_point(coords, [0, 0, 0], [0.5, 0, 1], 0.01) == 2


def test_save_load_resume_and_bad_files(tmp_path):
    coords, feats = _room()
    path = tmp_path / "labels" / "import_annotate" / "room.npy"
    st = AnnotationState(coords, _classes(), feats, path=path)
    st.add([5, 1], 2)
    arr = np.load(path)  # autosaved
    assert arr.dtype == np.int64 and arr.tolist() == [[1, 2], [5, 2]]
    st.erase([5])
    assert np.load(path).tolist() == [[1, 2]]
    st2 = AnnotationState(coords, _classes(), feats, path=path)
    assert st2.load() == 1 and st2.labels[1] == 2
    # an (M,) index file takes its classes from the ground truth
    np.save(tmp_path / "idx.npy", np.array([0, 3], np.int64))
    sem = np.full(220, -1, np.int64)
    sem[0] = 1
    st2.load(tmp_path / "idx.npy", semantic=sem)
    assert st2.labels[0] == 1 and st2.num_labelled == 1
    # another scene's file / classes out of the list / garbage
    np.save(tmp_path / "big.npy", np.array([[5, 0], [400, 1]], np.int64))
    with pytest.raises(AnnotationError, match=r"big\.npy.*400 out of range.*220 points"):
        st2.load(tmp_path / "big.npy")
    np.save(tmp_path / "cls.npy", np.array([[5, 7]], np.int64))
    with pytest.raises(AnnotationError, match=r"cls\.npy.*class column.*\[0, 2\]"):
        st2.load(tmp_path / "cls.npy")
    (tmp_path / "bad.npy").write_bytes(b"xx")
    with pytest.raises(AnnotationError, match=r"bad\.npy is corrupt"):
        st2.load(tmp_path / "bad.npy")
    assert st2.labels[0] == 1  # failed loads keep what was there


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        st = AnnotationState(_room()[0], _classes(), path=ro / "x" / "room.npy")
        with pytest.raises(AnnotationError, match=r"cannot write the label file .*room\.npy"):
            st.add([0], 0)
    finally:
        ro.chmod(0o700)


def test_read_only_folder_message(tmp_path, monkeypatch):
    """Same message when the OS refuses the write (simulated, as root ignores permissions)."""

    def refuse(path, arr):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(processed, "atomic_save_npy", refuse)
    st = AnnotationState(_room()[0], _classes(), path=tmp_path / "out" / "room.npy")
    with pytest.raises(
        AnnotationError,
        match=r"cannot write the label file .*room\.npy: "
        r"Permission denied.*writable folder",
    ):
        st.add([0], 0)
    assert st.labels[0] == 0  # the edit is kept in memory; a later save can still write it


def test_autosave_survives_kill(tmp_path):
    """A process that autosaved and is then killed (SIGKILL) leaves a complete label file."""
    path = tmp_path / "room.npy"
    code = textwrap.dedent(f"""
        import sys, time, numpy as np
        from pcseg.annotate.state import AnnotationState, ClassList
        st = AnnotationState(np.random.default_rng(0).random((5000, 3)),
                             ClassList(["a", "b"], np.zeros((2, 3), np.uint8)), path={str(path)!r})
        st.add(np.arange(0, 300), 1)
        st.add(np.arange(300, 400), 0)
        print("saved", flush=True)
        while True:
            st.add(np.arange(1000, 1100), 1); st.undo(); time.sleep(0.001)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "saved"
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    arr = np.load(path)
    assert arr.shape[1] == 2 and arr[:300, 1].tolist() == [1] * 300
    assert arr[300:400, 1].tolist() == [0] * 100
    assert len(arr) in (400, 500)  # before or after the looping add, never a torn file


def test_load_classes(tmp_path):
    f = tmp_path / "classes.yaml"
    f.write_text("names: [floor, wall, chair]\ncolors: {wall: [10, 20, 30]}\n")
    cl = load_classes(f)
    assert cl.names == ["floor", "wall", "chair"] and cl.colors[1].tolist() == [10, 20, 30]
    f.write_text("names: [floor]\ncolors: {table: [1, 2, 3]}\n")
    with pytest.raises(AnnotationError, match=r"classes\.yaml: colors for unknown classes"):
        load_classes(f)
    f.write_text("colors: {}\n")
    with pytest.raises(AnnotationError, match=r"classes\.yaml: expected .*names"):
        load_classes(f)
    with pytest.raises(AnnotationError, match="does not exist"):
        load_classes(tmp_path / "nope.yaml")


def _processed_unlabelled(root, n=300):
    """A processed folder of one scan whose ground truth is all -1."""
    rng = np.random.default_rng(0)
    sc = Scene(
        name="scan",
        dataset="custom",
        coords=rng.random((n, 3)).astype(np.float32) * 3,
        feats=rng.random((n, 3)).astype(np.float32),
        semantic=np.full(n, -1, np.int64),
        instance=np.full(n, -1, np.int64),
    )
    processed.write_scene(root, sc, class_names=["a", "b", "c"])
    processed.write_meta(
        root,
        {
            "dataset": "custom",
            "class_names": ["a", "b", "c"],
            "voxel_size": 0.05,
            "splits": {"train": ["scan"]},
            "label_specs": [],
            "seed": 0,
        },
    )
    return sc


def test_label_file_with_classes_reads_and_trains(tmp_path):
    from pcseg.data.dataset import SegmentationDataset

    sc = _processed_unlabelled(tmp_path)
    rows = np.array([[4, 2], [10, 0], [77, 1]], np.int64)
    processed.write_labels(tmp_path, "import:annotate", "scan", rows, num_points=300, num_classes=3)
    assert processed.read_labels(tmp_path, "import:annotate", "scan").tolist() == [4, 10, 77]
    idx, cls = processed.read_label_classes(tmp_path, "import:annotate", "scan", sc.semantic, 3)
    assert idx.tolist() == [4, 10, 77] and cls.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="point index 77 out of range for a scene of 50 points"):
        processed.read_label_classes(tmp_path, "import:annotate", "scan", sc.semantic[:50])
    with pytest.raises(ValueError, match=r"class column .*\[0, 1\]"):
        processed.read_label_classes(tmp_path, "import:annotate", "scan", sc.semantic, 2)
    for mode in ("train", "val"):
        ds = SegmentationDataset(
            tmp_path, "train", label_spec="import:annotate", mode=mode, voxel_size=0.01
        )
        s = ds[0]
        assert sorted(s["weak_labels"][s["weak_labels"] >= 0].tolist()) == [0, 1, 2]
        assert (s["labels"] == -1).all()
    # the old (M,) form: classes from the ground truth
    processed.write_labels(tmp_path, "1pt", "scan", np.array([4, 10]))
    idx, cls = processed.read_label_classes(tmp_path, "1pt", "scan", np.arange(300))
    assert cls.tolist() == [4, 10]


def test_annotation_written_is_read_back_by_training(tmp_path):
    """annotate writes through processed.write_label_file; read_label_classes reads it back."""
    sc = _processed_unlabelled(tmp_path)
    path = processed.labels_path(tmp_path, "import:annotate", "scan")
    st = AnnotationState(sc.coords, _classes(), path=path)
    st.add([77, 4], 2)
    st.add([10], 0)
    st.add([4], 1)  # relabel
    idx, cls = processed.read_label_classes(tmp_path, "import:annotate", "scan", sc.semantic, 3)
    assert idx.tolist() == [4, 10, 77] and cls.tolist() == [1, 0, 2]
    assert np.load(path).dtype == np.int64
    # a class the class list does not have is refused, the file on disk is untouched
    st.labels[5] = 3
    with pytest.raises(AnnotationError, match=r"refusing .*scan\.npy.*\[0, 2\]"):
        st.save()
    assert processed.read_labels(tmp_path, "import:annotate", "scan").tolist() == [4, 10, 77]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([[10, 0], [4, 1]], "sorted, unique"),
        ([[4, 0], [4, 1]], "sorted, unique"),
        ([[-1, 0]], "sorted, unique"),
        ([[4, 3]], r"class column .*\[0, 2\]"),
        ([[4, -1]], r"class column .*\[0, 2\]"),
        ([[300, 0]], "out of range for a scene of 300 points"),
        ([[4, 0, 1]], "shape"),
        ([[4.0, 0.0]], "integers"),
    ],
)
def test_label_writer_refuses_invalid_rows(tmp_path, rows, match):
    path = tmp_path / "labels" / "x" / "scan.npy"
    with pytest.raises(ValueError, match=match):
        processed.write_label_file(path, np.array(rows), num_points=300, num_classes=3)
    assert not path.exists()


# ---------------------------------------------------------------- the session / the command
def _classes_yaml(tmp_path, names=("a", "b", "c"), name="classes.yaml"):
    f = tmp_path / name
    f.write_text("names: [" + ", ".join(names) + "]\n")
    return f


def test_open_session_resumes_and_registers_spec(tmp_path):
    from pcseg.annotate.session import open_session

    root = tmp_path / "p"
    _processed_unlabelled(root)
    s = open_session(root, _classes_yaml(tmp_path))  # one scene: no --scene needed
    assert s.scene == "scan" and s.spec == "import:annotate" and s.resumed == 0
    s.state.add([3, 4], 2)
    assert s.label_path == root / "labels" / "import_annotate" / "scan.npy"
    again = open_session(root / "scenes" / "scan.npz", _classes_yaml(tmp_path))
    assert again.resumed == 2 and again.state.labels[3] == 2
    assert "import:annotate" in processed.read_meta(root)["label_specs"]


def test_annotate_command_bad_input(tmp_path, capsys, monkeypatch):
    from pcseg.cli.main import main

    root = tmp_path / "p"
    _processed_unlabelled(root)
    cls = _classes_yaml(tmp_path)
    scene = str(root / "scenes" / "scan.npz")
    # a labels file from another scene (more points)
    path = processed.labels_path(root, "import:annotate", "scan")
    path.parent.mkdir(parents=True)
    np.save(path, np.array([[1, 0], [5000, 1]], np.int64))
    assert main(["annotate", scene, "--classes", str(cls)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "5000 out of range for a scene of 300 points" in err
    assert np.load(path).tolist() == [[1, 0], [5000, 1]]  # nothing overwritten
    # a class list that does not match the processed folder's classes
    xy = _classes_yaml(tmp_path, ("x", "y"), "xy.yaml")
    assert main(["annotate", scene, "--classes", str(xy)]) == 2
    err = capsys.readouterr().err
    assert "xy.yaml lists ['x', 'y']" in err and "scan.json has classes" in err
    # a read-only output folder (simulated: root ignores permissions)
    import pcseg.annotate.session as session_mod

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(session_mod.tempfile, "mkstemp", refuse)
    assert main(["annotate", scene, "--classes", str(cls), "--labels", "import:bob"]) == 2
    err = capsys.readouterr().err
    assert "cannot write label files into" in err and "import_bob" in err
    assert "Permission denied" in err and "writable folder" in err
    monkeypatch.undo()
    # several scenes and no --scene; an unknown scene
    assert main(["annotate", str(tmp_path / "nope"), "--classes", str(cls)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["annotate", str(root), "--scene", "other", "--classes", str(cls)]) == 2
    assert "scene 'other' not in" in capsys.readouterr().err


def test_viewer_shows_the_annotators_classes(tmp_path):
    """pcseg view's weak mode colours an (M, 2) file's points by its class column."""
    from pcseg.viz.colors import mode_colors
    from pcseg.viz.data import load_processed_scene

    _processed_unlabelled(tmp_path)
    processed.write_labels(
        tmp_path, "import:annotate", "scan", np.array([[4, 2], [10, 0]], np.int64)
    )
    view = load_processed_scene(tmp_path, "scan", "import:annotate")
    assert view.labelled.sum() == 2 and view.weak_classes[[4, 10]].tolist() == [2, 0]
    col = mode_colors(view, "weak")
    assert col[4].tolist() == view.palette[2].tolist()
    assert col[10].tolist() == view.palette[0].tolist()
