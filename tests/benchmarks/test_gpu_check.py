"""pcseg.benchmarks.gpu_check: the training configuration and the no-CUDA exit."""

from __future__ import annotations

import pytest
import torch

from pcseg.benchmarks import gpu_check


def test_gpu_check_training_config_is_minkunet34c_under_autocast(tmp_path):
    from pcseg.config import load_config

    cfg = load_config(
        gpu_check.DEMO_CONFIG,
        gpu_check.train_overrides(
            tmp_path / "processed", tmp_path / "run", "cuda", 200, "bf16", 50_000
        ),
    )
    assert cfg.model.name == "MinkUNet34C" and cfg.model.planes is None
    assert cfg.model.init_dim is None
    assert cfg.train.amp is True and cfg.train.amp_dtype == "bf16"
    assert cfg.train.iterations == 200 and cfg.train.device == "cuda"
    assert cfg.data.max_voxels == 50_000 and str(cfg.data.root) == str(tmp_path / "processed")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit")
def test_gpu_check_exits_2_without_cuda(capsys):
    assert gpu_check.main([]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA" in out[0]
