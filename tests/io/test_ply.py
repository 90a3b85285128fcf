"""pcseg.io.ply: a PLY written by plyfile (ASCII and binary, faces, comments) read with every
vertex property in its dtype, and written back with added properties."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.io.points import read_points, write_points

N = 50


def _rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("text", [False, True])
def test_ply_any_vertex_properties(tmp_path, text):
    from plyfile import PlyData, PlyElement

    r = _rng()
    v = np.empty(
        N,
        dtype=[
            ("x", "f8"),
            ("y", "f8"),
            ("z", "f8"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
            ("scalar_Intensity", "f4"),
            ("label", "i4"),
        ],
    )
    for k in ("x", "y", "z"):
        v[k] = r.random(N) * 1000 + 2_445_000
    for k in ("red", "green", "blue"):
        v[k] = r.integers(0, 255, N)
    v["scalar_Intensity"] = r.random(N)
    v["label"] = r.integers(-1, 4, N)
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    path = tmp_path / "a.ply"
    PlyData(
        [PlyElement.describe(v, "vertex"), PlyElement.describe(faces, "face")],
        text=text,
        comments=["made by plyfile"],
    ).write(str(path))
    pf = read_points(path)
    assert pf.format == "ply" and pf.num_points == N
    assert {k: pf.fields[k].dtype for k in pf.fields} == {k: v.dtype[k] for k in v.dtype.names}
    np.testing.assert_array_equal(pf.xyz, np.column_stack([v["x"], v["y"], v["z"]]))
    out = write_points(
        pf,
        tmp_path / "o.ply",
        {"pred_class": np.arange(N, dtype=np.uint8), "confidence": np.full(N, 0.5, np.float32)},
    )
    back = PlyData.read(str(out))
    assert back.text == text and [e.name for e in back.elements] == ["vertex", "face"]
    assert "made by plyfile" in back.comments
    bv = back["vertex"].data
    for k in v.dtype.names:
        assert bv[k].dtype == v[k].dtype
        np.testing.assert_array_equal(bv[k], v[k])
    np.testing.assert_array_equal(bv["pred_class"], np.arange(N))
    assert bv["confidence"].dtype == np.float32
