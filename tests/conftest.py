"""Shared test fixtures: seeding, the location of the real scans (skip when absent) and a tiny
prepared synthetic S3DIS set (``prepared_rooms``, built once per session)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("PCSEG_REAL_DATA", REPO.parent / "shared" / "data" / "real"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def real_data() -> Path:
    """Path of ../shared/data/real; skips the test when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} not present")
    return REAL_DATA


def pytest_collection_modifyitems(config, items):  # noqa: D103
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# Test cases are small: one thread is as fast as two for them and, on a shared 2-core
# machine, avoids OpenMP threads spinning against each other (a 25x slow-down was seen).
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Every test module starts on one torch thread, whatever an earlier module (a tool run
    with ``train.threads``) left behind, and restores the count afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def prepared_rooms(tmp_path_factory) -> Path:
    """Processed folder of a tiny synthetic S3DIS set, prepared once for the session.

    2 areas x 2 rooms at 10 cm spacing (``write_synthetic_s3dis``), voxel 0.1 m, weak labels
    ``1%``, splits ``Area_1`` and ``Area_2``. Shared: tests must not write into it.
    """
    from pcseg.datasets.prepare import PrepareOptions, prepare_dataset
    from pcseg.datasets.synthetic import write_synthetic_s3dis

    root = tmp_path_factory.mktemp("prepared_rooms")
    raw = write_synthetic_s3dis(root / "raw", num_areas=2, rooms_per_area=2, seed=0, spacing=0.1)
    out = root / "processed"
    prepare_dataset(
        PrepareOptions(
            dataset="s3dis",
            raw=raw,
            out=out,
            voxel_size=0.1,
            labels=["1%"],
            splits=["Area_1", "Area_2"],
        )
    )
    return out


@pytest.fixture(scope="module")
def tiny():
    """A randomly initialised MinkUNet14A predictor (8 planes, 0.5 m voxels, ASPRS classes)
    on the CPU, for the tests of pcseg.inference."""
    from pcseg.benchmarks.predict import tiny_predictor

    torch.manual_seed(0)
    torch.set_num_threads(1)
    return tiny_predictor(0.5, planes=8)
