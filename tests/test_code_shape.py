"""Code shape: no function in pcseg/ longer than 100 lines, except data generators that say
why in a comment at their def (issue 22). Lines are counted from ``def`` to the last line of
the body, docstring included (decorators not)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pcseg"
MAX_LINES = 100

#: data generators allowed to be long: one straight recipe of a synthetic scene, read top
#: to bottom. Key: ``<path under pcseg/, or its tail>::<qualified name>``; each must carry a
#: ``# long by design: ...`` comment on the line above its def.
GENERATORS = {
    "synthetic/kitti.py::make_kitti_world",
    "synthetic/rooms.py::make_s3dis_room",
}


def _functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) of every function and method, nested ones included."""
    out: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((prefix + child.name, child))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return out


def long_functions(root: Path = PACKAGE, limit: int = MAX_LINES) -> dict[str, tuple[int, int]]:
    """``{"<path under root>::<qualname>": (def line, length)}`` of functions over ``limit``."""
    found: dict[str, tuple[int, int]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for name, fn in _functions(ast.parse(path.read_text(), str(path))):
            n = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if n > limit:
                found[f"{rel}::{name}"] = (fn.lineno, n)
    return found


def _matches(entry: str, key: str) -> bool:
    tail, _, name = entry.partition("::")
    path, _, qual = key.partition("::")
    return qual == name and (path == tail or path.endswith("/" + tail))


def _allowed(key: str) -> bool:
    return any(_matches(e, key) for e in GENERATORS)


def test_long_function_walker_counts_def_to_last_body_line(tmp_path):
    (tmp_path / "m.py").write_text(
        "@decorator\n"
        "def f(\n    a,\n):\n" + '    """doc"""\n' + "    x = 1\n" * 97 + "\n"
        "class C:\n    def g(self):\n" + "        pass\n" * 101
    )
    assert long_functions(tmp_path) == {"m.py::f": (2, 101), "m.py::C.g": (105, 102)}
    assert long_functions(tmp_path, limit=101) == {"m.py::C.g": (105, 102)}


def test_no_function_over_100_lines():
    found = long_functions()
    bad = [f"{k} ({n} lines, line {line})" for k, (line, n) in found.items() if not _allowed(k)]
    assert not bad, "functions over 100 lines in pcseg/ (split them):\n" + "\n".join(bad)


def test_allow_lists_are_current():
    """Every entry names one long function that still exists (remove entries once fixed)."""
    found = long_functions()
    stale = [e for e in sorted(GENERATORS) if sum(_matches(e, k) for k in found) != 1]
    assert not stale, f"allow-list entries matching no (or several) long functions: {stale}"


def _comment_above(lines: list[str], def_line: int) -> list[str]:
    """The comment lines directly above the def at 1-based ``def_line`` (past decorators)."""
    i = def_line - 2
    while i >= 0 and lines[i].strip().startswith("@"):
        i -= 1
    out = []
    while i >= 0 and lines[i].strip().startswith("#"):
        out.append(lines[i].strip())
        i -= 1
    return out[::-1]


def test_long_generators_say_why_at_their_def():
    missing = []
    for key, (line, _) in long_functions().items():
        if any(_matches(e, key) for e in GENERATORS):
            lines = (PACKAGE / key.partition("::")[0]).read_text().splitlines()
            if not any(c.startswith("# long by design: ") for c in _comment_above(lines, line)):
                missing.append(key)
    assert not missing, f"long generators without a '# long by design: why' comment: {missing}"
