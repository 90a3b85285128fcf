"""The readers' typed options: every reader declares ``Options`` (unknown names and bad
values fail naming the option and what was expected) and prepare hands them to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcseg.readers import READERS, custom, s3dis, scannet, semantickitti
from pcseg.readers.common import ReaderOptions, validate_options
from pcseg.readers.prepare import PrepareError, PrepareOptions, prepare_dataset, reader_options


def test_every_reader_declares_options_with_defaults():
    fields = {name: set(r.Options.model_fields) for name, r in READERS.items()}
    assert fields == {
        "s3dis": {"nonfinite", "align", "on_unknown_class"},
        "scannet": {"nonfinite", "split_dir", "label_map_file", "align"},
        "semantickitti": {"nonfinite", "config"},
    }
    assert set(custom.CustomReader.Options.model_fields) == {"nonfinite"}
    for r in READERS.values():
        assert issubclass(r.Options, ReaderOptions) and r.Options().nonfinite == "refuse"


def test_options_validate_values_and_paths():
    o = validate_options(scannet.Options, "scannet", {"split_dir": "lists", "align": True})
    assert o.split_dir == Path("lists") and o.align is True and o.label_map_file is None
    o = validate_options(s3dis.Options, "s3dis", {"on_unknown_class": "skip", "nonfinite": "drop"})
    assert (o.on_unknown_class, o.nonfinite, o.align) == ("skip", "drop", False)


def test_unknown_option_is_named_with_did_you_mean_and_accepted_ones():
    with pytest.raises(ValueError) as e:
        validate_options(s3dis.Options, "s3dis", {"on_unknown_clas": "skip"})
    msg = str(e.value)
    assert "s3dis: unknown option(s) ['on_unknown_clas']" in msg
    assert "(did you mean 'on_unknown_class'?)" in msg
    assert "accepted options: ['nonfinite', 'align', 'on_unknown_class']" in msg


def test_bad_value_names_option_and_expected_values():
    with pytest.raises(
        PrepareError,
        match=r"s3dis: option 'on_unknown_class': .*'error', "
        r"'ignore' or 'skip'.*got 'keep'",
    ):
        reader_options(s3dis, {"on_unknown_class": "keep"}, "s3dis")
    with pytest.raises(PrepareError, match=r"semantickitti: option 'nonfinite': .*got 'fix'"):
        reader_options(semantickitti, {"nonfinite": "fix"}, "semantickitti")


def test_prepare_refuses_another_readers_options(tmp_path):
    opts = PrepareOptions(
        dataset="s3dis",
        raw=tmp_path / "raw",
        out=tmp_path / "out",
        reader_options=scannet.Options(),
    )
    with pytest.raises(
        PrepareError,
        match=r"reader options of s3dis must be "
        r"pcseg\.readers\.s3dis\.Options, got pcseg\.readers\.scannet\.Options",
    ):
        prepare_dataset(opts)


def test_ground_estimate_without_a_ground_class_and_chunked_equals_whole():
    from pcseg.readers.common import GroundAccumulator, ground_surface

    rng = np.random.default_rng(0)
    xy = rng.random((20000, 2)) * 60 + 500_000.0
    terrain = 0.05 * (xy[:, 0] - 500_000.0)
    local = xy - 500_030.0
    roof = (np.abs(local[:, 0]) < 6) & (np.abs(local[:, 1]) < 6)  # a 12 m building, 8 m high
    xyz = np.column_stack([xy, terrain + 8.0 * roof])
    est = ground_surface(xyz)  # no classification: lowest point per cell, opened over 20 m
    assert est.method == "lowest point per cell"
    hag = est.height_above(xyz)
    np.testing.assert_allclose(hag[roof], 8.0, atol=0.2)
    # half a window (10 m) from the tile border the opening is exact on a plane; nearer, a
    # slope s lowers the surface by up to s * 10 m (documented)
    inner = ((xy > 500_010.0) & (xy < 500_050.0)).all(axis=1)
    assert np.abs(hag[~roof & inner]).max() < 0.15
    assert np.abs(hag[~roof]).max() < 0.05 * 10 + 0.15
    codes = np.where(roof, 6, 2).astype(np.uint8)
    whole = ground_surface(xyz, codes)
    acc = GroundAccumulator()
    for part in np.array_split(np.arange(len(xyz)), 7):
        acc.add(xyz[part], codes[part])
    chunked = acc.surface()
    assert whole.method == chunked.method == "ground class 2"
    np.testing.assert_allclose(chunked.z, whole.z, rtol=0, atol=1e-9)
    # under the roof no ground point: the nearest ground cell (up to 6 m away on a 5 % slope)
    np.testing.assert_allclose(whole.height_above(xyz)[roof], 8.0, atol=0.05 * 6 + 0.05)
