"""The configs shipped with pcseg, found by name as well as by path.

The repository's ``configs/`` is their one copy. An installed wheel (or ``pip install .``)
carries it as ``pcseg/configs`` (setup.py maps it there); a source checkout or an editable
install reads the checkout's ``configs/`` next to the package. A config argument is, in order:

1. a file (or folder) that exists as given, relative to the working directory or absolute;
2. a shipped config of that name, with or without ``.yaml``: ``custom/erda``,
   ``custom/erda.yaml``, ``configs/custom/erda.yaml`` (the path as written in a checkout);
3. otherwise the path as given, which the loader then reports as missing.

Shipped configs are real files, so their ``_base_: base.yaml`` chains resolve as usual.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_config_dir() -> Path | None:
    """The folder of the shipped configs: ``pcseg/configs`` of an installed package, else the
    checkout's ``configs/`` (source tree, editable install); None when neither exists."""
    for folder in (_PACKAGE / "configs", _PACKAGE.parent / "configs"):
        if folder.is_dir():
            return folder
    return None


def _shipped(name: str | Path, suffixes: tuple[str, ...], want_dir: bool) -> Path | None:
    """The shipped file (``want_dir`` False) or folder named ``name``, or None."""
    root = shipped_config_dir()
    p = Path(name)
    if root is None or p.is_absolute():
        return None
    parts = p.parts[1:] if p.parts and p.parts[0] == "configs" else p.parts
    if not parts or ".." in parts:
        return None
    base = root.joinpath(*parts)
    for cand in (base, *(base.with_name(base.name + s) for s in suffixes)):
        if cand.is_dir() if want_dir else cand.is_file():
            return cand
    return None


def resolve_config_path(path: str | Path) -> Path:
    """``path`` when that file exists, else the shipped config it names (``custom/erda``),
    else ``path`` unchanged (so the caller's "does not exist" names what the user typed)."""
    p = Path(path)
    if p.is_file():
        return p
    return _shipped(p, (".yaml", ".yml"), want_dir=False) or p


def resolve_config_dir(path: str | Path) -> Path:
    """``path`` when that folder exists, else the shipped config folder it names
    (``custom``, ``demo``), else ``path`` unchanged."""
    p = Path(path)
    if p.is_dir():
        return p
    return _shipped(p, (), want_dir=True) or p


def _first_comment(path: Path) -> str:
    """The text of the first ``#`` line of ``path`` ('' when there is none before the YAML)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s.startswith("#"):
            return s.lstrip("#").strip()
        if s:
            return ""
    return ""


def list_configs() -> list[tuple[str, str]]:
    """``(name, first comment line)`` of every shipped config, sorted by name; the name
    (``custom/erda``) is what ``pcseg train NAME`` takes. Empty when none are shipped."""
    root = shipped_config_dir()
    if root is None:
        return []
    return [
        (f.relative_to(root).with_suffix("").as_posix(), _first_comment(f))
        for f in sorted(root.rglob("*.yaml"))
    ]
