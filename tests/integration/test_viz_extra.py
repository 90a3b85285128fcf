"""pcseg installed without the [viz] extra: a child Python in which open3d and matplotlib
cannot be imported trains and tests."""

import os

import pytest
import yaml
from helpers.paths import REPO

pytestmark = pytest.mark.integration

_BLOCK_VIZ = """
import sys
class _NoViz:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("open3d", "matplotlib"):
            raise ImportError(f"{name} is hidden by the test (pcseg installed without [viz])")
sys.meta_path.insert(0, _NoViz())
"""


def test_train_and_test_run_without_the_viz_extra(tmp_path):
    """A child Python in which open3d and matplotlib cannot be imported trains and tests."""
    import subprocess
    import sys

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_BLOCK_VIZ)
    cfg = {
        "data": {
            "dataset": "s3dis",
            "root": str(tmp_path / "processed"),
            "raw": str(tmp_path / "raw"),
            "synthetic": {"num_areas": 2, "rooms_per_area": 1, "seed": 1, "spacing": 0.15},
            "prepare_splits": ["Area_1", "Area_2"],
            "label_spec": "1%",
            "voxel_size": 0.15,
            "max_voxels": 400,
            "batch_size": 1,
            "train_split": "Area_1",
            "val_split": "Area_2",
            "test_split": "Area_2",
        },
        "model": {"name": "MinkUNet14A", "planes": [8] * 8, "init_dim": 8},
        "method": {"name": "erda", "weight": 0.1},
        "train": {
            "iterations": 2,
            "log_every": 1,
            "progress": False,
            "device": "cpu",
            "threads": 1,
        },
        "run_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{REPO}"}
    probe = subprocess.run(
        [sys.executable, "-c", "import open3d"], env=env, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "hidden by the test" in probe.stderr
    for argv in (
        ["train", str(path)],
        [
            "test",
            str(path),
            "--no-progress",
            "--checkpoint",
            str(tmp_path / "run" / "checkpoints" / "last.pt"),
        ],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "pcseg", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "test" / "metrics.json").is_file()
