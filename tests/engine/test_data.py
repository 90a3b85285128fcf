"""pcseg.engine.data: a processed folder an earlier pcseg mixed (old scenes, new features
list in meta.json) stops training with a message instead of failing at predict."""

from __future__ import annotations

import pytest
import yaml
from helpers.classes import ASPRS

from pcseg.benchmarks.predict import write_synthetic_las
from pcseg.config import Config
from pcseg.data import processed
from pcseg.engine.data import MixedFolderError, build_dataset
from pcseg.readers.custom import prepare_custom


def test_a_folder_with_old_scenes_and_a_new_features_list_is_refused(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "proc"
    write_synthetic_las(raw / "a.las", 2000, seed=0)
    classes = tmp_path / "c.yaml"
    spec = ASPRS
    classes.write_text(yaml.safe_dump(spec))
    prepare_custom(raw, classes, out)
    cfg = Config()
    cfg.data.dataset, cfg.data.root, cfg.data.voxel_size = "custom", str(out), 0.5
    cfg.data.label_spec = "given"
    assert build_dataset(cfg, "train", "train").in_channels == 1  # as prepared: fine
    # what an earlier pcseg left after a rerun with features [intensity, return_number]
    meta = processed.read_meta(out)
    norm = meta["inputs"]["normalisation"]
    meta["inputs"]["normalisation"] = {
        "channels": ["intensity", "return_number"],
        "lo": [norm["lo"][0], 1.0],
        "hi": [norm["hi"][0], 2.0],
    }
    meta["classes"]["features"] = ["intensity", "return_number"]
    processed.write_meta(out, meta)
    assert processed.read_scene(out, "a").feats.shape[1] == 1
    with pytest.raises(MixedFolderError) as e:
        build_dataset(cfg, "train", "train")
    msg = str(e.value)
    assert "1 feature channel(s)" in msg and "['intensity', 'return_number']" in msg
    assert "--force" in msg and "\n" not in msg
