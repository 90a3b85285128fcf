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
