"""pcseg.workflows.runs: which labels choose the checkpoint (selection_note), which config
differences make a run stale, and the config a bare `pcseg train` uses."""

from __future__ import annotations

from pathlib import Path

from helpers.paths import REPO

from pcseg.cli.main import main
from pcseg.config import config_from_dict
from pcseg.workflows import runs
from pcseg.workflows.runs import config_differences, load_run_config, selection_note


def _cfg(root: Path, val: str, test: str, train: str = "Area_1", spec: str = "1%"):
    return config_from_dict(
        {
            "data": {
                "dataset": "s3dis",
                "root": str(root),
                "train_split": train,
                "val_split": val,
                "test_split": test,
                "label_spec": spec,
            },
            "train": {"iterations": 1},
            "run_dir": "r",
        }
    )


def test_selection_note_says_which_labels_choose_best(prepared_rooms):
    assert selection_note(_cfg(prepared_rooms, "Area_2", "Area_1+Area_2", "Area_1")) is not None
    both = selection_note(_cfg(prepared_rooms, "Area_2", "Area_2"))
    assert "also the test split" in both and "last.pt" in both
    assert "training scenes" in selection_note(_cfg(prepared_rooms, "Area_1", "Area_2"))
    assert selection_note(_cfg(prepared_rooms, "Area_1", "Area_2", spec="full")) is None
    assert selection_note(_cfg(prepared_rooms, "", "Area_2")) is None


def test_config_differences_ignore_run_only_settings():
    a = _cfg(Path("p"), "Area_2", "Area_2")
    b = a.model_copy(deep=True)
    b.train.threads, b.train.progress, b.train.device, b.run_dir = 1, False, "cpu", "other"
    assert config_differences(a, b) == []
    b.train.iterations, b.method = 5, b.method.model_copy(update={"label_smoothing": 0.1})
    b.data.label_spec = "1pt"
    assert config_differences(a, b) == [
        "data.label_spec: '1%' -> '1pt'",
        "method.label_smoothing: 0.0 -> 0.1",
        "train.iterations: 1 -> 5",
    ]


def test_no_argument_train_uses_demo_config_with_repo_paths():
    cfg = load_run_config(None, [])
    assert cfg.method.name == "erda"
    assert Path(cfg.data.root) == REPO / "data" / "demo" / "processed"
    assert Path(cfg.run_dir) == REPO / "runs" / "demo" / "erda"


def test_checkout_is_found_from_its_package_folder_only(tmp_path):
    assert runs.source_checkout() == REPO == runs.CHECKOUT
    # an installed package: site-packages/pcseg, no pyproject.toml / configs next to it
    site = tmp_path / "site-packages"
    (site / "pcseg").mkdir(parents=True)
    assert runs.source_checkout(site / "pcseg") is None
    (site / "pyproject.toml").write_text("")
    assert runs.source_checkout(site / "pcseg") is None  # no configs/ either
    (site / "configs").mkdir()
    assert runs.source_checkout(site / "pcseg") == site


def test_installed_defaults_land_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "CHECKOUT", None)
    monkeypatch.chdir(tmp_path)
    assert runs.default_root() == tmp_path
    cfg = runs.load_run_config(None, [])
    assert Path(cfg.run_dir) == tmp_path / "runs" / "demo" / "erda"
    assert Path(cfg.data.root) == tmp_path / "data" / "demo" / "processed"
    monkeypatch.setattr(runs, "CHECKOUT", REPO)
    assert runs.default_root() == REPO
    assert Path(runs.load_run_config(None, []).run_dir) == REPO / "runs" / "demo" / "erda"


def test_compare_default_run_root_follows_the_working_directory(tmp_path, monkeypatch, capsys):
    """``pcseg compare`` without --run-root: RUN_ROOT under the working directory when
    installed (the comparison itself replaced by a recorder)."""
    monkeypatch.setattr(runs, "CHECKOUT", None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfgs").mkdir()
    import pcseg.cli.compare as compare

    seen = {}

    def fake(config_dir, methods, seeds, run_root, *a, **kw):
        seen["run_root"] = run_root

    monkeypatch.setattr(compare, "compare_methods", fake)
    assert main(["compare", "--config-dir", str(tmp_path / "cfgs")]) == 0
    assert seen["run_root"] == tmp_path / "runs" / "compare" / "cfgs"
