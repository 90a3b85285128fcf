"""The layers of pcseg as a contract (issue 22), checked on the source with ``ast``:

* no import circle between the modules of pcseg (every import counts, function-level and
  ``TYPE_CHECKING`` ones included);
* no module imports one from a layer above its own (``LAYERS``, bottom first; the units of
  one layer are independent: none imports another);
* no module outside ``pcseg/cli`` imports ``pcseg.cli``;
* docs/ARCHITECTURE.md names no module (``pcseg/...py`` or ``pcseg.x.y``) that does not exist.

A unit is a sub-package (``pcseg/engine``) or a top-level module (``pcseg/config.py``);
``pcseg`` is the package's own ``__init__.py``. Each test also checks its checker on a small
package built in ``tmp_path``, so a contract that can no longer fail is caught.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pcseg"

#: bottom first. A module may import its own unit and the units of lower layers; the units
#: listed together in one layer may not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("pcseg",),  # pcseg/__init__.py: the version
    ("utils", "distributed", "io", "sparse", "config_files"),  # no pcseg import
    ("metrics", "data", "models"),  # metrics on distributed; data on io; models on sparse
    ("readers", "images", "methods", "viz"),  # raw scans -> Scene; 2D images; losses; views
    ("config",),  # the typed config: readers, methods, models, data settings
    ("engine",),  # training, evaluation, checkpoints
    ("inference", "annotate"),  # checkpoint -> predicted files; labelling a scene
    ("workflows",),  # prepare-if-missing, runs, demo, compare, active study
    ("benchmarks",),
    ("cli",),
    ("__main__",),
]


def module_name(path: Path, root: Path) -> str:
    """Dotted name of the module at ``path`` in the package at ``root``
    (``root/a/__init__.py`` -> ``pcseg.a``)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """``{dotted name: path}`` of every module of the package at ``root``."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module of ``known`` that ``name`` (a module or a name inside one) refers to."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in known else None


def imports_of(path: Path, name: str, known: dict[str, Path]) -> dict[str, int]:
    """``{imported module of known: first line}`` of every import in the file at ``path``
    (module ``name``): ``from pkg import sub`` counts as importing ``pkg.sub`` when that is
    a module, as importing ``pkg`` otherwise."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = name.split(".")[0]
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                targets.append(sub if sub in known else mod)
        for t in targets:
            if t.split(".")[0] != top:
                continue
            hit = _resolve(t, known)
            if hit is not None and hit != name:
                out.setdefault(hit, node.lineno)
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` over the package at ``root``."""
    known = modules(root)
    return {m: imports_of(p, m, known) for m, p in known.items()}


def find_cycles(graph: dict[str, Iterable[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` of every strongly connected component with a circle
    (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return sorted(_cycle_in(graph, set(c)) for c in comps)


def _cycle_in(graph: dict[str, Iterable[str]], comp: set[str]) -> list[str]:
    """A shortest circle through the smallest module of a strongly connected ``comp``."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w in comp and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle in {sorted(comp)}")


def unit_of(module: str) -> str:
    """The layer unit of a dotted module name: ``pcseg.engine.trainer`` -> ``engine``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(
    graph: dict[str, dict[str, int]], layers: list[tuple[str, ...]], root: Path = PACKAGE
) -> list[str]:
    """``file:line: a imports b (why)`` for every import that breaks ``layers`` (b's unit is
    above a's, or in the same layer); a unit missing from ``layers`` is reported once."""
    rank = {u: i for i, layer in enumerate(layers) for u in layer}
    bad: list[str] = []
    units = {unit_of(m) for m in graph}
    bad += [f"unit {u!r} is in no layer of LAYERS" for u in sorted(units - rank.keys())]
    for m, deps in sorted(graph.items()):
        a = unit_of(m)
        for d, line in sorted(deps.items()):
            b = unit_of(d)
            if a == b or a not in rank or b not in rank or rank[b] < rank[a]:
                continue
            where = "above" if rank[b] > rank[a] else "in the same layer as"
            rel = modules(root)[m].relative_to(root.parent)
            bad.append(f"{rel}:{line}: {m} imports {d} ({b!r} is {where} {a!r})")
    return bad


def cli_importers(graph: dict[str, dict[str, int]]) -> list[str]:
    """Modules outside ``<pkg>.cli`` (and ``<pkg>.__main__``) that import ``<pkg>.cli``."""
    return sorted(
        f"{m} imports {d}"
        for m, deps in graph.items()
        for d in deps
        if unit_of(d) == "cli" and unit_of(m) not in ("cli", "__main__")
    )


def _toy_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pcseg"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


TOY = {
    "__init__.py": "",
    "io/__init__.py": "from pcseg.io.las import read\n",
    "io/las.py": "import numpy\n\ndef read():\n    from pcseg.engine import fit\n",
    "engine/__init__.py": "from .loop import fit\n",
    "engine/loop.py": "from ..io import las\nfrom . import helpers\n",
    "engine/helpers.py": "import pcseg.cli.main\n",
    "viz/__init__.py": "from pcseg import io, __version__\n",
    "cli/__init__.py": "",
    "cli/main.py": "from pcseg.engine.helpers import *\n",
}


def test_import_graph_resolves_every_import_form(tmp_path):
    g = import_graph(_toy_package(tmp_path, TOY))
    assert g["pcseg.io"] == {"pcseg.io.las": 1}
    assert g["pcseg.io.las"] == {"pcseg.engine": 4}  # function-level import, name in __init__
    assert g["pcseg.engine"] == {"pcseg.engine.loop": 1}  # relative
    assert g["pcseg.engine.loop"] == {"pcseg.io.las": 1, "pcseg.engine.helpers": 2}
    assert g["pcseg.engine.helpers"] == {"pcseg.cli.main": 1}
    assert g["pcseg.viz"] == {"pcseg.io": 1, "pcseg": 1}  # a module, a name of pcseg/__init__
    assert g["pcseg.cli.main"] == {"pcseg.engine.helpers": 1}
    assert g["pcseg"] == {} and g["pcseg.cli"] == {}


def test_checkers_find_cycles_layer_breaks_and_cli_imports(tmp_path):
    root = _toy_package(tmp_path, TOY)
    g = import_graph(root)
    assert find_cycles(g) == [
        ["pcseg.cli.main", "pcseg.engine.helpers", "pcseg.cli.main"],
        ["pcseg.engine", "pcseg.engine.loop", "pcseg.io.las", "pcseg.engine"],
    ]
    assert find_cycles({"a": ["b"], "b": ["c"], "c": []}) == []
    up = "pcseg/engine/helpers.py:1: pcseg.engine.helpers imports pcseg.cli.main ('cli' is above"
    las = "pcseg/io/las.py:4: pcseg.io.las imports pcseg.engine ('engine' is above 'io')"
    layers = [("pcseg",), ("io",), ("engine", "viz"), ("cli",)]
    assert layer_violations(g, layers, root) == [up + " 'engine')", las]
    assert layer_violations(g, [("pcseg",), ("io", "viz"), ("engine", "cli")], root) == [
        "pcseg/cli/main.py:1: pcseg.cli.main imports pcseg.engine.helpers"
        " ('engine' is in the same layer as 'cli')",
        "pcseg/engine/helpers.py:1: pcseg.engine.helpers imports pcseg.cli.main"
        " ('cli' is in the same layer as 'engine')",
        las,
        "pcseg/viz/__init__.py:1: pcseg.viz imports pcseg.io ('io' is in the same layer as 'viz')",
    ]
    assert layer_violations(g, [("pcseg",), ("io",), ("engine", "viz")], root) == [
        "unit 'cli' is in no layer of LAYERS",
        las,  # an import of a unit in no layer is not judged
    ]
    assert cli_importers(g) == ["pcseg.engine.helpers imports pcseg.cli.main"]


def test_no_import_circle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles in pcseg:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_are_respected():
    assert len({u for layer in LAYERS for u in layer}) == sum(map(len, LAYERS))
    bad = layer_violations(import_graph(), LAYERS)
    assert not bad, "imports against pcseg's layers (see LAYERS):\n" + "\n".join(bad)


def test_every_layer_unit_exists():
    units = {unit_of(m) for m in modules()}
    assert {u for layer in LAYERS for u in layer} <= units


def test_library_never_imports_the_cli():
    bad = cli_importers(import_graph())
    assert not bad, "pcseg outside pcseg/cli imports pcseg.cli:\n" + "\n".join(bad)


# docs/ARCHITECTURE.md: every module it names exists -------------------------------------

_PATH = re.compile(r"\bpcseg/[\w/]*\w(?:\.py)?")
_DOTTED = re.compile(r"\bpcseg(?:\.\w+)+")


def missing_names(text: str, root: Path = PACKAGE) -> list[str]:
    """The module names in ``text`` that point at nothing in the package at ``root``:
    paths ``pcseg/a/b.py`` (a file) or ``pcseg/a`` / ``pcseg/a/`` (a folder or module), and
    dotted ``pcseg.a.b`` names, where a trailing part may be a name defined in the module
    (``pcseg.data.scene.Scene``) if the rest is a module that defines it."""
    known = modules(root)
    top = root.parent
    bad = []
    for p in sorted(set(_PATH.findall(text))):
        target = top / p
        if not (
            target.is_file()
            if p.endswith(".py")
            else target.exists() or target.with_suffix(".py").is_file()
        ):
            bad.append(p)
    for d in sorted(set(_DOTTED.findall(text))):
        if d in known:
            continue
        mod, _, attr = d.rpartition(".")
        if mod in known and _defines(known[mod], attr):
            continue
        # pcseg.m.Class.method: the class is defined in the module
        mod2, _, attr2 = mod.rpartition(".")
        if mod2 in known and _defines(known[mod2], attr2):
            continue
        bad.append(d)
    return bad


def _defines(path: Path, name: str) -> bool:
    """Whether the module at ``path`` binds ``name`` at its top level (def, class,
    assignment or import, also inside a top-level ``if`` / ``try``)."""

    def binds(body: list[ast.stmt]) -> bool:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name == name:
                    return True
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    return True
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                    return True
            elif isinstance(node, ast.If):
                if binds(node.body) or binds(node.orelse):
                    return True
            elif isinstance(node, ast.Try):
                if binds(node.body) or any(binds(h.body) for h in node.handlers):
                    return True
        return False

    return binds(ast.parse(path.read_text(), str(path)).body)


def test_missing_names_finds_paths_and_dotted_names_that_do_not_exist(tmp_path):
    root = _toy_package(
        tmp_path, {**TOY, "io/las.py": "class Reader:\n    pass\nif Reader:\n    X = 1\n"}
    )
    text = (
        "`pcseg/io/las.py`, pcseg/io/, pcseg/engine/loop, pcseg.io.las.Reader.read, "
        "pcseg.io.las.X, pcseg.engine. See pcseg/io/ply.py, pcseg/annotate and pcseg.io.las.Y, "
        "pcseg.nothing.here."
    )
    assert missing_names(text, root) == [
        "pcseg/annotate",
        "pcseg/io/ply.py",
        "pcseg.io.las.Y",
        "pcseg.nothing.here",
    ]


def test_architecture_doc_names_only_existing_modules():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    bad = missing_names(text)
    assert not bad, f"docs/ARCHITECTURE.md names modules that do not exist: {bad}"


@pytest.mark.parametrize("unit", [u for layer in LAYERS for u in layer if u != "__main__"])
def test_architecture_doc_covers_every_unit(unit):
    """The module map names every unit of LAYERS (as ``pcseg/<unit>`` or ``pcseg.<unit>``)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    names = {"pcseg"} if unit == "pcseg" else {f"pcseg/{unit}", f"pcseg.{unit}"}
    assert any(re.search(re.escape(n) + r"\b", text) for n in names), unit
