"""pcseg.cli.main: the parser (help, bad options), the dispatch, and how an exception becomes
an exit status: a user's mistake is one stderr line and status 2, a bug keeps its
traceback, --debug shows the exception."""

from __future__ import annotations

import re

import pytest

from pcseg.annotate.state import AnnotationError
from pcseg.annotate.web import ViserMissing
from pcseg.cli.main import is_user_error, main
from pcseg.config import ConfigError
from pcseg.data.weak_labels import SpecError, parse_spec
from pcseg.readers.prepare import PrepareError
from pcseg.viz.errors import DisplayUnavailable, ViewError
from pcseg.workflows.active import StudyError


def test_config_errors_exit_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {iterations: 2, lrr: 0.1}\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"unknown key 'train.lrr' \(did you mean 'train.lr'\?\)", err), err
    assert str(bad) in err


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in (
        "prepare",
        "train",
        "test",
        "view",
        "annotate",
        "benchmark",
        "demo",
        "compare",
        "synthetic",
        "active-study",
        "configs",
    ):
        assert f"    {cmd}" in out
    assert "--debug" in out


@pytest.mark.parametrize(
    "argv, says",
    [
        (["test", "--checkpoint", "{tmp}/none.pt"], "checkpoint {tmp}/none.pt does not exist"),
        (
            ["train", "custom/erda", "--set", "data.root={tmp}/nothere"],
            "data.root {tmp}/nothere has no processed data",
        ),
        (["train", "custom/erda", "--set", "data.label_spec=2pp"], "unknown label spec '2pp'"),
        (["train", "custom/erda", "--set", "train.lrr=1"], "(did you mean 'train.lr'?)"),
        (["train", "{tmp}/nosuch.yaml"], "config file {tmp}/nosuch.yaml does not exist"),
        (["compare", "--config-dir", "{tmp}/cfgs"], "{tmp}/cfgs/supervised.yaml does not exist"),
        (["configs", "nosuch/"], "no shipped config starts with 'nosuch/'"),
        (
            ["predict", "--checkpoint", "{tmp}/none.pt", "{tmp}/a.ply", "--out", "{tmp}/o"],
            "checkpoint {tmp}/none.pt",
        ),
    ],
)
def test_a_user_mistake_is_one_line_and_exit_2(argv, says, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert says.format(tmp=tmp_path) in lines[0] and "error" in lines[0]
    assert "Traceback" not in err


def test_a_bad_option_is_argparse_usage_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--frobnicate"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "pcseg: error: unrecognized arguments: --frobnicate"
    )


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.pt does not exist"):
        main(["--debug", "test", "--checkpoint", str(tmp_path / "none.pt")])


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Built-in exceptions (a bug, not the user's input) are not turned into a one-liner."""
    import pcseg.cli.configs as configs_cmd

    for exc in (ValueError("bad internal state"), KeyError("k"), RuntimeError("boom")):

        def broken(exc: Exception = exc) -> list:
            raise exc

        monkeypatch.setattr(configs_cmd, "list_configs", broken)
        with pytest.raises(type(exc)):
            main(["configs"])


def test_which_exceptions_are_user_errors():
    from pcseg.cli.main import error_message, is_user_error
    from pcseg.config import ConfigError
    from pcseg.sparse.backends import BackendUnavailableError
    from pcseg.workflows.runs import StaleRunError

    for e in (
        ConfigError("x"),
        StaleRunError("x"),
        BackendUnavailableError("x"),
        FileNotFoundError(2, "No such file or directory", "/a/b"),
        NotADirectoryError("x"),
        PermissionError("x"),
    ):
        assert is_user_error(e), e
    for e in (ValueError("x"), KeyError("x"), ImportError("x"), RuntimeError("x"), OSError("x")):
        assert not is_user_error(e), e
    assert error_message(FileNotFoundError(2, "No such file or directory", "/a/b")) == (
        "No such file or directory: /a/b"
    )
    assert error_message(ConfigError("two\n  lines")) == "two lines"


def _commands(tmp_path):
    missing = tmp_path / "missing"
    return [
        (["view", str(missing)], FileNotFoundError),
        (["prepare", "s3dis", "--raw", str(missing), "--out", str(tmp_path / "o")], PrepareError),
        (["train", str(missing) + ".yaml"], ConfigError),
        (["test", str(missing) + ".yaml"], ConfigError),
        (["annotate", str(missing), "--classes", str(missing) + ".yaml"], AnnotationError),
    ]


@pytest.mark.parametrize("i", range(5))
def test_user_mistake_is_one_line_and_status_2_and_debug_shows_it(tmp_path, capsys, i):
    argv, exc = _commands(tmp_path)[i]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # notes may come first (prepare: a split it skipped); the error is the one last line
    assert [e for e in err if e.startswith("pcseg: error: ")] == err[-1:], err
    assert "missing" in err[-1] and not any("Traceback" in e for e in err)
    with pytest.raises(exc):
        main(["--debug", *argv])


def test_the_error_types_pcseg_defines_are_user_errors():
    for e in (
        ViewError("x"),
        DisplayUnavailable("x"),
        SpecError("x"),
        StudyError("x"),
        ViserMissing("x"),
        FileNotFoundError(2, "No such file", "f"),
    ):
        assert is_user_error(e), e
    for e in (ValueError("x"), RuntimeError("x"), KeyError("x"), ImportError("x")):
        assert not is_user_error(e), e
    with pytest.raises(SpecError, match="unknown label spec"):
        parse_spec("2x")
