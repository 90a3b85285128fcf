"""Every command leaves a user's mistake to pcseg.cli.main's one handler: one line
``pcseg: error: ...`` and exit status 2, the exception itself under ``--debug``."""

from __future__ import annotations

import pytest

from pcseg.annotate.state import AnnotationError
from pcseg.annotate.web import ViserMissing
from pcseg.cli.main import is_user_error, main
from pcseg.config import ConfigError
from pcseg.data.weak_labels import SpecError, parse_spec
from pcseg.readers.prepare import PrepareError
from pcseg.viz.errors import DisplayUnavailable, ViewError
from pcseg.workflows.active import StudyError


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
