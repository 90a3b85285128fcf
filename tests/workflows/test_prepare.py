"""pcseg.workflows.prepare: prepare_if_missing generates and prepares an area added to an old
synthetic folder, keeping the first areas' rooms."""

import numpy as np


def test_prepare_if_missing_adds_a_new_validation_area(tmp_path):
    """An old demo folder (3 areas) gets the added area: generated and prepared; the first
    areas are the same rooms (one seed, areas drawn in order)."""
    from pcseg.config import Config
    from pcseg.data import processed
    from pcseg.readers.synthetic import SyntheticRooms
    from pcseg.workflows.prepare import prepare_if_missing

    cfg = Config()
    cfg.data.dataset, cfg.data.root = "s3dis", str(tmp_path / "p")
    cfg.data.raw = str(tmp_path / "r")
    cfg.data.label_spec, cfg.data.voxel_size = "1%", 0.1
    cfg.data.synthetic = SyntheticRooms(num_areas=2, rooms_per_area=1, seed=0, spacing=0.15)
    cfg.data.prepare_splits = ["Area_1", "Area_2"]
    prepare_if_missing(cfg)
    first = processed.split_scenes(tmp_path / "p", "Area_1")[0]
    before = processed.read_scene(tmp_path / "p", first)
    cfg.data.synthetic = cfg.data.synthetic.model_copy(update={"num_areas": 3})
    cfg.data.prepare_splits = ["Area_1", "Area_2", "Area_3"]
    prepare_if_missing(cfg)
    meta = processed.read_meta(tmp_path / "p")
    assert set(meta["splits"]) == {"Area_1", "Area_2", "Area_3"}
    after = processed.read_scene(tmp_path / "p", first)
    np.testing.assert_array_equal(before.coords, after.coords)
