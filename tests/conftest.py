"""Shared test fixtures: seeding, the real scans (skip when absent), a tiny prepared synthetic
S3DIS set (``prepared_rooms``, built once per session), a tiny predictor (``tiny``) and the
synthetic room with a run folder of the pcseg.viz tests (``room``). Plain helpers are in
tests/helpers/."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.paths import REAL_DATA
from helpers.viz import CLS, _room

from pcseg.data.classes import S3DIS_CLASSES
from pcseg.io.atomic import atomic_save_npy, atomic_save_npz, atomic_write_json


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
    from pcseg.readers.prepare import PrepareOptions, prepare_dataset
    from pcseg.readers.synthetic import write_synthetic_s3dis

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


@pytest.fixture
def room(tmp_path: Path) -> dict:
    """processed folder tmp/proc (2 scenes, spec 1%) + run folder tmp/run with predictions."""
    proc, run = tmp_path / "proc", tmp_path / "run"
    rng = np.random.default_rng(0)
    info = {}
    for name, chair in (("room_1", True), ("room_2", False)):
        coords, sem = _room(chair)
        n = len(coords)
        feats = rng.uniform(0, 1, (n, 3)).astype(np.float32)
        atomic_save_npz(
            proc / "scenes" / f"{name}.npz",
            coords=coords,
            feats=feats,
            semantic=sem,
            instance=np.full(n, -1, np.int64),
        )
        atomic_write_json(
            proc / "scenes" / f"{name}.json",
            {
                "name": name,
                "dataset": "s3dis",
                "class_names": list(S3DIS_CLASSES),
                "source": "test",
                "num_points": n,
                "feat_kind": "rgb",
                "class_counts": np.bincount(sem, minlength=13).tolist(),
                "extra": {},
            },
        )
        idx = np.arange(0, n, 50, dtype=np.int64)
        atomic_save_npy(proc / "labels" / "1pct" / f"{name}.npy", idx)
        pred = sem.copy()
        pred[sem == CLS["chair"]] = CLS["sofa"]
        pseudo = np.where(sem == CLS["floor"], sem, -1)
        conf = np.where(sem == CLS["chair"], 0.2, 0.9).astype(np.float32)
        ent = np.where(sem == CLS["chair"], 2.0, 0.1).astype(np.float32)
        atomic_save_npz(
            run / "test" / "predictions" / f"{name}.npz",
            pred=pred,
            pseudo=pseudo,
            confidence=conf,
            entropy=ent,
        )
        info[name] = dict(
            coords=coords,
            sem=sem,
            feats=feats,
            idx=idx,
            pred=pred,
            pseudo=pseudo,
            conf=conf,
            ent=ent,
        )
    atomic_write_json(
        proc / "meta.json",
        {
            "dataset": "s3dis",
            "class_names": list(S3DIS_CLASSES),
            "voxel_size": 0.05,
            "splits": {"val": ["room_1", "room_2"]},
            "label_specs": ["1%"],
            "seed": 0,
        },
    )
    run.mkdir(parents=True, exist_ok=True)
    # relative root: resolved against the run folder's parent
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"root": "proc", "label_spec": "1%"}}))
    return {"proc": proc, "run": run, "scenes": info}
