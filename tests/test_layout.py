"""The tests mirror the package: ``tests/<package>/test_<module>.py`` tests
``pcseg/<package>/<module>.py`` (issue 22), so a renamed or removed module cannot leave a
test file behind under the old name. Modules without a test module of their own are printed
(``pytest -s tests/test_layout.py``), not failed: some are covered through other modules'
tests or by tests/integration/."""

from __future__ import annotations

from pathlib import Path

from helpers.paths import REPO

PACKAGE = REPO / "pcseg"
TESTS = REPO / "tests"

#: folders of tests/ that mirror no package: whole-command runs and the shared helpers
NOT_MIRRORED = {"integration", "helpers"}

#: top-level test modules that test the project as a whole rather than one module
CROSS_CUTTING = {
    "test_architecture.py",  # the import layers of pcseg/ (which package may import which)
    "test_code_shape.py",  # no over-long function anywhere in pcseg/
    "test_layout.py",  # this file: the tests mirror the package
    "test_packaging.py",  # pyproject.toml, environment.yml and the Makefile agree
}


def packages(root: Path = PACKAGE) -> set[str]:
    """Names of the first-level packages of ``root`` (folders with an ``__init__.py``)."""
    return {p.parent.name for p in root.glob("*/__init__.py")}


def module_under_test(test: Path, root: Path = PACKAGE, tests: Path = TESTS) -> Path | None:
    """The file of ``root`` that the test module ``test`` (a path under ``tests``) is named
    after, or None when there is none. ``tests/<pkg>/test_<pkg>.py`` names the package's
    ``__init__.py``; ``test_<sub>.py`` may name a sub-package ``<sub>/__init__.py``."""
    rel = test.relative_to(tests)
    name = test.stem.removeprefix("test_")
    folder = root.joinpath(*rel.parts[:-1])
    if len(rel.parts) > 1 and name == rel.parts[-2]:
        candidates = [folder / "__init__.py"]
    else:
        candidates = [folder / f"{name}.py", folder / name / "__init__.py"]
    return next((c for c in candidates if c.is_file()), None)


def layout_problems(root: Path = PACKAGE, tests: Path = TESTS) -> list[str]:
    """One line per test module or folder of ``tests`` that mirrors nothing in ``root``."""
    problems = []
    known = packages(root) | NOT_MIRRORED
    for folder in sorted(p for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"):
        if folder.name not in known:
            problems.append(f"tests/{folder.name}/ mirrors no package of pcseg/")
    for test in sorted(tests.rglob("test_*.py")):
        rel = test.relative_to(tests)
        if rel.parts[0] in NOT_MIRRORED or (len(rel.parts) == 1 and rel.name in CROSS_CUTTING):
            continue
        if module_under_test(test, root, tests) is None:
            problems.append(f"tests/{rel.as_posix()} tests no pcseg/{rel.parent.as_posix()} module")
    return problems


def untested_modules(root: Path = PACKAGE, tests: Path = TESTS) -> list[str]:
    """Modules of ``root`` (``__init__.py`` and ``__main__.py`` left out) no test module is
    named after, as paths under ``root``."""
    covered = {module_under_test(t, root, tests) for t in tests.rglob("test_*.py")}
    return [
        p.relative_to(root).as_posix()
        for p in sorted(root.rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py") and p not in covered
    ]


def test_layout_rules_on_a_made_up_tree(tmp_path):
    pkg, tests = tmp_path / "pcseg", tmp_path / "tests"
    for f in ("a/__init__.py", "a/x.py", "a/sub/__init__.py", "a/y.py", "top.py"):
        (pkg / f).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f).write_text("")
    for f in (
        "a/test_x.py",
        "a/test_sub.py",
        "a/test_a.py",
        "a/test_gone.py",
        "test_top.py",
        "test_layout.py",
        "integration/test_anything.py",
        "stray/test_x.py",
    ):
        (tests / f).parent.mkdir(parents=True, exist_ok=True)
        (tests / f).write_text("")
    assert module_under_test(tests / "a" / "test_x.py", pkg, tests) == pkg / "a" / "x.py"
    assert module_under_test(tests / "a" / "test_sub.py", pkg, tests) == pkg / "a/sub/__init__.py"
    assert module_under_test(tests / "a" / "test_a.py", pkg, tests) == pkg / "a" / "__init__.py"
    assert module_under_test(tests / "test_top.py", pkg, tests) == pkg / "top.py"
    assert layout_problems(pkg, tests) == [
        "tests/stray/ mirrors no package of pcseg/",
        "tests/a/test_gone.py tests no pcseg/a module",
        "tests/stray/test_x.py tests no pcseg/stray module",
    ]
    assert untested_modules(pkg, tests) == ["a/y.py"]


def test_every_test_module_mirrors_a_pcseg_module():
    """Fails on a test module named after no module; prints the modules with no test module."""
    missing = untested_modules()
    print(f"{len(missing)} pcseg modules have no test module named after them:")
    for m in missing:
        print(f"  pcseg/{m}")
    assert layout_problems() == []
