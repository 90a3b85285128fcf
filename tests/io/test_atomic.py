"""pcseg.io.atomic: atomic writes (nothing left by an interrupted write, the normal file mode),
the temporary file's suffix, and the point-file writers going through them."""

import json

import numpy as np
import pytest

from pcseg.io.atomic import atomic_path, atomic_save_npz, atomic_write_json


def test_atomic_json_and_npz_roundtrip(tmp_path):
    atomic_write_json(tmp_path / "a" / "m.json", {"x": np.int64(3), "y": np.arange(2)})
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {"x": 3, "y": [0, 1]}
    atomic_save_npz(tmp_path / "s.npz", c=np.ones((2, 3), np.float32))
    assert np.load(tmp_path / "s.npz")["c"].shape == (2, 3)


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_file_gets_normal_permissions(tmp_path):
    import os

    from pcseg.io.atomic import atomic_write_text

    atomic_write_text(tmp_path / "x.txt", "hi")
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(tmp_path / "x.txt").st_mode & 0o777) == (0o666 & ~mask)


def test_temporary_file_takes_the_given_suffix(tmp_path):
    from pcseg.io.atomic import atomic_save_with

    seen = []

    def save(p):
        seen.append(p)
        p.write_bytes(b"x")

    atomic_save_with(tmp_path / "a.laz", save, suffix=".laz")
    atomic_save_with(tmp_path / "b.json", save)
    assert [p.suffix for p in seen] == [".laz", ".tmp"]
    assert [p.parent for p in seen] == [tmp_path, tmp_path]
    assert all(p.name.startswith(".") for p in seen)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.laz", "b.json"]


@pytest.mark.parametrize("name", ["o.ply", "o.las", "o.npy", "o.npz", "o.txt"])
def test_point_writers_are_atomic_with_the_normal_mode(tmp_path, name):
    import os

    from pcseg.io.point_file import PointFile
    from pcseg.io.points import write_points

    xyz = np.random.default_rng(0).random((20, 3)) * 10
    pf = PointFile(tmp_path / "src.npy", "npy", xyz, {a: xyz[:, i] for i, a in enumerate("xyz")})
    fmt = name.split(".")[1]
    out = tmp_path / "out" / name
    if fmt in ("ply", "las", "npy"):
        write_points(pf, out, {"pred_class": np.arange(20, dtype=np.uint8)}, fmt=fmt)
    else:
        from pcseg.io import npy, txt

        {"npz": npy.write_npz, "txt": txt.write_txt}[fmt](
            pf, out, {"pred_class": np.arange(20, dtype=np.uint8)}
        )
    mask = os.umask(0)
    os.umask(mask)
    assert [q.name for q in (tmp_path / "out").iterdir()] == [name]  # no temporary file left
    assert (os.stat(out).st_mode & 0o777) == (0o666 & ~mask)


def test_stale_temporaries_removed_fresh_ones_and_user_files_kept(tmp_path):
    import os

    from pcseg.io.atomic import is_pcseg_temporary, remove_stale_temporaries

    start = 1_000_000.0
    stream = tmp_path / ".tile_00.stream.ab12cd34"
    stream.mkdir()
    (stream / "00000.bin").write_bytes(b"x")
    (tmp_path / "scenes").mkdir()
    old = [stream, tmp_path / ".a.las.x1y2z3w4.las", tmp_path / "scenes/.t.npz.k3j4h5g6.tmp"]
    kept = [
        tmp_path / ".b.las.q1w2e3r4.las",  # a temporary of this run (newer than its start)
        tmp_path / ".config.settings",  # a user's hidden file: no temporary suffix
        tmp_path / ".c.las.q1w2e3r4.ply",  # suffix neither .tmp nor that of the name
        tmp_path / "a.las",
    ]
    for p in old[1:] + kept:
        p.write_bytes(b"x")
    for p in old + kept[1:]:
        os.utime(p, (start - 10, start - 10))
    os.utime(kept[0], (start + 10, start + 10))
    assert [is_pcseg_temporary(p) for p in old + kept] == [True] * 4 + [False] * 3
    flat = remove_stale_temporaries(tmp_path, start)
    assert sorted(flat) == sorted(old[:2])
    assert remove_stale_temporaries(tmp_path, start, recursive=True) == [old[2]]
    assert all(p.exists() for p in kept) and not any(p.exists() for p in old)
    assert remove_stale_temporaries(tmp_path / "missing", start) == []


def test_disk_full_is_named_and_keeps_the_previous_file(tmp_path):
    from helpers.faults import no_space_after

    from pcseg.io.atomic import DiskFullError, atomic_save_with, atomic_write_bytes

    path = tmp_path / "state.bin"
    atomic_write_bytes(path, b"previous")

    def save(p):
        with open(p, "wb") as fh:
            no_space_after(1000)(fh)

    with pytest.raises(DiskFullError) as e:
        atomic_save_with(path, save)
    msg = str(e.value)
    assert msg.startswith(f"no space left on the device writing {path} (1,000 bytes written ")
    assert msg.endswith("; the previous state.bin is kept") and " free of " in msg
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == [path.name]
    with pytest.raises(DiskFullError, match="nothing was written"):
        atomic_save_with(tmp_path / "new.bin", save)
    assert not (tmp_path / "new.bin").exists()


def test_a_real_full_tmpfs(tmp_path):
    from helpers.faults import small_tmpfs

    from pcseg.io.atomic import DiskFullError, atomic_write_bytes

    with small_tmpfs(tmp_path / "mnt", "64k") as mnt:
        path = mnt / "a.bin"
        atomic_write_bytes(path, b"1" * 40_000)
        # the new copy is written next to the old one before the rename: 80 KB > 64 KB
        with pytest.raises(DiskFullError) as e:
            atomic_write_bytes(path, b"2" * 40_000)
        assert f"writing {path} (" in str(e.value)
        assert "free of 65,536 bytes on its file system); the previous a.bin is kept" in str(
            e.value
        )
        written = int(str(e.value).split(" (")[1].split(" bytes written")[0].replace(",", ""))
        assert 0 < written < 40_000  # the rest of the 64 KB holds the first copy
        assert path.read_bytes() == b"1" * 40_000 and [p.name for p in mnt.iterdir()] == ["a.bin"]
