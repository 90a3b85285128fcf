"""Issue 25 as a demanding user meets it, whole commands on small generated files: hostile
headers, leftovers of killed runs, every user mistake a one-line message, and kill -9 in the
middle of prepare, a streamed predict, train and an annotation save, then a rerun that
succeeds and leaves no temporary behind.

The library-level checks behind each case live with their modules (tests/io/test_las.py,
test_ply.py, test_pcd.py, test_atomic.py, test_point_file.py, tests/engine/test_optim.py,
test_checkpoint.py, tests/readers/test_custom.py, tests/inference/test_files.py); here each
finding is one command run end to end. Finding 1 (a changed CLASSES.yaml) is tested with
the processed-folder fingerprint (tests/data/test_processed.py).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import faults
from helpers.classes import ASPRS
from helpers.paths import REPO

from pcseg.benchmarks.predict import write_synthetic_las
from pcseg.cli.main import main
from pcseg.data import processed
from pcseg.io.point_file import list_point_files

pytestmark = pytest.mark.integration

CLASSES = ASPRS


def _classes(folder: Path, **over) -> Path:
    path = folder / "classes.yaml"
    path.write_text(yaml.safe_dump({**CLASSES, **over}))
    return path


def _prepare(raw: Path, classes: Path, out: Path, *extra: str) -> int:
    argv = ["prepare", "custom", "--raw", str(raw), "--classes", str(classes), "--out", str(out)]
    return main([*argv, *extra])


def _predict(ckpt: Path, out: Path, *inputs: Path | str, extra: tuple[str, ...] = ()) -> int:
    argv = ["predict", *map(str, inputs), "--checkpoint", str(ckpt), "--out", str(out)]
    return main([*argv, "--no-progress", *extra])


def _train_cfg(root: Path, proc: Path, run: Path, iterations: int, every: int) -> Path:
    """A tiny MinkUNet14A ERDA run of the shipped custom config: OneCycle with pct_start
    0.05 (the schedule that divided by zero at 20 iterations, finding 4)."""
    cfg = {
        "_base_": str(REPO / "configs" / "custom" / "erda.yaml"),
        "data": {"root": str(proc), "max_voxels": 600, "batch_size": 1, "num_workers": 0},
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "train": {
            "iterations": iterations,
            "log_every": 5,
            "progress": False,
            "device": "cpu",
            "threads": 1,
            "val_every": 0,
            "checkpoint_every": every,
        },
        "run_dir": str(run),
    }
    path = root / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Two LAS tiles -> pcseg prepare custom -> 20 OneCycle iterations of pcseg train."""
    root = tmp_path_factory.mktemp("hostile")
    raw = root / "raw"
    write_synthetic_las(raw / "tile_a.las", 1500, seed=0)
    write_synthetic_las(raw / "tile_b.las", 1500, seed=1)
    classes = _classes(root)
    assert _prepare(raw, classes, root / "proc") == 0
    cfg = _train_cfg(root, root / "proc", root / "run", iterations=20, every=10)
    base = yaml.safe_load((REPO / "configs" / "custom" / "base.yaml").read_text())["train"]
    assert (base["scheduler"], base["pct_start"]) == ("onecycle", 0.05)
    assert main(["train", str(cfg)]) == 0  # finding 4: 20 OneCycle steps
    ckpt = root / "run" / "checkpoints" / "last.pt"
    return {"root": root, "raw": raw, "classes": classes, "proc": root / "proc", "ckpt": ckpt}


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcseg: error: "), err
    return lines[0]


# ----------------------------------------------------------------- finding 2: hostile headers
def test_hostile_headers_fail_alone_with_a_reason(trained, tmp_path, capsys):
    """The 14 KB LAS claiming 1,069,128,089 VLRs, a PLY claiming 10^12 vertices and a PCD
    claiming 2e9 points beside two good tiles: prepare and predict name each bad file with
    a non-empty reason, label the good ones and exit 1."""
    raw = Path(shutil.copytree(trained["raw"], tmp_path / "raw"))
    bad = {
        "vlrs": (faults.hostile_las(raw / "vlrs.las"), "number of VLRs claims 1,069,128,089"),
        "mesh": (faults.hostile_ply(raw / "mesh.ply"), "claims 1,000,000,000,000 records"),
        "cloud": (faults.hostile_pcd(raw / "cloud.pcd"), "POINTS 2,000,000,000 (records of 12"),
    }
    assert _prepare(raw, trained["classes"], tmp_path / "proc") == 1
    summary = json.loads((tmp_path / "proc" / "summary.json").read_text())
    failed = {f["scene"]: f["error"] for f in summary["failures"]}
    assert set(failed) == set(bad)
    for sid, (path, reason) in bad.items():
        assert str(path) in failed[sid] and reason in failed[sid]
    assert sorted(processed.read_meta(tmp_path / "proc")["splits"]["train"]) == [
        "tile_a",
        "tile_b",
    ]
    capsys.readouterr()
    out = tmp_path / "pred"
    assert _predict(trained["ckpt"], out, raw) == 1
    err = capsys.readouterr().err
    pred = json.loads((out / "predict_summary.json").read_text())
    assert sorted(Path(r["file"]).name for r in pred["files"]) == ["tile_a.las", "tile_b.las"]
    for path, reason in bad.values():
        line = next(ln for ln in err.splitlines() if ln.startswith(f"FAILED {path}: "))
        assert reason in line and not line.endswith(": ")


# ----------------------------------------------------------------- finding 6: user mistakes
def test_user_mistakes_are_one_line_each(trained, tmp_path, capsys):
    """--out an existing file (prepare, predict), a truncated checkpoint: exit 2 and one
    line; a ragged TXT line: that file fails with its line number, the rest goes on (1)."""
    taken = tmp_path / "taken"
    taken.write_text("a file")
    assert _prepare(trained["raw"], trained["classes"], taken) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"pcseg: error: --out {taken} is an existing file, not a folder"
    )
    assert _predict(trained["ckpt"], taken, trained["raw"]) == 2
    assert "is an existing file, not a folder" in _one_line(capsys.readouterr().err)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(trained["ckpt"].read_bytes()[:5000])
    assert _predict(cut, tmp_path / "o", trained["raw"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"checkpoint {cut} is not a complete pcseg checkpoint (truncated" in line
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(trained["raw"] / "tile_a.las", raw / "tile_a.las")
    (raw / "ragged.txt").write_text("x y z intensity\n0 0 0 1\n1 1 1 2\n2 2 2\n3 3 3 4\n")
    assert _prepare(raw, trained["classes"], tmp_path / "proc") == 1
    failures = json.loads((tmp_path / "proc" / "summary.json").read_text())["failures"]
    assert [f["scene"] for f in failures] == ["ragged"]
    assert f"{raw / 'ragged.txt'} line 4: 3 values, but line 2 has 4" in failures[0]["error"]


def test_degrees_and_absurd_voxel_size_warn_naming_the_file(trained, tmp_path, capsys):
    raw = tmp_path / "raw"
    deg = faults.lonlat_las(raw / "deg.las", 1500, seed=4)
    assert _prepare(raw, trained["classes"], tmp_path / "p") == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "longitude / latitude" in ln)
    assert line.startswith(f"warning (deg): {deg}: the coordinates look like longitude")
    assert "extent " in line and "median point spacing " in line and "LAS scale 1e-07" in line
    (raw / "deg.las").unlink()
    shutil.copy(trained["raw"] / "tile_a.las", raw / "tile_a.las")
    assert _prepare(raw, _classes(tmp_path, voxel_size=1000), tmp_path / "p2") == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "voxel_size 1000" in ln)
    assert line.startswith(f"warning (tile_a): {raw / 'tile_a.las'}: voxel_size 1000.0 m: its")
    assert "at most 1 voxel(s)" in line and "extent " in line and "median point spacing" in line


def test_same_stems_in_other_folders_and_formats(trained, tmp_path):
    from pcseg.io.points import read_points, write_points

    raw = tmp_path / "raw"
    for rel in ("a/tile.las", "b/tile.las", "tile.las"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(trained["raw"] / "tile_a.las", raw / rel)
    write_points(read_points(raw / "tile.las"), raw / "tile.ply", {}, fmt="ply")
    assert _prepare(raw, trained["classes"], tmp_path / "proc") == 0
    assert sorted(processed.read_meta(tmp_path / "proc")["splits"]["train"]) == [
        "a__tile",
        "b__tile",
        "tile_las",
        "tile_ply",
    ]
    out = tmp_path / "pred"
    assert _predict(trained["ckpt"], out, raw) == 0
    got = [p.relative_to(out).as_posix() for p in list_point_files(out)]
    assert got == ["a/tile.las", "b/tile.las", "tile.las", "tile.ply"]


def test_disk_full_in_training_is_one_line(trained, tmp_path, capsys, monkeypatch):
    """ENOSPC inside torch's checkpoint writer (the file-object write a full disk fails) at
    the second checkpoint: exit 2, one line naming the checkpoint, the first one kept."""
    from pcseg.engine import checkpoint
    from pcseg.engine.checkpoint import load_checkpoint

    run = tmp_path / "run"
    cfg = _train_cfg(tmp_path, trained["proc"], run, iterations=2, every=1)
    real, calls = checkpoint.torch.save, []

    def save(obj, fh, *a, **k):
        calls.append(1)
        if len(calls) == 1:
            return real(obj, fh, *a, **k)
        return faults.no_space_after(10_000)(obj, fh)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    assert main(["train", str(cfg)]) == 2
    line = _one_line(capsys.readouterr().err)
    last = run / "checkpoints" / "last.pt"
    want = f"pcseg: error: no space left on the device writing {last}"
    assert line.startswith(want + " (10,000 bytes written before the disk was full, ")
    assert line.endswith("the previous last.pt is kept") and len(calls) == 2
    monkeypatch.undo()
    assert load_checkpoint(last)["iteration"] == 1
    assert faults.hidden_entries(run) == []


# ----------------------------------------------------------------- kill -9, then a rerun
def test_kill_9_in_prepare_then_rerun(trained, tmp_path, capsys):
    out = tmp_path / "proc"
    argv = ["prepare", "custom", "--raw", str(trained["raw"]), "--classes"]
    argv += [str(trained["classes"]), "--out", str(out)]
    code = faults.pause_at_rename("tile_a.npz") + (
        f"from pcseg.cli.main import main\nmain({argv!r})\n"
    )
    faults.kill_at_pause(code)
    left = faults.hidden_entries(out)
    assert len(left) == 1 and left[0].startswith("scenes/.tile_a.npz.")  # the killed write
    assert main(argv) == 0
    assert "removed 1 leftover temporary file(s) of an interrupted run" in capsys.readouterr().err
    assert faults.hidden_entries(out) == []
    for sid in ("tile_a", "tile_b"):
        assert processed.read_scene(out, sid).num_points == 1500


def test_kill_9_in_streamed_predict_then_rerun(trained, tmp_path, capsys):
    """Killed while the labelled copy is renamed into place: the chunk folder
    ``.tile_a.stream.*`` and the copy's temporary are left. Neither is read as input by a
    later predict or prepare of --out (finding 3); the rerun removes both, and the output
    has the umask's permissions (finding 5)."""
    out = tmp_path / "pred"
    src = trained["raw"] / "tile_a.las"
    argv = ["predict", str(src), "--checkpoint", str(trained["ckpt"]), "--out", str(out)]
    argv += ["--stream", "always", "--chunk-points", "400", "--no-progress"]
    code = faults.pause_at_rename("tile_a.las") + (
        f"from pcseg.cli.main import main\nmain({argv!r})\n"
    )
    faults.kill_at_pause(code)
    left = faults.hidden_entries(out)
    assert len(left) == 2 and left[0].startswith(".tile_a.las."), left  # the copy's temporary
    assert left[1].startswith(".tile_a.stream.") and list((out / left[1]).glob("*.bin")), left
    assert list_point_files(out) == []  # no chunk is taken for a KITTI scan
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "leftover temporary file(s) / folder(s) of an interrupted run" in err
    assert faults.hidden_entries(out) == []
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(out / "tile_a.las").st_mode & 0o777) == (0o666 & ~mask)


def test_kill_9_in_train_then_resume(trained, tmp_path, capsys):
    """Killed while the checkpoint of iteration 10 is renamed into place: last.pt still holds
    iteration 5; ``--resume`` continues from it, removes the temporary and finishes."""
    from pcseg.engine.checkpoint import load_checkpoint

    run = tmp_path / "run"
    cfg = _train_cfg(tmp_path, trained["proc"], run, iterations=15, every=5)
    code = faults.pause_at_rename("last.pt", nth=2) + (
        f"from pcseg.cli.main import main\nmain(['train', {str(cfg)!r}])\n"
    )
    faults.kill_at_pause(code)
    ckpts = run / "checkpoints"
    assert load_checkpoint(ckpts / "last.pt")["iteration"] == 5
    assert [p.startswith("checkpoints/.last.pt.") for p in faults.hidden_entries(run)] == [True]
    assert main(["train", str(cfg), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "resumed from" in printed and "at iteration 5" in printed
    assert "removed 1 leftover temporary file(s) of an interrupted run" in printed
    assert load_checkpoint(ckpts / "last.pt")["iteration"] == 15
    assert faults.hidden_entries(run) == []


def test_kill_9_in_an_annotation_save_then_rerun(trained, tmp_path):
    """Killed while the second save of the label file is renamed into place: the first save
    is read back by ``pcseg annotate`` (100 points), whose start removes the temporary."""
    pytest.importorskip("viser")
    proc = tmp_path / "proc"
    shutil.copytree(trained["proc"], proc)
    names = tmp_path / "names.yaml"
    names.write_text(yaml.safe_dump({"names": CLASSES["names"]}))
    code = faults.pause_at_rename("tile_a.npy", nth=2) + (
        "import numpy as np\n"
        "from pcseg.annotate.session import open_session\n"
        f"s = open_session({str(proc)!r}, {str(names)!r}, scene_id='tile_a', start='empty')\n"
        "s.state.add(np.arange(100), 0)\n"
        "s.state.add(np.arange(100, 250), 1)\n"
    )
    faults.kill_at_pause(code)
    labels = proc / "labels" / "import_annotate"
    left = faults.hidden_entries(labels)
    assert len(left) == 1 and left[0].startswith(".tile_a.npy.")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "pcseg", "annotate", str(proc), "--scene", "tile_a"]
    argv += ["--classes", str(names), "--port", str(port), "--exit-after", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resumed 100 labelled points" in done.stdout
    assert "removed 1 leftover temporary file(s) / folder(s)" in done.stderr
    assert faults.hidden_entries(labels) == []
    arr = np.load(labels / "tile_a.npy")
    assert arr[:, 0].tolist() == list(range(100)) and set(arr[:, 1].tolist()) == {0}
