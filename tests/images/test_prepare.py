"""pcseg.images.prepare through ``pcseg prepare voc|cityscapes|images``: processed folders
that hold what the raw files say, damaged files named and skipped with the run going on
(exit 1), label specs drawn, reruns, refusals and argument errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers.images import save_palette_png, write_cityscapes_image, write_voc
from PIL import Image

from pcseg.cli.main import main
from pcseg.images import processed
from pcseg.images.prepare import ImagePrepareError, ImagePrepareOptions, prepare_images
from pcseg.images.synthetic import write_synthetic_images
from pcseg.images.voc import CLASSES as VOC_CLASSES

TRAIN = ["2007_000001", "2007_000002", "2007_000003", "2007_000004", "2007_000005"]
VAL = ["2007_000010", "2007_000011"]


def test_voc_damaged_files_are_named_and_skipped(tmp_path, capsys):
    raw = tmp_path / "VOC2012"
    written = write_voc(raw, TRAIN, VAL)
    bad_value = written[TRAIN[1]][0].copy()
    bad_value[0, 0] = 37
    save_palette_png(raw / "SegmentationClass" / f"{TRAIN[1]}.png", bad_value)
    save_palette_png(raw / "SegmentationClass" / f"{TRAIN[2]}.png", written[TRAIN[2]][0][:, :9])
    jpg = raw / "JPEGImages" / f"{VAL[1]}.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    out = tmp_path / "proc"
    args = ["prepare", "voc", "--raw", str(tmp_path), "--out", str(out)]
    assert main([*args, "--labels", "1%", "1/2", "click"]) == 1
    err = capsys.readouterr().err
    assert f"skipped image {TRAIN[1]}: " in err and "mask value 37 not in the map" in err
    assert f"skipped image {TRAIN[2]}: " in err and "9x12 pixels, its image" in err
    assert f"skipped image {VAL[1]}: " in err and "unreadable image" in err
    assert f"3 of 7 images failed: {TRAIN[1]}, {TRAIN[2]}, {VAL[1]}" in err
    meta = processed.read_meta(out)
    good = [TRAIN[0], *TRAIN[3:]]
    assert meta.splits == {"train": good, "val": [VAL[0]], "test": []}
    assert meta.classes == VOC_CLASSES and meta.palette[15] == (192, 128, 128)
    summary = json.loads((out / "summary.json").read_text())
    assert [f["image"] for f in summary["failures"]] == [TRAIN[1], TRAIN[2], VAL[1]]
    counts = np.zeros(21, np.int64)
    for i in good:
        cls, obj = written[i]
        assert np.array_equal(processed.load_mask(out, i), cls)
        inst = processed.load_instances(out, i)
        assert inst is not None and np.array_equal(inst, np.where(obj == 255, 0, obj))
        counts += np.bincount(cls[cls != 255], minlength=21)
        weak = processed.load_weak_mask(out, "1%", i)
        for k in np.unique(cls[cls != 255]):  # 1% of each class per image, at least one
            assert int((weak == k).sum()) == max(int((cls == k).sum() * 0.01), 1)
        click = processed.load_weak_mask(out, "click", i)
        assert sorted(inst[click != 255].tolist()) == [1, 2]  # one pixel per object
    assert summary["train_class_pixels"] == dict(zip(VOC_CLASSES, counts.tolist(), strict=True))
    assert len(processed.labelled_images(out, "1/2")) == math.ceil(3 / 2)
    assert summary["labels"]["1/2"] == {"labelled_images": 2}
    # a rerun keeps what is done (the damaged ones fail again), and the labels
    before = (out / "labels" / "1pct" / f"{good[0]}.png").read_bytes()
    assert main(args) == 1
    assert processed.read_meta(out).splits == meta.splits
    assert (out / "labels" / "1pct" / f"{good[0]}.png").read_bytes() == before


def test_cityscapes_train_ids_and_clicks(tmp_path):
    ids = np.full((6, 8), 7, np.int64)
    ids[0] = 0
    ids[3:5, 1:3] = 26
    ids[3:5, 5:7] = 26
    inst = ids.copy()
    inst[3:5, 1:3], inst[3:5, 5:7] = 26000, 26001
    write_cityscapes_image(tmp_path, "train", "aachen", "aachen_000000_000019", ids, inst)
    write_cityscapes_image(tmp_path, "val", "lindau", "lindau_000000_000019", ids, inst)
    out = tmp_path / "proc"
    assert (
        main(
            [
                "prepare",
                "cityscapes",
                "--raw",
                str(tmp_path),
                "--out",
                str(out),
                "--labels",
                "click",
                "2pt",
            ]
        )
        == 0
    )
    meta = processed.read_meta(out)
    assert meta.splits == {
        "train": ["aachen_000000_000019"],
        "val": ["lindau_000000_000019"],
        "test": [],
    }
    m = processed.load_mask(out, "lindau_000000_000019")
    assert (m[0] == 255).all() and (m[1:3] == 0).all() and (m[3:5, 1:3] == 13).all()
    click = processed.load_weak_mask(out, "click", "aachen_000000_000019")
    assert (click != 255).sum() == 2 and set(click[click != 255].tolist()) == {13}
    two = processed.load_weak_mask(out, "2pt", "aachen_000000_000019")
    assert {k: int((two == k).sum()) for k in (0, 13)} == {0: 2, 13: 2}


def test_synthetic_images_prepared_and_refusals(tmp_path, capsys):
    raw = tmp_path / "raw"
    assert (
        main(["synthetic", "images", "--out", str(raw), "--images", "9", "2", "3", "--size", "24"])
        == 0
    )
    out = tmp_path / "proc"
    assert main(["prepare", "images", "--raw", str(raw), "--out", str(out), "--labels", "1/8"]) == 0
    meta = processed.read_meta(out)
    assert {k: len(v) for k, v in meta.splits.items()} == {"train": 9, "val": 2, "test": 3}
    assert meta.classes[0] == "background" and meta.dataset == "images"
    with Image.open(raw / "images" / "val" / "0001.png") as im:
        assert np.array_equal(processed.load_image(out, "val__0001"), np.asarray(im))
    assert len(processed.labelled_images(out, "1/8")) == 2  # ceil(9 / 8)
    assert processed.load_instances(out, "train__0000") is not None
    other = write_synthetic_images(tmp_path / "other", train=2, val=0, test=0, size=24, seed=5)
    capsys.readouterr()
    assert main(["prepare", "images", "--raw", str(other), "--out", str(out)]) == 2
    assert "was prepared from other data" in capsys.readouterr().err
    assert main(["prepare", "images", "--raw", str(other), "--out", str(out), "--overwrite"]) == 0
    assert processed.read_meta(out).splits["train"] == ["train__0000", "train__0001"]
    assert not (out / "labels").exists()  # labels of another train split: gone
    assert not (out / "images" / "train__0005.png").exists()


def test_nothing_prepared_raises_and_bad_arguments(tmp_path, capsys):
    raw = write_synthetic_images(tmp_path / "raw", train=1, val=0, test=0, size=16)
    (raw / "images" / "train" / "0000.png").write_bytes(b"not a png")
    opts = ImagePrepareOptions(dataset="images", raw=raw, out=tmp_path / "p")
    with pytest.raises(ImagePrepareError, match="every image failed"):
        prepare_images(opts)
    with pytest.raises(ImagePrepareError, match="does not exist"):
        prepare_images(ImagePrepareOptions(dataset="voc", raw=tmp_path / "no", out=tmp_path / "q"))
    base = ["prepare", "images", "--raw", str(raw), "--out", str(tmp_path / "p")]
    for extra, message in [
        (["--labels", "1/1"], "--labels 1/1"),
        (["--voxel-size", "0.1"], "--voxel-size is for point clouds"),
        (["--voc-aug", "on"], "--voc-aug applies to voc only"),
    ]:
        with pytest.raises(SystemExit) as e:
            main([*base, *extra])
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert main([*base, "--split", "holdout"]) == 2
    assert "no split ['holdout']" in capsys.readouterr().err


def test_images_folder_damaged_files_named_and_skipped(tmp_path, capsys):
    raw = write_synthetic_images(tmp_path / "raw", train=6, val=1, test=0, size=24)
    img = raw / "images" / "train" / "0001.png"
    img.write_bytes(img.read_bytes()[:-300])  # a truncated PNG image
    mask = raw / "masks" / "train" / "0002.png"
    mask.write_bytes(mask.read_bytes()[:-40])  # a truncated PNG mask
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(raw / "masks" / "train" / "0003.png")
    m = np.asarray(Image.open(raw / "masks" / "train" / "0004.png")).copy()
    m[0, 0] = 9  # no class 9 in CLASSES.yaml
    Image.fromarray(m).save(raw / "masks" / "train" / "0004.png")
    out = tmp_path / "proc"
    assert main(["prepare", "images", "--raw", str(raw), "--out", str(out), "--labels", "1%"]) == 1
    err = capsys.readouterr().err
    for name, why in [
        ("0001", "images/train/0001.png: unreadable image"),
        ("0002", "masks/train/0002.png: unreadable image"),
        ("0003", "masks/train/0003.png: 24x20 pixels, its image"),
        ("0004", "masks/train/0004.png: mask value 9 not in the map"),
    ]:
        assert f"skipped image train__{name}: " in err and why in err, name
    assert "4 of 7 images failed" in err
    meta = processed.read_meta(out)
    assert meta.splits["train"] == ["train__0000", "train__0005"] and meta.splits["val"] == [
        "val__0000"
    ]
    assert processed.labelled_images(out, "1%") == ["train__0000", "train__0005"]
    assert not (out / "images" / "train__0001.png").exists()
