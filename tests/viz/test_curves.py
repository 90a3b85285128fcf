"""pcseg.viz.curves: training curves read from TensorBoard event files and plotted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.viz import (
    _headless_env,
    _read_png,
    _run_tool,
)


# ----------------------------------------------------------------------------- curves
@pytest.mark.timeout(120)
def test_plot_curves_from_tensorboard(tmp_path: Path):
    from torch.utils.tensorboard import SummaryWriter

    from pcseg.viz.curves import curve_group, plot_curves, read_scalars

    run = tmp_path / "run"
    wr = SummaryWriter(str(run / "tb"))
    for s in range(10):
        wr.add_scalar("train/loss", 2.0 / (s + 1), s)
        wr.add_scalar("train/loss_erda", 0.5 - 0.01 * s, s)
        wr.add_scalar("train/pseudo_acc", 0.5 + 0.03 * s, s)
        wr.add_scalar("diag/mask_ratio", 0.1 * s, s)
        wr.add_scalar("train/lr", 0.01 * 0.9**s, s)
        wr.add_scalar("misc/ignored", 1.0, s)
    wr.close()
    wr = SummaryWriter(str(run / "tb" / "val"))  # a second events folder is merged in
    for s in (4, 9):
        wr.add_scalar("val/miou", 0.1 * s, s)
    wr.close()
    sc = read_scalars(run / "tb")
    np.testing.assert_array_equal(sc["val/miou"][0], [4, 9])
    np.testing.assert_allclose(sc["val/miou"][1], [0.4, 0.9], rtol=1e-6)
    np.testing.assert_allclose(sc["train/loss"][1], [2.0 / (s + 1) for s in range(10)], rtol=1e-6)
    assert [
        curve_group(t)
        for t in (
            "train/loss",
            "val/miou",
            "train/pseudo_acc",
            "diag/x",
            "train/diag/y",
            "train/lr",
            "misc/z",
        )
    ] == ["losses", "validation", "pseudo", "pseudo", "pseudo", "lr", None]
    out = tmp_path / "curves.png"
    groups = plot_curves(run, out, smooth=0.5)
    assert groups == {
        "losses": ["train/loss", "train/loss_erda"],
        "validation": ["val/miou"],
        "pseudo": ["diag/mask_ratio", "train/pseudo_acc"],
        "lr": ["train/lr"],
    }
    assert _read_png(out).shape == (int(3.8 * 2 * 110), int(6.0 * 2 * 110), 3)
    # CLI and errors
    r = _run_tool([run, "--curves", tmp_path / "c2.png"], env=_headless_env(), timeout=100)
    assert r.returncode == 0 and (tmp_path / "c2.png").is_file(), r.stderr
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="tb"):
        plot_curves(tmp_path / "empty", tmp_path / "x.png")
