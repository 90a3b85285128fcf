"""Checkpoints: fine-tuning weights from another run (load_matching_weights)."""

from __future__ import annotations

import pytest
import torch

from pcseg.engine.checkpoint import (
    DATA_META_KEYS,
    data_meta_of,
    load_matching_weights,
    save_checkpoint,
)
from pcseg.models import MODELS

NAMES = [f"c{i}" for i in range(5)]


def _net(k: int, seed: int, planes: int = 8) -> torch.nn.Module:
    torch.manual_seed(seed)
    small = type("Small", (MODELS["MinkUNet14A"],), {"PLANES": (planes,) * 8, "INIT_DIM": 8})
    return small(3, k)


def _save(tmp_path, net, names):
    p = tmp_path / "src.pt"
    save_checkpoint(p, {"model": net.state_dict(), "class_names": names})
    return p


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


def test_same_class_list_loads_everything(tmp_path):
    src, dst = _net(5, 0), _net(5, 1)
    rep = load_matching_weights(dst, _save(tmp_path, src, NAMES), NAMES)
    assert rep["same_classes"] and not rep["fresh"] and not rep["skipped_from_checkpoint"]
    for (n, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert _same(a, b), n


@pytest.mark.parametrize("k, names", [(3, ["x", "y", "z"]), (5, NAMES[::-1])])
def test_other_class_list_gets_a_new_classifier(tmp_path, k, names):
    """Another number of classes, or the same number in another order: the classifier stays
    fresh (as initialised), every other tensor comes from the checkpoint."""
    src, dst = _net(5, 0), _net(k, 1)
    fresh_final = {n: t.clone() for n, t in dst.state_dict().items() if n.startswith("final.")}
    rep = load_matching_weights(dst, _save(tmp_path, src, NAMES), names)
    assert not rep["same_classes"] and sorted(rep["fresh"]) == sorted(fresh_final)
    got = dst.state_dict()
    for n, t in fresh_final.items():
        assert _same(got[n], t)
    for n, t in src.state_dict().items():
        if not n.startswith("final."):
            assert _same(got[n], t), n


def test_unrelated_model_is_refused_naming_the_file(tmp_path):
    path = _save(tmp_path, _net(5, 0, planes=16), NAMES)
    dst = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=str(path)):
        load_matching_weights(dst, path, NAMES)
    with pytest.raises(FileNotFoundError, match="nosuch.pt"):
        load_matching_weights(dst, tmp_path / "nosuch.pt", NAMES)


@pytest.mark.parametrize("cut", ["half", "empty", "text"])
def test_truncated_checkpoint_is_named_one_line(tmp_path, capsys, cut):
    from pcseg.cli.main import main
    from pcseg.engine.checkpoint import CheckpointError, load_checkpoint

    path = _save(tmp_path, _net(4, 0), NAMES)
    data = path.read_bytes()
    path.write_bytes({"half": data[: len(data) // 2], "empty": b"", "text": b"hello world"}[cut])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    want = f"checkpoint {path} is not a complete pcseg checkpoint (truncated or not a torch file)"
    assert str(e.value).startswith(want + ": ") and len(str(e.value)) > len(want) + 2
    las = tmp_path / "a.las"
    las.write_bytes(b"")
    assert main(["predict", str(las), "--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and want in err[0]


def test_data_meta_keeps_what_predict_needs_of_the_processed_meta():
    meta = {
        "dataset": "custom",
        "splits": {"train": ["a"]},
        "classes": {"names": ["x"]},
        "inputs": {"normalisation": {}},
        "fingerprint": {"format": 2, "classes": {"map": {"2": "x"}}},
    }
    got = data_meta_of(meta)
    assert list(got) == list(DATA_META_KEYS) == ["classes", "inputs", "fingerprint"]
    assert got["fingerprint"] is meta["fingerprint"] and got["classes"] is meta["classes"]
    assert data_meta_of({"dataset": "s3dis", "fingerprint": {"seed": 0}}) == {
        "fingerprint": {"seed": 0}
    }


def test_is_image_checkpoint(tmp_path):
    from pcseg.engine.checkpoint import is_image_checkpoint

    for dataset, want in (("images", True), ("voc", True), ("s3dis", False)):
        path = tmp_path / f"{dataset}.pt"
        torch.save({"model": {}, "config": {"data": {"dataset": dataset}}}, path)
        assert is_image_checkpoint(path) is want
    assert is_image_checkpoint(tmp_path / "missing.pt") is False


def _assert_same_weights(path, net):
    from pcseg.engine.checkpoint import load_checkpoint

    got = load_checkpoint(path)["model"]
    assert all(_same(got[n], v) for n, v in net.state_dict().items())


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A save that hits ENOSPC inside torch's writer: one DiskFullError naming the file and
    the bytes written; the previous checkpoint under that name loads unchanged."""
    from helpers.faults import no_space_after

    from pcseg.engine import checkpoint as ckpt
    from pcseg.io.atomic import DiskFullError

    net = _net(5, 0)
    path = _save(tmp_path, net, NAMES)
    monkeypatch.setattr(ckpt.torch, "save", no_space_after(4096))
    with pytest.raises(DiskFullError) as e:
        save_checkpoint(path, {"model": _net(5, 1).state_dict(), "class_names": NAMES})
    assert str(e.value).startswith(f"no space left on the device writing {path} (4,096 bytes")
    assert str(e.value).endswith("the previous src.pt is kept") and "\n" not in str(e.value)
    monkeypatch.undo()
    _assert_same_weights(path, net)
    assert [p.name for p in tmp_path.iterdir()] == ["src.pt"]


def test_disk_full_on_a_real_tmpfs(tmp_path):
    """The same through torch's real writer on a full tmpfs (skipped where none can be
    mounted): the second copy does not fit next to the first."""
    from helpers.faults import small_tmpfs

    from pcseg.io.atomic import DiskFullError

    net = _net(5, 0, planes=16)
    probe = _save(tmp_path, net, NAMES).stat().st_size
    with small_tmpfs(tmp_path / "mnt", f"{int(probe * 1.5) // 4096 * 4096 + 8192}") as mnt:
        path = _save(mnt, net, NAMES)
        with pytest.raises(DiskFullError, match=f"writing {path} .*the previous src.pt is kept"):
            save_checkpoint(path, {"model": _net(5, 1, planes=16).state_dict(), "names": NAMES})
        _assert_same_weights(path, net)
        assert [p.name for p in mnt.iterdir()] == ["src.pt"]
