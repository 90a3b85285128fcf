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


def test_prepare_images_if_missing_generates_prepares_and_draws(tmp_path):
    """An image config with data.synthetic_images: the images are written to data.raw,
    prepared into data.root with the train spec and prepare_specs; a new spec is drawn later;
    nothing is redone when all is there; without data.raw the error names the command."""
    import pytest

    from pcseg.config import config_from_dict
    from pcseg.images import processed as ip
    from pcseg.workflows.prepare import prepare_if_missing

    d = {
        "data": {
            "dataset": "images",
            "root": str(tmp_path / "p"),
            "raw": str(tmp_path / "r"),
            "synthetic_images": {"train": 4, "val": 1, "test": 1, "size": 16},
            "label_spec": "1%",
            "prepare_specs": ["1/4"],
        },
        "model": {"name": "UNet2D"},
        "train": {"iterations": 1},
    }
    cfg = config_from_dict(d)
    prepare_if_missing(cfg)
    meta = ip.read_meta(tmp_path / "p")
    assert {k: len(v) for k, v in meta.splits.items()} == {"train": 4, "val": 1, "test": 1}
    assert len(ip.labelled_images(tmp_path / "p", "1/4")) == 1
    first = ip.load_weak_mask(tmp_path / "p", "1%", meta.splits["train"][0])
    stamp = (tmp_path / "p" / "meta.json").stat().st_mtime_ns
    cfg.data.label_spec = "2pt"
    prepare_if_missing(cfg)  # the folder stays; only the new spec is drawn
    assert (tmp_path / "p" / "meta.json").stat().st_mtime_ns == stamp
    assert len(ip.labelled_images(tmp_path / "p", "2pt")) == 4
    assert (ip.load_weak_mask(tmp_path / "p", "1%", meta.splits["train"][0]) == first).all()
    cfg.data.root, cfg.data.raw = str(tmp_path / "q"), None
    with pytest.raises(FileNotFoundError, match="pcseg prepare images"):
        prepare_if_missing(cfg)
