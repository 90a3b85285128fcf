"""pcseg.images.folder: an images/ + masks/ folder with a CLASSES.yaml (values mapped,
ignored, refused), its splits, the errors naming the file and key, and a real photograph
(matplotlib's sample grace_hopper.jpg) read through it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.images import save_rgb
from PIL import Image

from pcseg.images.common import DamagedImageError
from pcseg.images.folder import ImageClassesError, open_folder, read_classes


def _folder(root: Path, classes: dict, files: dict[str, np.ndarray], size=(6, 7)) -> Path:
    """images/<rel>.png (random) + masks/<rel>.png (the given values) + CLASSES.yaml."""
    rng = np.random.default_rng(0)
    for rel, values in files.items():
        save_rgb(root / "images" / f"{rel}.png", rng.integers(0, 256, (*size, 3)))
        if values is not None:
            (root / "masks" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(values).save(root / "masks" / f"{rel}.png")
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "CLASSES.yaml").write_text(yaml.safe_dump(classes))
    return root


CLASSES = {
    "names": ["background", "cat", "dog"],
    "map": {0: "background", 38: "cat", 75: 2},
    "ignore": [255],
    "splits": {"train": "train/*", "val": ["val/*"]},
}


def test_values_mapped_ignored_and_splits(tmp_path):
    m = np.zeros((6, 7), np.uint8)
    m[1:3, 1:3], m[4, :], m[0, 6] = 38, 75, 255
    root = _folder(tmp_path, CLASSES, {"train/a": m, "train/sub/b": m, "val/c": m, "train/d": None})
    src = open_folder(root)
    assert src.splits == {
        "train": ["train__a", "train__d", "train__sub__b"],
        "val": ["val__c"],
        "test": [],
    }
    assert src.classes == CLASSES["names"] and src.palette[1] == (128, 0, 0)  # VOC's by default
    s = src.read("train__sub__b")
    want = np.zeros((6, 7), np.uint8)
    want[1:3, 1:3], want[4, :], want[0, 6] = 1, 2, 255
    assert np.array_equal(s.mask, want) and s.instances is None
    assert (src.read("train__d").mask == 255).all()  # no mask file: an unlabelled image


def test_identity_map_16_bit_masks_instances_and_colours(tmp_path):
    m = np.array([[0, 1, 2], [2, 65535, 1]], np.uint16)
    classes = {"names": ["a", "b", "c"], "ignore": [65535], "colors": {"b": [1, 2, 3]}}
    root = _folder(tmp_path, classes, {"x": m}, size=(2, 3))
    inst = np.array([[0, 4, 4], [9, 0, 4]], np.uint16)
    (root / "instances").mkdir()
    Image.fromarray(inst).save(root / "instances" / "x.png")
    src = open_folder(root)
    s = src.read("x")
    assert s.mask.tolist() == [[0, 1, 2], [2, 255, 1]]
    assert s.instances is not None and s.instances.tolist() == inst.tolist()
    assert src.palette[1] == (1, 2, 3) and src.splits["train"] == ["x"]


def test_damaged_images_are_named(tmp_path):
    m = np.zeros((6, 7), np.uint8)
    odd = m.copy()
    odd[2, 2] = 99
    classes = {**CLASSES, "splits": {"train": "train/*"}}
    root = _folder(tmp_path, classes, {"train/v": odd, "train/s": m[:5], "train/t": m})
    src = open_folder(root)
    with pytest.raises(DamagedImageError, match=r"masks/train/v.png: mask value 99 not in the map"):
        src.read("train__v")
    with pytest.raises(DamagedImageError, match=r"masks/train/s.png: 7x5 pixels, its image"):
        src.read("train__s")
    data = (root / "images/train/t.png").read_bytes()
    (root / "images/train/t.png").write_bytes(data[:60])
    with pytest.raises(DamagedImageError, match=r"images/train/t.png: unreadable image"):
        src.read("train__t")
    save_rgb(root / "masks/train/t.png", np.zeros((6, 7, 3)))
    (root / "images/train/t.png").write_bytes(data)
    with pytest.raises(DamagedImageError, match=r"masks/train/t.png: a RGB picture"):
        src.read("train__t")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, "colour: Extra inputs are not permitted"),
        ({"map": {3: "bird"}}, "'bird' is not in names"),
        ({"map": {3: 7}}, "class index 7 outside 0..2"),
        ({"names": ["a", "a"]}, "repeated: \\['a'\\]"),
        ({"map": {255: "cat"}}, "both mapped and ignored: \\[255\\]"),
        ({"splits": {"train": "nope/*"}}, "splits: train: \\['nope/\\*'\\] match no image"),
        ({"splits": {"holdout": "*"}}, "'holdout' is not train, val or test"),
        ({"colors": {"cat": [1, 2]}}, "colors: cat: expected"),
    ],
)
def test_classes_errors_name_file_and_key(tmp_path, change, message):
    root = _folder(tmp_path, {**CLASSES, **change}, {"train/a": np.zeros((6, 7), np.uint8)})
    with pytest.raises(ImageClassesError, match=f"CLASSES.yaml.*{message}|{message}"):
        open_folder(root)


def test_folder_layout_errors(tmp_path):
    with pytest.raises(ImageClassesError, match="CLASSES.yaml does not exist"):
        open_folder(tmp_path)
    (tmp_path / "CLASSES.yaml").write_text("names: [a]\n")
    with pytest.raises(ImageClassesError, match="images does not exist"):
        open_folder(tmp_path)
    save_rgb(tmp_path / "images" / "a.png", np.zeros((2, 2, 3)))
    with pytest.raises(ImageClassesError, match="masks does not exist"):
        open_folder(tmp_path)
    save_rgb(tmp_path / "images" / "a.jpg", np.zeros((2, 2, 3)))
    (tmp_path / "masks").mkdir()
    with pytest.raises(ImageClassesError, match="two images of one id 'a'"):
        open_folder(tmp_path)
    (tmp_path / "CLASSES.yaml").write_text("names: [a\n")
    with pytest.raises(ImageClassesError, match="not YAML"):
        read_classes(tmp_path / "CLASSES.yaml")


def test_a_real_photograph_through_the_folder_reader(tmp_path):
    """grace_hopper.jpg ships in matplotlib's mpl-data/sample_data (a registry package)."""
    matplotlib = pytest.importorskip("matplotlib")
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not installed")
    (tmp_path / "images").mkdir()
    shutil.copy(photo, tmp_path / "images" / "grace.jpg")
    with Image.open(photo) as im:
        w, h = im.size
        rgb = np.asarray(im.convert("RGB"))
    mask = np.zeros((h, w), np.uint8)  # a box over the person, a 2-pixel unlabelled border
    mask[h // 8 - 2 : h + 2, w // 4 - 2 : 3 * w // 4 + 2] = 255
    mask[h // 8 :, w // 4 : 3 * w // 4] = 1
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "grace.png")
    (tmp_path / "CLASSES.yaml").write_text("names: [background, person]\n")
    s = open_folder(tmp_path).read("grace")
    assert s.image.shape == (h, w, 3) and np.array_equal(s.image, rgb)
    assert np.array_equal(s.mask, mask)
    assert int((s.mask == 1).sum()) == (h - h // 8) * (3 * w // 4 - w // 4)
