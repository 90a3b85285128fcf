"""pcseg.workflows.runs: default outputs (``runs/``, the demo config's relative paths) go to
the source checkout pcseg runs from, else to the current working directory, never into
site-packages of an installed wheel."""

from __future__ import annotations

from pathlib import Path

from pcseg.cli.main import main
from pcseg.workflows import runs

REPO = Path(__file__).resolve().parents[1]


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
