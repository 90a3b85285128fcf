"""The 2D path through the ``pcseg`` commands: ``train`` and ``test`` a shipped image config,
``predict`` image files (class PNG = the test's prediction of the same image; a damaged file
named, skipped, exit 1) and ``view`` panels, on a tiny synthetic processed folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.image_runs import make_synthetic_processed
from helpers.paths import REPO
from PIL import Image

from pcseg.cli.main import main
from pcseg.images import processed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("img_cli")
    make_synthetic_processed(tmp / "p", train=4, val=1, test=2, size=32)
    sets = [
        f"data.root={tmp / 'p'}",
        f"run_dir={tmp / 'run'}",
        "data.images.crop_size=24",
        "data.batch_size=2",
        "model.init_dim=8",
        "train.iterations=4",
        "train.val_every=0",
        "train.progress=false",
        "method.sup_only_iterations=1",
        "method.queue_capacity=64",
    ]
    config = str(REPO / "configs" / "images" / "u2pl.yaml")
    assert main(["train", config, "--set", *sets]) == 0
    assert main(["test", config, "--no-progress", "--set", *sets]) == 0
    return tmp


def test_train_and_test_write_the_run(run):
    summary = json.loads((run / "run" / "summary.json").read_text())
    assert summary["finished"] and summary["iterations"] == 4
    metrics = json.loads((run / "run" / "test" / "metrics.json").read_text())
    assert metrics["scenes"] == ["test_000", "test_001"]
    assert metrics["num_points"] == sum(
        int((processed.load_mask(run / "p", i) != 255).sum()) for i in metrics["scenes"]
    )
    z = np.load(run / "run" / "test" / "predictions" / "test_000.npz")
    assert z["pred"].shape == (32, 32) and (z["pseudo"] >= 0).all()  # U2PL's teacher


def test_predict_image_files(run, capsys):
    src = run / "p" / "images"
    (run / "in").mkdir()
    for name in ("test_000", "test_001"):
        (run / "in" / f"{name}.png").write_bytes((src / f"{name}.png").read_bytes())
    (run / "in" / "broken.png").write_bytes(b"\x89PNG not really")
    (run / "in" / ".hidden.png").write_bytes(b"")
    ckpt = run / "run" / "checkpoints" / "best.pt"
    rc = main(
        [
            "predict",
            "--checkpoint",
            str(ckpt),
            str(run / "in"),
            "--out",
            str(run / "out"),
            "--no-progress",
        ]
    )
    assert rc == 1  # the broken file failed, the others were written
    assert "broken.png" in capsys.readouterr().err
    for name in ("test_000", "test_001"):
        cls = np.asarray(Image.open(run / "out" / f"{name}_class.png"))
        want = np.asarray(Image.open(run / "run" / "test" / "predictions" / f"{name}.png"))
        np.testing.assert_array_equal(cls, want)
        over = np.asarray(Image.open(run / "out" / f"{name}_overlay.png"))
        assert over.shape == (32, 32, 3)
    summary = json.loads((run / "out" / "summary.json").read_text())
    assert len(summary["files"]) == 2 and len(summary["failures"]) == 1
    assert summary["palette"] == [list(c) for c in processed.read_meta(run / "p").palette]


def test_view_panels(run):
    out = run / "panel.png"
    assert main(["view", str(run / "run"), "--render", str(out), "--width", "64"]) == 0
    panel = np.asarray(Image.open(out))
    # image, gt, pseudo, pred, error: five 32-px tiles, with 6-px gaps
    assert panel.shape[1] == 5 * (32 + 6) + 6
    assert main(["view", str(run / "run"), "--render", str(run / "all"), "--all-scenes"]) == 0
    assert sorted(p.name for p in (run / "all").iterdir()) == ["test_000.png", "test_001.png"]
    assert main(["view", str(run / "p"), "--render", str(out), "--scene", "nope"]) == 2


def test_voc_config_trains_deeplab_from_a_local_resnet_file(run, tmp_path):
    """configs/voc/u2pl.yaml (DeepLabV3+, U2PL's Pascal settings) shrunk to a few CPU steps,
    its backbone from a torchvision-layout state dict saved to a local file."""
    import torch

    from pcseg.engine.checkpoint import load_checkpoint
    from pcseg.models.resnet import resnet

    weights = tmp_path / "resnet50.pth"
    torch.save(resnet("resnet50").state_dict(), weights)
    sets = [
        f"data.root={run / 'p'}",
        f"run_dir={tmp_path / 'voc'}",
        "data.label_spec=full",
        "data.images.crop_size=32",
        "data.batch_size=2",
        "data.num_workers=0",
        "model.backbone=resnet50",
        "model.output_stride=16",
        f"model.pretrained={weights}",
        "train.iterations=2",
        "train.amp=false",
        "train.device=cpu",
        "train.val_every=0",
        "train.checkpoint_every=0",
        "train.progress=false",
        "method.sup_only_iterations=1",
        "method.queue_capacity=64",
    ]
    assert main(["train", str(REPO / "configs" / "voc" / "u2pl.yaml"), "--set", *sets]) == 0
    state = load_checkpoint(tmp_path / "voc" / "checkpoints" / "last.pt")
    assert state["feature_dim"] == 256 and state["iteration"] == 2
    assert (
        main(
            [
                "train",
                str(REPO / "configs" / "voc" / "u2pl.yaml"),
                "--set",
                *sets[:-3],
                f"model.pretrained={tmp_path / 'none.pth'}",
            ]
        )
        == 2
    )
