import json

import numpy as np
import pytest

from pcseg.utils.io import atomic_path, atomic_save_npz, atomic_write_json


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

    from pcseg.utils.io import atomic_write_text

    atomic_write_text(tmp_path / "x.txt", "hi")
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(tmp_path / "x.txt").st_mode & 0o777) == (0o666 & ~mask)
