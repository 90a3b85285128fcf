"""pcseg.inference.memory: tiled == untiled (exact when the overlap reaches the receptive
field, the stated tolerance at tile borders below it); an unlabelled PLY gets added
properties."""

from __future__ import annotations

import numpy as np

from pcseg.benchmarks.predict import synthetic_outdoor
from pcseg.datasets.custom import point_features
from pcseg.inference.memory import predict_file_in_memory, predict_points
from pcseg.inference.tiling import border_distance, receptive_field
from pcseg.io.point_file import PointFile

#: at a tile border (overlap of 16 voxels, less than the receptive field) a voxel's
#: probabilities may differ from the untiled ones by at most this much (measured on this
#: network: about 1e-5) and its class for at most this share of voxels
BORDER_PROB_TOL = 1e-3
BORDER_CLASS_DISAGREEMENT = 0.01
#: float summation order only (a tile's voxels see all of their receptive field)
INTERIOR_PROB_TOL = 1e-5


def _scene(n=12000, seed=0):
    d = synthetic_outdoor(n, seed)
    pf = PointFile(None, "las", d["xyz"], {"intensity": d["intensity"]})  # type: ignore[arg-type]
    return (d["xyz"] - d["xyz"].mean(axis=0)).astype(np.float32), pf


def test_tiled_equals_untiled(tiny):
    coords, pf = _scene()
    feats = point_features(pf, tiny.spec)
    full = predict_points(tiny, coords, feats, None, return_probs=True)
    assert full["tiles"] == 1
    rf = receptive_field(tiny.model, 1)
    assert rf > 16
    # overlap >= receptive field: every voxel sees all of its context -> equal everywhere
    tiled = predict_points(
        tiny, coords, feats, 2500, overlap=rf * tiny.voxel_size, return_probs=True
    )
    assert tiled["tiles"] > 1
    np.testing.assert_allclose(tiled["probs"], full["probs"], atol=INTERIOR_PROB_TOL)
    np.testing.assert_array_equal(tiled["pred"], full["pred"])
    # default overlap (16 voxels < receptive field): every voxel is within the receptive
    # field of a tile border here, so only the stated border tolerance holds
    tiled = predict_points(tiny, coords, feats, 1500, return_probs=True)
    assert tiled["tiles"] > 1 and tiled["margin_voxels"] == 16
    d = border_distance(tiled["voxel_coords"], tiled["tile_list"], tiled["margin_voxels"])
    assert np.isfinite(d).any() and d.min() >= 16  # a core voxel is >= the overlap inside
    diff = np.abs(tiled["probs"] - full["probs"]).max(axis=1)
    assert diff.max() <= BORDER_PROB_TOL
    agree = tiled["probs"].argmax(1) == full["probs"].argmax(1)
    assert 1 - agree.mean() <= BORDER_CLASS_DISAGREEMENT
    # the difference shrinks away from the border
    assert diff[d >= 32].mean() <= diff[d < 32].mean()


def test_ply_unlabelled_file_gets_added_properties(tiny, tmp_path):
    from plyfile import PlyData, PlyElement

    d = synthetic_outdoor(3000, 1)
    v = np.zeros(
        3000,
        dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("intensity", "u2"), ("scalar_Foo", "f4")],
    )
    v["x"], v["y"], v["z"] = d["xyz"].T + 500_000
    v["intensity"] = d["intensity"]
    PlyData([PlyElement.describe(v, "vertex")], text=True).write(str(tmp_path / "s.ply"))
    r = predict_file_in_memory(tiny, tmp_path / "s.ply", tmp_path / "out")
    back = PlyData.read(r["output"])
    assert back.text
    bv = back["vertex"].data
    for k in v.dtype.names:
        np.testing.assert_array_equal(bv[k], v[k])
    assert bv["pred_class"].dtype == np.uint8 and len(bv) == 3000
