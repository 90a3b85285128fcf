"""Packaging metadata: environment.yml and pyproject.toml list the same runtime dependencies,
torch is pinned, the viz libraries are an extra."""

import re

import tomllib
import yaml
from helpers.paths import REPO


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_in_sync_with_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = {_name(r) for r in py["project"]["dependencies"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip = {_name(d) for d in next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]}
    listed = conda | pip | {"torch" if "pytorch" in conda else ""}
    # open3d-cpu is the CPU wheel of open3d: either satisfies the requirement
    listed |= {"open3d-cpu"} if "open3d" in listed else set()
    missing = runtime - listed
    assert not missing, f"environment.yml lacks runtime deps of pyproject.toml: {sorted(missing)}"


def test_torch_is_never_unpinned_in_makefile():
    make = (REPO / "Makefile").read_text()
    for line in make.splitlines():
        if "pip" in line and "install" in line and "torch" in line:
            assert "torch==2.13.0" in line, line


def test_viz_libraries_are_an_extra():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = {_name(r) for r in py["project"]["dependencies"]}
    assert not runtime & {"open3d", "open3d-cpu", "matplotlib"}
    viz = py["project"]["optional-dependencies"]["viz"]
    assert any(r.startswith("open3d-cpu") and "x86_64" in r for r in viz)
    assert any(r.startswith("open3d==") and "!=" in r for r in viz)  # where open3d-cpu has no wheel
    assert py["project"]["scripts"]["pcseg"] == "pcseg.cli.main:main"
