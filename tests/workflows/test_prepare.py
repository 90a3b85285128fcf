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


def test_prepare_if_missing_never_tops_up_a_folder_made_otherwise(tmp_path):
    """A label spec added to the config of a folder prepared at another voxel size: refused,
    naming the change and the command that reprocesses it; nothing is written."""
    import pytest

    from pcseg.config import Config
    from pcseg.data import processed
    from pcseg.readers.prepare import PrepareError
    from pcseg.readers.synthetic import SyntheticRooms
    from pcseg.workflows.prepare import prepare_if_missing

    cfg = Config()
    cfg.data.dataset, cfg.data.root = "s3dis", str(tmp_path / "p")
    cfg.data.raw = str(tmp_path / "r")
    cfg.data.label_spec, cfg.data.voxel_size = "1%", 0.1
    cfg.data.synthetic = SyntheticRooms(num_areas=1, rooms_per_area=1, seed=0, spacing=0.2)
    cfg.data.prepare_splits = ["Area_1"]
    prepare_if_missing(cfg)
    before = processed.read_meta(tmp_path / "p")
    cfg.data.voxel_size, cfg.data.prepare_specs = 0.2, ["1pt"]
    with pytest.raises(PrepareError) as e:
        prepare_if_missing(cfg)
    msg = str(e.value)
    assert "voxel_size: 0.1 became 0.2" in msg
    assert f"pcseg prepare s3dis --raw {tmp_path / 'r'} --out {tmp_path / 'p'} --force" in msg
    assert processed.read_meta(tmp_path / "p") == before
    assert not processed.labels_path(tmp_path / "p", "1pt", "x").parent.exists()
