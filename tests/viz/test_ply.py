"""pcseg.viz.ply: the coloured PLY export, read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcseg.viz import palettes as P


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
