"""pcseg.config_files: shipped configs found by name (``custom/erda``) as well as by path; a file
of that name in the working directory wins; the listing matches the files of configs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcseg import config_files
from pcseg.config import ConfigError, config_to_dict, load_config
from pcseg.config_files import (
    list_configs,
    resolve_config_dir,
    resolve_config_path,
    shipped_config_dir,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The working directory is an empty folder outside the checkout."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_checkout_reads_its_own_configs_folder():
    assert shipped_config_dir() == CONFIGS


@pytest.mark.parametrize(
    "name", ["custom/erda", "custom/erda.yaml", "configs/custom/erda.yaml", "configs/custom/erda"]
)
def test_names_resolve_to_the_shipped_file(elsewhere, name):
    assert resolve_config_path(name) == CONFIGS / "custom" / "erda.yaml"


def test_a_file_in_the_working_directory_wins(elsewhere):
    (elsewhere / "custom").mkdir()
    (elsewhere / "custom" / "erda.yaml").write_text(
        "method: {name: supervised}\ntrain: {iterations: 3}\n"
    )
    assert resolve_config_path("custom/erda.yaml") == Path("custom/erda.yaml")
    assert load_config("custom/erda.yaml").method.name == "supervised"
    # without the suffix no local file matches: the shipped one
    assert resolve_config_path("custom/erda") == CONFIGS / "custom" / "erda.yaml"
    assert load_config("custom/erda").method.name == "erda"


@pytest.mark.parametrize("name", ["custom/nosuch", "../configs/custom/erda", "/nowhere/x.yaml", ""])
def test_unknown_names_come_back_unchanged(elsewhere, name):
    assert resolve_config_path(name) == Path(name)


def test_load_config_by_name_equals_by_path_with_its_base_chain(elsewhere):
    by_name = load_config("s3dis/erda_1pct", ["train.lr=0.003"])
    by_path = load_config(CONFIGS / "s3dis" / "erda_1pct.yaml", ["train.lr=0.003"])
    assert config_to_dict(by_name) == config_to_dict(by_path)
    # the values come from both files of the chain: s3dis/base.yaml and erda_1pct.yaml
    assert by_name.data.dataset == "s3dis" and by_name.method.name == "erda"
    assert by_name.train.lr == 0.003


def test_a_missing_name_is_reported_as_typed(elsewhere):
    with pytest.raises(ConfigError, match=r"config file custom/nosuch does not exist"):
        load_config("custom/nosuch")


def test_folders_resolve_by_name(elsewhere):
    assert resolve_config_dir("demo") == CONFIGS / "demo"
    assert resolve_config_dir("configs/budget") == CONFIGS / "budget"
    assert resolve_config_dir("nosuch") == Path("nosuch")
    (elsewhere / "demo").mkdir()
    assert resolve_config_dir("demo") == Path("demo")


def test_listing_matches_the_files_and_their_first_comment_lines():
    files = sorted(CONFIGS.rglob("*.yaml"))
    expected = []
    for f in files:
        first = next(line for line in f.read_text().splitlines() if line.strip())
        comment = first[1:].strip() if first.startswith("#") else ""
        expected.append((str(f.relative_to(CONFIGS))[: -len(".yaml")], comment))
    got = list_configs()
    assert got == sorted(expected)
    assert len(got) == len(files) > 50
    assert dict(got)["custom/erda"] == (
        "ERDA on your own scans: CE on the labelled points + w * H(p, q) on the unlabelled ones,"
    )


def test_an_installed_package_reads_pcseg_configs(tmp_path, monkeypatch):
    """A wheel holds site-packages/pcseg/configs: preferred over a configs/ beside it."""
    pkg = tmp_path / "site" / "pcseg"
    (pkg / "configs" / "custom").mkdir(parents=True)
    (pkg / "configs" / "custom" / "erda.yaml").write_text("# shipped\nmethod: {name: erda}\n")
    (tmp_path / "site" / "configs").mkdir()  # some other project's folder: not ours
    monkeypatch.setattr(config_files, "_PACKAGE", pkg)
    monkeypatch.chdir(tmp_path)
    assert shipped_config_dir() == pkg / "configs"
    assert resolve_config_path("custom/erda") == pkg / "configs" / "custom" / "erda.yaml"
    assert list_configs() == [("custom/erda", "shipped")]
    monkeypatch.setattr(config_files, "_PACKAGE", tmp_path / "bare" / "pcseg")
    assert shipped_config_dir() is None and list_configs() == []
    assert resolve_config_path("custom/erda") == Path("custom/erda")
