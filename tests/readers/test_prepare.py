"""`pcseg prepare` (pcseg.readers.prepare) end to end on a fake reader (one broken scene),
resume, atomicity."""

from __future__ import annotations

import json
import pathlib
import types
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from pcseg.cli.main import main
from pcseg.data import processed
from pcseg.data.classes import S3DIS_CLASSES
from pcseg.data.scene import Scene
from pcseg.data.weak_labels import sample_weak_labels
from pcseg.readers import prepare as prepare_lib
from pcseg.readers.common import ReaderOptions


def cli(argv: list[str]) -> int:
    return main(["prepare", *argv])


SPLITS = {"train": ["Area_1_room_1", "Area_1_bad", "Area_1_room_2"], "val": ["Area_5_room_1"]}


def _fake_scene(scene_id: str) -> Scene:
    rng = np.random.default_rng(zlib.crc32(scene_id.encode()))
    n = int(rng.integers(3000, 5000))
    coords = (rng.random((n, 3)) * [5.0, 4.0, 3.0]).astype(np.float32)
    sem = rng.integers(-1, 13, n)
    return Scene(
        name=scene_id,
        dataset="s3dis",
        coords=coords,
        feats=rng.random((n, 3)).astype(np.float32),
        semantic=sem,
        instance=np.where(sem >= 0, sem * 3 + (coords[:, 0] > 2.5), -1),
        source=f"fake://{scene_id}",
    )


def _fake_reader(broken: set[str] | None = None) -> types.ModuleType:
    broken = {"Area_1_bad"} if broken is None else broken
    mod = types.ModuleType("fake_reader")
    mod.SPLITS = {k: tuple(v) for k, v in SPLITS.items()}
    mod.Options = ReaderOptions
    mod.calls = []

    def list_scenes(raw: Path, split: str, options: ReaderOptions | None = None) -> list[str]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        return list(SPLITS[split])

    def read_scene(raw: Path, scene_id: str, options: ReaderOptions | None = None) -> Scene:
        mod.calls.append(scene_id)
        if scene_id in broken:
            raise ValueError(f"{raw}/{scene_id}.txt line 3: expected 6 numbers, got 'x y'")
        return _fake_scene(scene_id)

    mod.list_scenes, mod.read_scene = list_scenes, read_scene
    return mod


@pytest.fixture
def fake(monkeypatch):
    reader = _fake_reader()
    monkeypatch.setitem(prepare_lib.READERS, "s3dis", reader)
    return reader


def _run(out: Path, *extra: str) -> int:
    return cli(
        [
            "s3dis",
            "--raw",
            "/nonexistent/raw",
            "--out",
            str(out),
            "--labels",
            "1%",
            "1pt",
            "--seed",
            "5",
            *extra,
        ]
    )


GOOD = ["Area_1_room_1", "Area_1_room_2", "Area_5_room_1"]


def test_end_to_end_with_broken_scene(fake, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(out) == 1
    printed = capsys.readouterr()
    assert "Area_1_bad" in printed.out + printed.err and "line 3" in printed.out
    meta = processed.read_meta(out)
    # the failed scene is not listed (training would otherwise die on its missing files)
    listed = {k: [i for i in v if i != "Area_1_bad"] for k, v in SPLITS.items()}
    assert meta["splits"] == listed and meta["voxel_size"] == 0.05 and meta["seed"] == 5
    assert meta["label_specs"] == ["1%", "1pt"] and meta["class_names"] == list(S3DIS_CLASSES)
    assert not processed.is_scene_done(out, "Area_1_bad")
    hist = np.zeros(13, np.int64)
    counts = {"1%": 0, "1pt": 0}
    points = 0
    for sid in GOOD:
        ref = _fake_scene(sid)
        got = processed.read_scene(out, sid)
        np.testing.assert_array_equal(got.coords, ref.coords)
        np.testing.assert_array_equal(got.semantic, ref.semantic)
        for spec in counts:
            lab = processed.read_labels(out, spec, sid)
            np.testing.assert_array_equal(lab, sample_weak_labels(ref, spec, 5, 0.05))
            counts[spec] += len(lab)
        hist += np.bincount(ref.semantic[ref.semantic >= 0], minlength=13)
        points += ref.num_points
    s = json.loads((out / "summary.json").read_text())
    assert (s["scenes"], s["scenes_total"], s["processed"], s["skipped"], s["failed"]) == (
        3,
        4,
        3,
        0,
        1,
    )
    assert s["points"] == points and s["labelled_points"] == int(hist.sum())
    assert s["class_histogram"] == {n: int(c) for n, c in zip(S3DIS_CLASSES, hist)}
    assert s["failures"] == [
        {
            "scene": "Area_1_bad",
            "error": "ValueError: /nonexistent/raw/Area_1_bad.txt line 3: "
            "expected 6 numbers, got 'x y'",
        }
    ]
    for spec, c in counts.items():
        assert s["label_specs"][spec]["labelled"] == c
        assert s["label_specs"][spec]["pct_of_points"] == pytest.approx(100 * c / points)
    assert s["label_specs"]["1pt"]["labelled"] == 3 * 13  # one point per class per scene


def test_resume_skips_finished_scenes(fake, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(out) == 1
    stamp = {
        p: p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and p.suffix in (".npz", ".npy")
    }
    fake.calls.clear()
    assert _run(out) == 1
    assert fake.calls == ["Area_1_bad"]  # only the failed scene is read again
    s = json.loads((out / "summary.json").read_text())
    assert (s["processed"], s["skipped"], s["failed"], s["scenes"]) == (0, 3, 1, 3)
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    # a new spec only adds its labels; scene files are not rewritten, the reader not called
    fake.calls.clear()
    assert _run(out, "--labels", "1%", "1pt", "sqn1%") == 1  # later --labels wins in argparse
    assert fake.calls == ["Area_1_bad"]
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    for sid in GOOD:
        np.testing.assert_array_equal(
            processed.read_labels(out, "sqn1%", sid),
            sample_weak_labels(_fake_scene(sid), "sqn1%", 5, 0.05),
        )
    assert processed.read_meta(out)["label_specs"] == ["1%", "1pt", "sqn1%"]
    # --force redoes everything
    fake.calls.clear()
    assert _run(out, "--force") == 1
    assert sorted(fake.calls) == sorted(GOOD + ["Area_1_bad"])
    # a conflicting seed without --force is refused, naming the change and the way out
    capsys.readouterr()
    assert cli(["s3dis", "--raw", "/x", "--out", str(out), "--seed", "6"]) == 2
    err = capsys.readouterr().err.strip()
    assert "seed: 5 became 6" in err and "--force" in err and len(err.splitlines()) == 1


def test_interrupted_write_leaves_no_partial_file(fake, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_write = pathlib.Path.write_bytes
    calls = {"n": 0}

    def dying_write(self, data):  # the 4th file write is killed half way
        calls["n"] += 1
        if calls["n"] == 4:
            real_write(self, data[: len(data) // 2])
            raise KeyboardInterrupt
        return real_write(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", dying_write)
    with pytest.raises(KeyboardInterrupt):
        _run(out)
    monkeypatch.setattr(pathlib.Path, "write_bytes", real_write)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")]
    for p in files:  # whatever exists is complete
        if p.suffix == ".npz":
            with np.load(p) as z:
                assert len(z["coords"]) > 0
        elif p.suffix == ".npy":
            np.load(p)
        else:
            json.loads(p.read_text())
    # the first scene's .npz, .json and 1% labels were written; its 1pt label file was killed;
    # meta.json is written once the scenes are done, so it never lists an unfinished scene
    assert sorted(p.relative_to(out).as_posix() for p in files) == [
        "labels/1pct/Area_1_room_1.npy",
        "scenes/Area_1_room_1.json",
        "scenes/Area_1_room_1.npz",
    ]
    assert _run(out) == 1  # resume completes the job
    clean = tmp_path / "clean"
    assert _run(clean) == 1
    for sid in GOOD:
        for spec in ("1%", "1pt"):
            np.testing.assert_array_equal(
                processed.read_labels(out, spec, sid), processed.read_labels(clean, spec, sid)
            )


def test_workers_give_identical_output(fake, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(a) == 1
    assert _run(b, "--workers", "2") == 1
    for sid in GOOD:
        for spec in ("1%", "1pt"):
            np.testing.assert_array_equal(
                processed.read_labels(a, spec, sid), processed.read_labels(b, spec, sid)
            )
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["failures"] == sb["failures"] and sa["label_specs"] == sb["label_specs"]


def test_all_failed_gives_nonzero_exit(monkeypatch, tmp_path):
    monkeypatch.setitem(
        prepare_lib.READERS, "s3dis", _fake_reader(broken=set(GOOD) | {"Area_1_bad"})
    )
    assert _run(tmp_path / "out", "--split", "val") == 2
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["scenes"] == 0 and [f["scene"] for f in s["failures"]] == ["Area_5_room_1"]


def test_limited_annotation_and_bad_arguments(fake, tmp_path):
    ann = tmp_path / "points3.json"
    ann.write_text(json.dumps({"Area_1_room_1": [9, 2, 5], "Area_5_room_1": [0]}))
    out = tmp_path / "out"
    assert (
        _run(out, "--split", "train", "val", "--limited-annotation", str(ann), "--voxel-size", "0")
        == 1
    )
    assert processed.read_labels(out, "import:points3", "Area_1_room_1").tolist() == [2, 5, 9]
    assert processed.read_labels(out, "import:points3", "Area_1_room_2").size == 0
    assert (out / "labels" / "import_points3" / "Area_5_room_1.npy").is_file()
    assert processed.read_meta(out)["voxel_size"] == 0.0
    with pytest.raises(SystemExit) as e:
        cli(["s3dis", "--raw", "/x", "--out", str(out), "--labels", "2x"])
    assert e.value.code == 2
    assert _run(tmp_path / "o2", "--split", "nosuch") == 2
    assert (
        _run(tmp_path / "o3", "--labels", "import:points3") == 2
    )  # imported spec without its file


def test_end_to_end_synthetic_s3dis(tmp_path):
    """Real S3DIS reader on the synthetic raw set (with injected damage), 2 workers, then the
    dataset."""
    from helpers.faults import inject_s3dis_damage

    from pcseg.data.dataset import SegmentationDataset, collate
    from pcseg.readers import s3dis, synthetic
    from pcseg.readers.common import DataWarning

    raw = synthetic.write_synthetic_s3dis(tmp_path / "raw", num_areas=2, rooms_per_area=1)
    inject_s3dis_damage(raw / "Area_1" / "office_1")  # the first room of every area is an office
    out = tmp_path / "out"
    assert (
        cli(
            [
                "s3dis",
                "--raw",
                str(raw),
                "--out",
                str(out),
                "--labels",
                "1%",
                "1pt",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    meta = processed.read_meta(out)
    warnings.simplefilter(
        "ignore", DataWarning
    )  # the reference reads below repeat the reader's warnings
    ids = s3dis.list_scenes(raw, "all")
    assert meta["splits"]["train"] == ids == meta["splits"]["all"] and len(ids) == 2
    assert "val" not in meta["splits"]  # Area_5 is not in the synthetic set: split left out
    s = json.loads((out / "summary.json").read_text())
    hist = np.zeros(13, np.int64)
    points = 0
    for sid in ids:
        ref = s3dis.read_scene(raw, sid)
        got = processed.read_scene(out, sid)
        np.testing.assert_array_equal(got.coords, ref.coords)
        np.testing.assert_array_equal(got.semantic, ref.semantic)
        np.testing.assert_array_equal(
            processed.read_labels(out, "1%", sid), sample_weak_labels(ref, "1%", 0, 0.05)
        )
        hist += np.bincount(ref.semantic[ref.semantic >= 0], minlength=13)
        points += ref.num_points
    assert (s["scenes"], s["failed"], s["points"]) == (len(ids), 0, points)
    assert list(s["class_histogram"].values()) == hist.tolist()
    assert any("NUL byte" in w for w in s["warnings"])  # the reader's repair is reported
    ds = SegmentationDataset(out, "all", "1%", None, mode="test")
    b = collate([ds[1]])
    assert (
        b["inverse"].shape[0]
        == b["point_labels"].shape[0]
        == processed.read_scene_info(out, ids[-1])["num_points"]
    )


class ScaledOptions(ReaderOptions):
    """A reader option that shows in the data: coordinates are multiplied by ``scale``."""

    scale: float = 1.0


class ScaledReader:
    """A picklable reader object whose scenes depend on its options."""

    SPLITS = {"train": None}
    Options = ScaledOptions

    def list_scenes(self, raw: Path, split: str, options: ScaledOptions | None = None) -> list[str]:
        return GOOD[:2]

    def read_scene(self, raw: Path, scene_id: str, options: ScaledOptions | None = None) -> Scene:
        assert isinstance(options, ScaledOptions)  # prepare always passes validated options
        sc = _fake_scene(scene_id)
        sc.coords = (sc.coords * options.scale).astype(np.float32)
        return sc


@pytest.mark.parametrize("workers", [1, 2])
def test_reader_gets_its_validated_options(tmp_path, workers):
    reader = ScaledReader()
    opts = prepare_lib.PrepareOptions(
        dataset="s3dis",
        raw=tmp_path / "raw",
        out=tmp_path / "out",
        workers=workers,
        reader=reader,
        reader_options=prepare_lib.reader_options(reader, {"scale": "2.5"}, "scaled"),
    )
    prepare_lib.prepare_dataset(opts)
    for sid in GOOD[:2]:
        want = _fake_scene(sid).coords * np.float32(2.5)
        np.testing.assert_allclose(processed.read_scene(tmp_path / "out", sid).coords, want)
    with pytest.raises(prepare_lib.PrepareError, match=r"scaled: option 'scale': .*number"):
        prepare_lib.reader_options(reader, {"scale": "big"}, "scaled")


def test_cli_reader_flag_of_another_dataset_is_refused(fake, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run(tmp_path / "out", "--kitti-yaml", str(tmp_path / "k.yaml"))
    assert e.value.code == 2
    assert "--kitti-yaml applies to semantickitti only, not s3dis" in capsys.readouterr().err


def test_rerun_removes_a_killed_prepares_temporaries(fake, tmp_path, capsys):
    import os

    out = tmp_path / "out"
    (out / "scenes").mkdir(parents=True)
    stale = out / "scenes" / ".Area_1_room_1.npz.k3j4h5g6.tmp"  # kill -9 mid-write
    stale.write_bytes(b"half an npz")
    os.utime(stale, (1_000_000, 1_000_000))
    assert _run(out) == 1  # Area_1_bad fails as ever
    err = capsys.readouterr().err
    assert f"removed 1 leftover temporary file(s) of an interrupted run from {out}" in err
    assert "scenes/.Area_1_room_1.npz.k3j4h5g6.tmp" in err
    assert not stale.exists()
    assert not [p for p in out.rglob(".*")]


def test_out_that_is_a_file_is_a_one_line_error(fake, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    assert _run(taken) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pcseg: error: --out {taken} is an existing file, not a folder"]


# ------------------------------------------------------- a changed CLASSES.yaml never mixes
def _las_2_3(path: Path, n: int = 600, seed: int = 0) -> np.ndarray:
    """A small LAS (point format 1) whose classification is ASPRS 2 or 3; returns the codes."""
    import laspy

    rng = np.random.default_rng(seed)
    h = laspy.LasHeader(point_format=1, version="1.2")
    h.scales, h.offsets = np.array([0.01, 0.01, 0.01]), np.array([500_000.0, 4_000_000.0, 0.0])
    las = laspy.LasData(h)
    las.x = 500_000 + rng.uniform(0, 20, n)
    las.y = 4_000_000 + rng.uniform(0, 20, n)
    las.z = rng.uniform(0, 3, n)
    las.intensity = rng.integers(0, 4000, n).astype(np.uint16)
    codes = rng.choice(np.array([2, 3], dtype=np.uint8), n)
    las.classification = codes
    path.parent.mkdir(parents=True, exist_ok=True)
    las.write(str(path))
    return codes.astype(np.int64)


def _classes(path: Path, mapping: dict[int, str], features: list[str] | None = None) -> Path:
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "names": ["ground", "low_vegetation"],
                "label_field": "classification",
                "map": mapping,
                "features": ["intensity"] if features is None else features,
                "voxel_size": 0.5,
            }
        )
    )
    return path


GROUND_FIRST = {2: "ground", 3: "low_vegetation"}
SWAPPED = {2: "low_vegetation", 3: "ground"}


def _custom(raw: Path, classes: Path, out: Path, *extra: str) -> int:
    argv = ["custom", "--raw", str(raw), "--classes", str(classes), "--out", str(out)]
    return cli([*argv, "--labels", "given", "1%", *extra])


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_swapped_map_is_refused_and_force_reprocesses(tmp_path, capsys):
    """ASPRS 2 <-> 3 swapped in CLASSES.yaml: the rerun is refused naming the change and
    leaves the folder as it was; --force rebuilds it and the labels follow the new map,
    checked against the raw codes of the file."""
    raw, out = tmp_path / "raw", tmp_path / "proc"
    codes = {"a": _las_2_3(raw / "a.las", seed=0), "b": _las_2_3(raw / "b.las", seed=1)}
    first = _classes(tmp_path / "first.yaml", GROUND_FIRST)
    assert _custom(raw, first, out) == 0
    for sid, c in codes.items():
        sem = processed.read_scene(out, sid).semantic
        np.testing.assert_array_equal(sem, np.where(c == 2, 0, 1))  # 2 = ground = class 0
    (out / "superpoints" / "abc").mkdir(parents=True)  # a cache of the old scenes
    before = _snapshot(out)
    meta_before = processed.read_meta(out)
    assert meta_before["fingerprint"]["classes"]["map"] == {"2": "ground", "3": "low_vegetation"}

    swapped = _classes(tmp_path / "swapped.yaml", SWAPPED)
    capsys.readouterr()
    assert _custom(raw, swapped, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "map: 2->ground became 2->low_vegetation, 3->low_vegetation became 3->ground" in err
    assert "--force" in err
    assert _snapshot(out) == before  # nothing written, nothing mixed

    assert _custom(raw, swapped, out, "--force") == 0
    assert not (out / "superpoints").exists()
    meta = processed.read_meta(out)
    assert meta["fingerprint"]["classes"]["map"] == {"2": "low_vegetation", "3": "ground"}
    assert meta["classes"]["map"] == {"2": "low_vegetation", "3": "ground"}
    for sid, c in codes.items():
        sem = processed.read_scene(out, sid).semantic
        np.testing.assert_array_equal(sem, np.where(c == 3, 0, 1))  # now 3 = ground = class 0
        idx, cls = processed.read_label_classes(out, "given", sid, sem)
        np.testing.assert_array_equal(idx, np.arange(len(c)))
        np.testing.assert_array_equal(cls, np.where(c == 3, 0, 1))
        # the digest leaves out nonfinite (it fails a scene, it does not change one)
        made = {**meta["fingerprint"], "reader_options": {}}
        assert processed.scene_fingerprint(out, sid) == processed.scene_digest(made)
    # a rerun with the same file is a resume: every scene skipped
    assert _custom(raw, swapped, out) == 0
    s = json.loads((out / "summary.json").read_text())
    assert (s["processed"], s["skipped"]) == (0, 2)


def test_a_changed_features_list_is_refused_at_prepare(tmp_path, capsys):
    """The features list that used to train and then fail at predict: refused at the rerun;
    --force refits the inputs and every scene has the new channels."""
    raw, out = tmp_path / "raw", tmp_path / "proc"
    _las_2_3(raw / "a.las")
    assert _custom(raw, _classes(tmp_path / "c1.yaml", GROUND_FIRST), out) == 0
    more = _classes(tmp_path / "c2.yaml", GROUND_FIRST, ["intensity", "return_number"])
    capsys.readouterr()
    assert _custom(raw, more, out) == 2
    err = capsys.readouterr().err
    assert "features: [intensity] became [intensity, return_number]" in err
    assert processed.read_scene(out, "a").feats.shape[1] == 1
    assert _custom(raw, more, out, "--force") == 0
    assert processed.read_scene(out, "a").feats.shape[1] == 2
    meta = processed.read_meta(out)
    assert meta["inputs"]["normalisation"]["channels"] == ["intensity", "return_number"]


def _unfingerprint(out: Path) -> None:
    """Make ``out`` look like a folder of a pcseg before fingerprints."""
    meta = processed.read_meta(out)
    del meta["fingerprint"]
    processed.write_meta(out, meta)
    for p in (out / "scenes").glob("*.json"):
        info = json.loads(p.read_text())
        del info["fingerprint"]
        p.write_text(json.dumps(info))


def test_an_old_benchmark_folder_is_extended_when_what_it_says_agrees(fake, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(out) == 1
    _unfingerprint(out)
    capsys.readouterr()
    assert _run(out, "--seed", "6") == 2  # what it does say is checked
    assert "seed: 5 became 6" in capsys.readouterr().err
    fake.calls.clear()
    assert _run(out, "--labels", "1%", "1pt", "sqn1%") == 1
    assert fake.calls == ["Area_1_bad"]  # its scenes are kept, the new spec added
    assert "prepared before pcseg kept a fingerprint" in capsys.readouterr().err
    meta = processed.read_meta(out)
    assert meta["fingerprint"]["seed"] == 5 and meta["label_specs"] == ["1%", "1pt", "sqn1%"]
    fake.calls.clear()
    assert _run(out) == 1 and fake.calls == ["Area_1_bad"]  # and stays a resume


def test_an_old_folder_of_ones_own_scans_is_refused(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "proc"
    _las_2_3(raw / "a.las")
    classes = _classes(tmp_path / "c.yaml", GROUND_FIRST)
    assert _custom(raw, classes, out) == 0
    _unfingerprint(out)
    capsys.readouterr()
    assert _custom(raw, classes, out) == 2  # even with the same file: the meta cannot tell
    err = capsys.readouterr().err
    assert "prepared before pcseg kept what made a processed folder" in err and "--force" in err
    assert _custom(raw, classes, out, "--force") == 0
    assert isinstance(processed.read_meta(out)["fingerprint"], dict)


def test_voxel_size_and_reader_options_are_in_the_fingerprint(fake, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(out) == 1
    capsys.readouterr()
    assert _run(out, "--voxel-size", "0.1") == 2
    assert "voxel_size: 0.05 became 0.1" in capsys.readouterr().err
    # --nonfinite drop after a refused scene (what the refusal says to do): the scenes
    # written are those drop makes too, so they are kept; back to refuse is a change
    fake.calls.clear()
    assert _run(out, "--nonfinite", "drop") == 1
    assert fake.calls == ["Area_1_bad"]
    assert processed.read_meta(out)["fingerprint"]["reader_options"] == {"nonfinite": "drop"}
    capsys.readouterr()
    assert _run(out) == 2
    assert "reader option nonfinite: drop became refuse" in capsys.readouterr().err
