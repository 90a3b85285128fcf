"""The readers' typed options: every reader declares ``Options`` (unknown names and bad
values fail naming the option and what was expected) and prepare hands them to it."""

from __future__ import annotations

from pathlib import Path

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
